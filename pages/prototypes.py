"""Placeholder: being built."""
import streamlit as st

from pages.common import CLASS_DEFAULT, sidebar

sel = sidebar(CLASS_DEFAULT)
st.title("prototypes")
st.info("This page is being built.")
