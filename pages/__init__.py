"""Streamlit pages. Thin: layout and widgets; all maths lives in core/."""
