"""Similarity indices section: every index with its interval and baseline (a matrix per index, a table, CSV / JSON)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import streamlit as st

from core.compare.comparison import Comparison
from core.compare.indices import DEFAULT_K, INDICES, MAX_KNN_IMAGES, MAX_RESAMPLE_IMAGES
from pages.compare import cache, widgets
from pages.compare.context import CmpContext
from pages.compare.figures import cka_heatmap

MIN_INDEX_IMAGES = 5


def draw(ctx: CmpContext, cmp: Comparison | None, M: np.ndarray, kind: str) -> int | None:
    """The section; returns the neighbours k chosen here (the agreement map uses it too), None with too few images."""
    names = list(ctx.names)
    st.header("Similarity indices", divider="gray")
    n_img = ctx.n
    if n_img < MIN_INDEX_IMAGES:
        st.info(f"The similarity indices and the agreement map need at least {MIN_INDEX_IMAGES} images.")
        return None
    k_max = min(50, n_img - 1)
    k_idx = st.slider("Neighbours k (mutual k-NN, CKNNA, the agreement map)", 2, k_max, min(DEFAULT_K, k_max),
                      key="cmp_k_idx", help="Each image's k nearest neighbours (cosine) in each source's space.")
    sims = cache.indices(ctx, k_idx)
    first = next(iter(sims.values()))
    e0 = next(iter(first.estimates.values()))
    st.caption(f"Global embeddings of {n_img:,} images. Cells: the index, and under it its {e0.level:.0%} bootstrap "
               f"interval over images ({e0.n_boot} draws). The table adds the permutation baseline (the index after "
               f"shuffling one source's images against the other's, {e0.n_perm} shuffles) and its p-value. "
               "Diagonal: a source with itself."
               + ("" if n_img <= min(MAX_KNN_IMAGES, MAX_RESAMPLE_IMAGES) else
                  f" Values: CKA and Procrustes on all {n_img:,} images, mutual k-NN and CKNNA on "
                  f"{widgets.sample_note(min(n_img, MAX_KNN_IMAGES), n_img)} (their intervals too); the intervals and baselines "
                  f"of CKA and Procrustes on seeded draws of n = {min(n_img, MAX_RESAMPLE_IMAGES):,} images."))
    cols_idx = [c for _ in range(0, len(sims), 2) for c in st.columns(2, gap="large")]  # two matrices a row
    for col, (iname, m) in zip(cols_idx, sims.items()):
        info = INDICES[iname]
        text = np.array([[f"{m.value[a, b]:.2f}" if a == b else
                          f"{m.value[a, b]:.2f}<br>{m.ci_low[a, b]:.2f}–{m.ci_high[a, b]:.2f}"
                          for b in range(len(names))] for a in range(len(names))])
        zr = (0.0, 1.0) if info.higher_is_similar else (0.0, max(1.0, float(np.nanmax(m.value))))
        col.plotly_chart(cka_heatmap(m.value, names, names, title=info.label, colorbar=info.label.split(" ")[-1],
                                     zrange=zr, reverse=not info.higher_is_similar, text=text, height=340),
                         key=f"cmp_idx_{iname}")
        col.caption(info.summary)
    idx_df = pd.DataFrame([{"index": INDICES[n].label, "A": names[a], "B": names[b], "value": e.value,
                            "CI low": e.ci_low, "CI high": e.ci_high, "baseline": e.baseline, "p": e.p_value,
                            "k": e.k, "images": e.n_images}
                           for n, mm in sims.items() for (a, b), e in mm.estimates.items()])
    st.dataframe(idx_df, hide_index=True, key="cmp_idx_table", column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in ("value", "CI low", "CI high", "baseline", "p")})
    d1, d2, _ = st.columns([1, 1, 4])
    d1.download_button("⬇ Indices (CSV)", widgets.csv(idx_df), "compare_indices.csv", "text/csv", on_click="ignore",
                       key="dl_idx")
    if cmp is not None:
        d2.download_button("⬇ All (JSON)", json.dumps(dataclasses.replace(cmp, cka=M, cka_kind=kind, indices=sims)
                                                       .to_json(), indent=2),
                           "compare.json", "application/json", on_click="ignore", key="dl_cmp_json",
                           help="The CLI's `backbone-lens compare --json` format (`--sources` for imported sets): one "
                                "object per source with its row of the CKA matrix ('cka', in 'cka_order') and of every "
                                "index.")
    return k_idx
