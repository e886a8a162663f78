"""Click to segment tab: a fragment, so a click reruns this view only."""
from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from core import render
from core.render import ColorScale
from core.segment.click import click_mask
from core.segment.foreground import pca_foreground
from core.segment.similarity import cross_similarity, pixel_to_patch
from core.segment.threshold import threshold_mask
from pages.segmentation.context import SegContext, stem
from pages.segmentation.widgets import CLICK_SIDE, PANEL, download_png, mask_png, shown_mask


@st.fragment
def _click_view(ctx: SegContext, other_toks: np.ndarray | None) -> None:
    """The clickable picture with its mask, and the similarity of every patch (here and in the other
    pictures) to the clicked one; ``other_toks``: ``[M, h, w, D]``."""
    pic, tokens, others, alpha, sharp, stem_ = ctx.pic, ctx.tokens, ctx.others, ctx.alpha, ctx.sharp, ctx.stem
    grid = tokens.shape[:2]
    t0, t1, t2 = st.columns([1, 1, 2])
    border = t0.toggle("Border is background", value=False, key="seg_border",
                       help="Keep the patches more similar to the click than to every patch on the picture's border, "
                            "connected to the click; then the mask's mean token replaces the click until the mask "
                            "settles (no threshold). For an object inside the picture; one that runs along the "
                            "border loses those parts. Other pictures always use the threshold.")
    auto = t1.toggle("Otsu threshold", value=True, key="seg_auto",
                     help="Pick the threshold that best splits this similarity map in two; turn off to set it.")
    click_key = f"seg_click_{pic.sha256[:16]}"
    prev = st.session_state.get(click_key)
    if prev:  # the last click on this picture, in displayed pixels
        q = pixel_to_patch((min(prev["x"], prev["width"]), min(prev["y"], prev["height"])),
                           (prev["width"], prev["height"]), grid)
    else:  # before any click: the most object-like patch (highest first-principal-component score)
        fg_score = pca_foreground(tokens)[0]  # [h, w]
        r, c = np.unravel_index(np.argmax(fg_score), fg_score.shape)
        q = (int(r), int(c))
    fixed = st.session_state.get("seg_thr", 0.5)
    click = click_mask(tokens, q, rule="border") if border else click_mask(tokens, q, None if auto else fixed)
    thr = click.otsu if auto else fixed  # for the other pictures (and this one without the border rule)
    sim, mask = click.similarity, click.mask  # [h, w], bool [h, w]
    t2.slider("Cosine threshold", -1.0, 1.0, 0.5, 0.01, key="seg_thr", disabled=auto,
              help=f"Otsu's threshold for this map: {click.otsu:.2f}")
    left, right = st.columns([1, 1])
    with left:
        rule = "closer to the clicked object than to the border" if border else f"threshold {thr:.2f}"
        st.markdown(f"**Click on the picture** — patch {q} (row, column), {rule}, "
                    f"mask {mask.mean():.0%} of the picture{' (pixel-sharp edges)' if sharp else ''}")
        shown = render.mask_panel(pic.image, shown_mask(pic.image, mask, sharp, CLICK_SIDE), alpha=alpha,
                                  max_side=CLICK_SIDE, marker=(q, grid))
        streamlit_image_coordinates(shown, key=click_key, width=shown.width, cursor="crosshair",
                                    image_format="JPEG", jpeg_quality=90)
        download_png(lambda: mask_png(pic.image, mask, sharp), f"{stem_}_mask_{q[0]}_{q[1]}.png", "mask PNG",
                      "dl_click_mask")
    with right:
        maps = [sim]
        if other_toks is not None:
            maps += list(cross_similarity(tokens[q], other_toks))  # M x [h, w]
        scale = ColorScale(float(min(m.min() for m in maps)), 1.0, "viridis", "cosine to the clicked patch")
        panels = [render.heat_panel(pic.image, sim, scale, alpha=alpha, title="this picture", max_side=PANEL,
                                    marker=(q, grid))]
        panels += [render.heat_panel(o.image, m, scale, alpha=alpha, title=stem(o.name), max_side=PANEL)
                   for o, m in zip(others, maps[1:])]
        heat = render.row(panels[:2], scale) if len(panels) <= 2 else render.stack(
            [render.row(panels[i:i + 2], scale if i == 0 else None) for i in range(0, len(panels), 2)])
        st.image(heat)
        small = PANEL // 2 + 40
        masks = [render.mask_panel(o.image, shown_mask(o.image, threshold_mask(m, thr), sharp, small), alpha=alpha,
                                   title=f"{stem(o.name)}: sim >= {thr:.2f}", max_side=small)
                 for o, m in zip(others, maps[1:])]
        if masks:
            st.image(render.row(masks))
        download_png(lambda: render.png_bytes(heat), f"{stem_}_similarity_{q[0]}_{q[1]}.png", "similarity PNG",
                      "dl_click_heat")


def draw(ctx: SegContext) -> None:
    other_toks = np.stack([ctx.tokens_of(o) for o in ctx.others]) if ctx.others else None
    _click_view(ctx, other_toks)  # other_toks: [M, h, w, D]
