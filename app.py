"""Backbone Lens: `streamlit run app.py`. Routes to the pages; each page renders the shared sidebar."""
import streamlit as st

st.set_page_config(page_title="Backbone Lens", page_icon="🔎", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/embeddings.py", title="Embeddings", icon="🗺️"),
    st.Page("pages/prototypes.py", title="Prototypes", icon="🎯"),
    st.Page("pages/saliency.py", title="Saliency", icon="🔥"),
    st.Page("pages/segmentation.py", title="Segmentation", icon="✂️"),
    st.Page("pages/compare.py", title="Compare", icon="⚖️"),
]
st.navigation(PAGES).run()
