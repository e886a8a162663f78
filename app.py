"""Backbone Lens: `streamlit run app.py`. Routes to the pages; each page renders the shared sidebar."""
import streamlit as st

st.set_page_config(page_title="Backbone Lens", page_icon=":material/visibility:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page("pages/prototypes.py", title="Prototypes", icon=":material/target:"),
    st.Page("pages/saliency.py", title="Saliency", icon=":material/local_fire_department:"),
    st.Page("pages/segmentation.py", title="Segmentation", icon=":material/content_cut:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
]
st.session_state["_shell"] = True
nav = st.navigation(PAGES)
deep_link = st.session_state.pop("_deep_link", None)  # see pages.common._ensure_app_shell
if deep_link:
    st.switch_page(deep_link)
nav.run()
