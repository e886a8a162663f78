"""Masks as the Segmentation tabs draw and download them (on the patch grid or pixel-sharp)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import render
from core.render import ColorScale
from core.segment.masks import mask_png_bytes, mask_to_image_size
from core.segment.refine import refine_mask
from pages.segmentation.context import SegContext

CLICK_SIDE = 448   # px, the clickable picture
PANEL = 260        # px, maps side by side


def shown_mask(image, mask: np.ndarray, sharp: bool, max_side: int) -> np.ndarray:
    """The mask to draw at ``max_side``: the patch mask, or refined at the displayed picture's pixels."""
    return refine_mask(render.fit(image, max_side), mask) if sharp else mask


def mask_png(image, mask: np.ndarray, sharp: bool) -> bytes:
    """The mask at the picture's own size (refined there when ``sharp``), as PNG bytes."""
    return mask_png_bytes(refine_mask(image, mask) if sharp else mask_to_image_size(mask, image.size))


def download_png(data_fn, file_name: str, label: str, key: str) -> None:
    st.download_button(f"⬇ {label}", data=data_fn, file_name=file_name, mime="image/png", on_click="ignore", key=key)


def foreground_panel(ctx: SegContext, score: np.ndarray, scale: ColorScale, mask: np.ndarray, method: str,
                     file_tag: str, key: str) -> None:
    """One foreground method: its score map ``[h, w]`` over the picture above its mask, and the mask as PNG."""
    pic, alpha, sharp = ctx.pic, ctx.alpha, ctx.sharp
    fig = render.heat_figure(pic.image, score, scale, alpha=alpha, max_side=PANEL)
    st.image(render.stack([fig, render.mask_panel(pic.image, shown_mask(pic.image, mask, sharp, PANEL), alpha=alpha,
                                                  max_side=PANEL, title=f"{method} foreground: {mask.mean():.0%}")]))
    download_png(lambda: mask_png(pic.image, mask, sharp), f"{ctx.stem}_fg_{file_tag}.png", "mask PNG", key)
