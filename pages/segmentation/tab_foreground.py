"""Foreground tab: PCA, normalized cut, boundary prior and CLS attention foregrounds."""
from __future__ import annotations

import streamlit as st

from core.render import ColorScale
from core.segment.foreground import attention_foreground, boundary_foreground, pca_foreground
from pages.segmentation import cache
from pages.segmentation.context import SegContext
from pages.segmentation.widgets import foreground_panel


def draw(ctx: SegContext) -> None:
    spec, size, layer, pic, tokens = ctx.spec, ctx.size, ctx.layer, ctx.pic, ctx.tokens
    ch = cache.choice(spec.name, pic.sha256, size, layer, spec.has_attention, tokens, pic.image)
    if ch.method is not None:
        st.success(ch.sentence, icon=":material/recommend:")
    else:
        st.info(ch.sentence)
    score, pmask = pca_foreground(tokens)  # [h, w], bool [h, w]
    nscore, nmask = cache.ncut(spec.name, pic.sha256, size, layer, tokens)  # [h, w], bool [h, w]
    bscore, bmask = boundary_foreground(tokens)  # [h, w], bool [h, w]
    cols = st.columns(4 if spec.has_attention else 3)
    with cols[0]:
        st.markdown("**First principal component** of the patch tokens (> 0 = foreground; sign: the picture's "
                    "border is background)")
        foreground_panel(ctx, score, ColorScale.shared([score], "RdBu_r", "PC1 score", symmetric=True), pmask,
                          "PCA", "pca", "dl_fg_pca")
    with cols[1]:
        st.markdown("**Normalized cut** (TokenCut): the patch graph (cosine > 0.2), its second eigenvector split "
                    "at the mean; the object holds the most extreme patch")
        foreground_panel(ctx, nscore, ColorScale.shared([nscore], "RdBu_r", "eigenvector - mean", symmetric=True),
                          nmask, "normalized-cut", "ncut", "dl_fg_ncut")
    with cols[2]:
        st.markdown("**Boundary prior**: 1 - cosine to the most similar border patch, Otsu's cut, the largest "
                    "region (an object cut by the border counts as background)")
        foreground_panel(ctx, bscore, ColorScale(0.0, max(float(bscore.max()), 1e-6), "magma",
                                             "1 - max cosine to the border"),
                          bmask, "boundary-prior", "boundary", "dl_fg_boundary")
    if spec.has_attention:
        with cols[3]:
            keep = st.slider("Attention mass kept", 0.1, 1.0, 0.6, 0.05, key="seg_keep",
                             help="The most-attended patches holding this share of the CLS attention (DINO's rule).")
            att = cache.cls_attention(spec.name, pic.sha256, size, pic.image)  # [h, w]
            amask = attention_foreground(att, keep)
            foreground_panel(ctx, att, ColorScale(0.0, float(att.max()), "inferno",
                                              "CLS attention (last block, head mean)"),
                              amask, "attention", "attention", "dl_fg_att")
