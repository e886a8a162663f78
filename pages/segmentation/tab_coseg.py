"""Co-segmentation tab: one k-means over the patches of several pictures, and their common foreground."""
from __future__ import annotations

import streamlit as st

from core import render
from core.segment.recommend import LABELS, cosegment_foreground
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
        k = st.slider("k (clusters shared by all pictures)", 2, 12, 5, key="seg_cok")
        toks = [tokens] + [cache.tokens(spec.name, o.sha256, size, layer, o.image) for o in others]
        labels = cache.coseg(spec.name, tuple(g.sha256 for g in group), size, layer, k, toks)
        choices = [cache.choice(spec.name, g.sha256, size, layer, spec.has_attention, t, g.image) for g, t in zip(group, toks)]
        cofg = cosegment_foreground(labels, [c.mask for c in choices])  # each picture's recommended foreground votes
        fg = cofg.common
        names = [f"cluster {i}{' (foreground)' if i in fg else ''}" for i in range(k)]
        side = PANEL - 60
        shown = [refine_labels(render.fit(g.image, side), l, k) if sharp else l for g, l in zip(group, labels)]
        top = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title=stem(g.name), max_side=side)
                          for g, l in zip(group, shown)])
        bottom = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title="common foreground",
                                                 max_side=side, highlight=set(here))
                             for g, l, here in zip(group, shown, cofg.per_image)])
        fig = render.stack([top, bottom, render.legend(names, render.palette(k))])
        st.image(fig)
        st.caption(f"One k-means over the patches of all {len(group)} pictures, so a colour is the same cluster "
                   "everywhere. Foreground by the same rule as one picture's (the Foreground tab's recommendation, "
                   "the mask that agrees best with the others): a cluster is foreground in a picture when most of "
                   "its patches there lie in that picture's recommended mask, common foreground when that holds in "
                   "at least half of the pictures; each picture highlights the common clusters that are foreground "
                   "in it. Recommended: " + ", ".join(f"{stem(g.name)}: {LABELS.get(c.method or '', 'none')}"
                                                      for g, c in zip(group, choices)) + ".")
        fg_mask = cofg.masks[0]
        c1, c2 = st.columns(2)
        with c1:
            download_png(lambda: mask_png(pic.image, fg_mask, sharp),
                          f"{stem_}_cofg_k{k}.png", "common-foreground mask PNG (this picture)", "dl_co_mask")
        with c2:
            download_png(lambda: render.png_bytes(fig), f"{stem_}_coseg_k{k}.png", "figure PNG", "dl_co_fig")
