"""Runs app.py, the router. Streamlit treats a folder named pages/ as an old-style multipage app until
st.navigation has run once in the server process, so a fresh server asked for /prototypes runs this file:
handing over to the router opens the page with the link's parameters (docs/ARCHITECTURE.md, The app)."""
import pathlib
import runpy

runpy.run_path(str(pathlib.Path(__file__).resolve().parents[1] / "app.py"))
