"""CKA section: linear or RBF CKA between the backbones, and block by block."""
from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import streamlit as st

from core.compare.cka import Kind, layer_cka_sample_size, rbf_sample_size
from core.compare.layers import LAYER_POOLS, Pool, layer_cka_between
from core.errors import BackboneLensError
from core.io.imports import MODEL_ONLY_VIEWS
from pages.compare import cache, widgets
from pages.compare.context import CmpContext
from pages.compare.figures import cka_heatmap

POOL_NAMES = {"embedding": "CLS / pool", "mean": "mean of patches"}


def draw(ctx: CmpContext) -> tuple[np.ndarray, str]:
    names, n = list(ctx.names), ctx.n
    st.header("Representational similarity (CKA)", divider="gray")
    left, right = st.columns(2, gap="large")
    with left:
        k1, k2 = st.columns([1, 1])
        kind: Kind = k1.radio("Kernel", ["linear", "rbf"], horizontal=True, key="cmp_cka_kind",
                        format_func=lambda k: {"linear": "linear CKA", "rbf": "RBF CKA"}[k],
                        help="Linear CKA (Kornblith et al. 2019) of the global embeddings on the same images; RBF: "
                             "Gaussian kernels, bandwidth = a fraction of the median off-diagonal pairwise distance "
                             "(Kornblith et al.'s code takes the median over all pairs, zeros included: docs/METHODS.md).")
        sigma = k2.slider("RBF bandwidth (× median distance)", 0.1, 2.0, 0.5, 0.1, key="cmp_cka_sigma",
                          disabled=kind != "rbf")
        M = cache.cka(ctx, kind, sigma)
        label = "linear CKA" if kind == "linear" else f"RBF CKA (σ = {sigma:g} × median)"
        n_cka = n if kind == "linear" else rbf_sample_size(n)
        st.plotly_chart(cka_heatmap(M, names, names, title=f"{label}, global embeddings of {n_cka:,} images",
                                    colorbar="CKA"), key="cmp_cka_fig")
        st.caption("Linear CKA: every image, in feature space (no N x N matrix)." if kind == "linear" else
                   f"RBF CKA builds n x n kernels: {widgets.sample_note(n_cka, n)}.")
        cka_df = pd.DataFrame(M, columns=names).assign(backbone=names)[["backbone", *names]]
        st.download_button("⬇ CKA (CSV)", widgets.csv(cka_df), f"compare_cka_{kind}.csv", "text/csv", on_click="ignore",
                           key="dl_cka")
    with right:
        models = ctx.backbone_names
        if ctx.imported_names:
            st.caption(f"Block by block: {', '.join(ctx.imported_names)} "
                       f"{'is an imported set' if len(ctx.imported_names) == 1 else 'are imported sets'}. "
                       + MODEL_ONLY_VIEWS["layer_cka"])
        if not models:
            return M, kind
        vits = [m for m in models if ctx.backbone(m).spec.has_attention]
        default_ab = vits[0] if vits else models[0]
        l1, l2, l3 = st.columns(3)
        a_name = l1.selectbox("Block by block: A", models, index=models.index(default_ab), key="cmp_lay_a")
        b_name = l2.selectbox("B (same = within one)", models, index=models.index(default_ab), key="cmp_lay_b")
        pool = cast(Pool, l3.radio("Per block", list(LAYER_POOLS), key="cmp_lay_pool", horizontal=True,
                                   format_func=lambda p: POOL_NAMES[p],
                                   help="\n".join(f"- **{k}**: {v}" for k, v in LAYER_POOLS.items())))
        if st.toggle("Compute the layer-by-layer CKA", key="cmp_lay_on",
                     help="One forward pass over all images per backbone, keeping every block."):
            try:
                fa = cache.layers(ctx, a_name, pool)
                fb = fa if b_name == a_name else cache.layers(ctx, b_name, pool)
                LM = layer_cka_between(fa, fb, kind, sigma)  # [LA, LB]
            except (BackboneLensError, ValueError) as e:
                st.error(f"Cannot compute the layer CKA: {e}")
                st.stop()
            fig = cka_heatmap(LM, [str(l) for l in fa.layers], [str(l) for l in fb.layers], annotate=LM.size <= 64,
                              title=f"{label.split(' (')[0]} between blocks ({POOL_NAMES[pool]}), {n} images",
                              colorbar="CKA",
                              x_title=f"{b_name} block", y_title=f"{a_name} block", table_order=False)
            st.plotly_chart(fig, key="cmp_layer_fig")
            n_lay = layer_cka_sample_size(n)
            st.caption(f"Exact CKA on all {n:,} images." if n_lay == n else
                       f"Minibatch CKA (Nguyen et al. 2021: unbiased HSIC averaged over minibatches of 1,024) on "
                       f"{widgets.sample_note(n_lay, n)}.")
            lay_df = pd.DataFrame(LM, columns=[f"{b_name}:{l}" for l in fb.layers]).assign(
                block=[f"{a_name}:{l}" for l in fa.layers])
            st.download_button("⬇ Layer CKA (CSV)", widgets.csv(lay_df[["block", *lay_df.columns[:-1]]]),
                               f"layer_cka_{a_name}_{b_name}_{pool}.csv".replace("/", "_"), "text/csv", on_click="ignore",
                               key="dl_lay")
        else:
            st.caption(f"CKA between every block of A and every block of B ({LAYER_POOLS[pool]}). Turn it on to compute "
                       "(one pass over the images per backbone, then cached).")
    return M, kind
