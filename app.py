"""Backbone Lens: `streamlit run app.py`. The router: one ``st.Page`` per page script
(``pages/<page>/page.py``); each page draws the shared sidebar (``pages/shared``) itself."""
import streamlit as st

st.set_page_config(page_title="Backbone Lens", page_icon=":material/visibility:", layout="wide")

PAGES = [
    st.Page("pages/home/page.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/embeddings/page.py", title="Embeddings", icon=":material/scatter_plot:", url_path="embeddings"),
    st.Page("pages/prototypes/page.py", title="Prototypes", icon=":material/target:", url_path="prototypes"),
    st.Page("pages/saliency/page.py", title="Saliency", icon=":material/local_fire_department:", url_path="saliency"),
    st.Page("pages/segmentation/page.py", title="Segmentation", icon=":material/content_cut:", url_path="segmentation"),
    st.Page("pages/compare/page.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page("pages/discover/page.py", title="Discover", icon=":material/category_search:", url_path="discover"),
]
st.navigation(PAGES).run()
