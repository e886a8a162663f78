"""Co-segmentation tab: one k-means over the patches of several pictures, and their common foreground."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import render
from core.segment.clustering import common_foreground
from core.segment.foreground import pca_foreground
from core.segment.refine import refine_labels
from pages.segmentation import cache
from pages.segmentation.context import SegContext, stem
from pages.segmentation.widgets import PANEL, download_png, mask_png


def draw(ctx: SegContext) -> None:
    spec, size, layer, pic, tokens = ctx.spec, ctx.size, ctx.layer, ctx.pic, ctx.tokens
    others, alpha, sharp, stem_ = ctx.others, ctx.alpha, ctx.sharp, ctx.stem
    group = [pic, *others]
    if len(group) < 2:
        st.info("Pick at least one other image above to co-segment.")
    else:
        c1, c2 = st.columns(2)
        k = c1.slider("k (clusters shared by all pictures)", 2, 12, 5, key="seg_cok")
        fg_from = c2.radio("Foreground score", ["PCA"] + (["CLS attention"] if spec.has_attention else []),
                           horizontal=True, key="seg_cofg")
        toks = [tokens] + [cache.tokens(spec.name, o.sha256, size, layer, o.image) for o in others]
        labels = cache.coseg(spec.name, tuple(g.sha256 for g in group), size, layer, k, toks)
        if fg_from == "PCA":
            ref = np.concatenate([t.reshape(-1, t.shape[-1]) for t in toks])  # one PCA for all pictures
            scores = [pca_foreground(t, ref)[0] for t in toks]
        else:
            scores = [cache.cls_attention(spec.name, g.sha256, size, g.image) for g in group]
        fg = common_foreground(labels, scores)
        names = [f"cluster {i}{' (foreground)' if i in fg else ''}" for i in range(k)]
        side = PANEL - 60
        shown = [refine_labels(render.fit(g.image, side), l, k) if sharp else l for g, l in zip(group, labels)]
        top = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title=stem(g.name), max_side=side)
                          for g, l in zip(group, shown)])
        bottom = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title="common foreground",
                                                 max_side=side, highlight=fg) for g, l in zip(group, shown)])
        fig = render.stack([top, bottom, render.legend(names, render.palette(k))])
        st.image(fig)
        st.caption(f"One k-means over the patches of all {len(group)} pictures, so a colour is the same cluster "
                   "everywhere. Common foreground: clusters whose mean foreground score is above the picture's "
                   f"mean in at least half of the pictures ({fg_from}).")
        fg_mask = np.isin(labels[0], list(fg))
        c1, c2 = st.columns(2)
        with c1:
            download_png(lambda: mask_png(pic.image, fg_mask, sharp),
                          f"{stem_}_cofg_k{k}.png", "common-foreground mask PNG (this picture)", "dl_co_mask")
        with c2:
            download_png(lambda: render.png_bytes(fig), f"{stem_}_coseg_k{k}.png", "figure PNG", "dl_co_fig")
