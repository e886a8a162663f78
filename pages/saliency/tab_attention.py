"""Attention tab: CLS attention of every block and head, one enlarged, and attention rollout."""
from __future__ import annotations

import streamlit as st

from core import render
from core.explain.attention import DEFAULT_ROLLOUT, RolloutParams
from core.explain.methods import ATTENTION, ROLLOUT
from core.render import ColorScale
from pages.saliency import cache
from pages.saliency.context import SalContext
from pages.saliency.widgets import BIG, download


def draw(ctx: SalContext) -> None:
    spec, pic, size, alpha, cmap, stem = ctx.spec, ctx.pic, ctx.size, ctx.alpha, ctx.cmap, ctx.stem
    if not spec.has_attention:
        st.info(f"{spec.name} is a {spec.family.upper()}: it has no attention. Use the Grad-CAM or prototype maps.")
    else:
        cls = cache.cls_maps(spec.name, pic.sha256, size, pic.image)  # [L, H, h, w]
        L, H = cls.shape[:2]
        st.subheader("CLS → patch attention, every block and head")
        mode = st.radio("Colour scale", ["per tile", "per block", "one for all blocks"], horizontal=True,
                        key="sal_mosaic_scale", help="Per tile shows where each head looks; per block and "
                        "one scale for all also compare how strongly.")
        mosaic = cache.mosaic(spec.name, pic.sha256, size, alpha, cmap, mode, pic.image)
        st.image(mosaic)
        download(mosaic, f"{stem}_attention_grid.png", key="dl_mosaic")
        left, right = st.columns(2)
        with left:
            st.subheader("Enlarge one")
            f1, f2 = st.columns(2)
            blk = f1.select_slider("Block", list(range(L)), value=L - 1, key="sal_blk")
            head = f2.selectbox("Head", ["mean of heads", *range(H)], key="sal_head")
            hsel = "mean" if head == "mean of heads" else int(head)
            m = ctx.saliency(ATTENTION, params_key=f"{blk}:{hsel}", block=blk, head=hsel)  # [h, w]
            fig = render.heat_figure(pic.image, m, ColorScale(0.0, float(m.max()), cmap, "CLS attention weight"),
                                     alpha=alpha, title=f"block {blk}, {head if isinstance(head, str) else f'head {head}'}",
                                     max_side=BIG)
            st.image(fig)
            download(fig, f"{stem}_attention_b{blk}_{head}.png", key="dl_att")
        with right:
            st.subheader("Attention rollout")
            f1, f2, f3 = st.columns(3)
            fusions = ["mean", "max", "min"]
            fusion = f1.selectbox("Head fusion", fusions, index=fusions.index(DEFAULT_ROLLOUT.head_fusion),
                                  key="sal_fusion")
            discard = f2.slider("Discard ratio", 0.0, 0.95, DEFAULT_ROLLOUT.discard_ratio, 0.05, key="sal_discard",
                                help="Fraction of the weakest attention weights of each block set to 0.")
            start = f3.select_slider("Start block", list(range(L)), value=DEFAULT_ROLLOUT.start(L), key="sal_start",
                                     help="Rolling out from block 0 lets the few high-norm 'artifact' tokens of "
                                          "DINOv2 without registers dominate; later starts show the object.")
            rp = RolloutParams(fusion, discard, start)  # type: ignore[arg-type]
            ro = ctx.saliency(ROLLOUT, params_key=repr(rp), params=rp)
            fig = render.heat_figure(pic.image, ro, ColorScale(0.0, 1.0, cmap, "rollout (min-max)"), alpha=alpha,
                                     title=f"rollout: {fusion}, discard {discard:.2f}, from block {start}",
                                     max_side=BIG)
            st.image(fig)
            st.caption("Abnar & Zuidema's rollout is mean fusion, discard 0, from block 0 (set those to "
                       "reproduce the paper); the defaults here (discard 0.9, from the middle block) follow the "
                       "vit-explain heuristic, which keeps DINOv2's artifact tokens out (docs/METHODS.md).")
            download(fig, f"{stem}_rollout_{fusion}_{discard:.2f}_{start}.png", key="dl_roll")
