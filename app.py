"""Backbone Lens: `streamlit run app.py`. The router: ``st.navigation`` over one ``st.Page`` per page script
(``pages/<page>/page.py``, listed in ``pages/shared/routes.py``); each page draws the shared sidebar itself."""
from pathlib import Path

import streamlit as st

from pages.shared.routes import pages

# The icon is a file of the app: a Material icon name here makes every browser fetch it from an internet font host.
st.set_page_config(page_title="Backbone Lens", page_icon=str(Path(__file__).parent / "pages" / "shared" / "icon.png"),
                   layout="wide")
st.navigation(pages()).run()
