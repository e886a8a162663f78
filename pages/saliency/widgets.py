"""Small widgets the Saliency tabs share."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import render


def download(fig, file_name: str, label: str = "PNG", key: str | None = None) -> None:
    st.download_button(f"⬇ {label}", data=lambda: render.png_bytes(fig), file_name=file_name, mime="image/png",
                       on_click="ignore", key=key)


def warn_empty(name: str, m: np.ndarray) -> None:
    if float(m.max()) < 1e-6:
        st.warning(f"**{name}** is empty here: every channel's weighted activation is negative after its "
                   "weighting, so the ReLU removes everything (common for Grad-CAM++ on ViT LayerNorm outputs, "
                   "which it was not designed for). Try another method.")

PANEL = 300      # px, maps side by side
BIG = 448        # px, one enlarged map
