"""Parts tab: k-means over the patch tokens of one picture."""
from __future__ import annotations

import streamlit as st

from core import render
from core.segment.refine import refine_labels
from pages.segmentation import cache
from pages.segmentation.context import SegContext
from pages.segmentation.widgets import CLICK_SIDE, download_png


def draw(ctx: SegContext) -> None:
    spec, size, layer, pic, tokens = ctx.spec, ctx.size, ctx.layer, ctx.pic, ctx.tokens
    alpha, sharp, stem_ = ctx.alpha, ctx.sharp, ctx.stem
    k = st.slider("k (parts)", 2, 10, 4, key="seg_k")
    labels = cache.parts(spec.name, pic.sha256, size, layer, k, tokens)  # [h, w]
    shown_labels = refine_labels(render.fit(pic.image, CLICK_SIDE), labels, k) if sharp else labels
    fig = render.stack([render.labels_panel(pic.image, shown_labels, k, alpha=alpha, max_side=CLICK_SIDE,
                                            title=f"k-means, k={k}, block {layer}"),
                        render.legend([f"part {i}" for i in range(k)], render.palette(k))])
    st.image(fig)
    c1, c2 = st.columns(2)
    with c1:
        download_png(lambda: render.label_png_bytes(refine_labels(pic.image, labels, k) if sharp else labels, k,
                                                     pic.image.size), f"{stem_}_parts_k{k}.png",
                      "label PNG (palette colours)", "dl_parts")
    with c2:
        download_png(lambda: render.png_bytes(fig), f"{stem_}_parts_k{k}_overlay.png", "figure PNG", "dl_parts_fig")
