"""Similarity indices section: every index with its interval and baseline, and the agreement map."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import streamlit as st

from core.compare.comparison import Comparison
from core.compare.indices import DEFAULT_K, INDICES, MAX_KNN_IMAGES, MAX_RESAMPLE_IMAGES
from core.projection.projectors import ProjectionParams, available_methods, method_label
from pages.compare import cache, widgets
from pages.compare.context import CmpContext
from pages.compare.figures import OTHER, SAME, agreement_scatter, captioned_thumb, cka_heatmap, thumb_grid
from pages.compare.widgets import pick_from_chart
from pages.shared.why import why_picker


def draw(ctx: CmpContext, cmp: Comparison | None, M: np.ndarray, kind: str) -> None:
    sel, names, fsets, records, labels = ctx.sel, list(ctx.names), ctx.fsets, ctx.records, ctx.labels
    key_names, img_names, ss = ctx.names, ctx.img_names, st.session_state



    st.header("Similarity indices", divider="gray")
    n_img = len(records)
    if n_img < 5:
        st.info("The similarity indices need at least 5 images.")
    else:
        k_max = min(50, n_img - 1)
        k_idx = st.slider("Neighbours k (mutual k-NN, CKNNA)", 2, k_max, min(DEFAULT_K, k_max), key="cmp_k_idx",
                          help="Each image's k nearest neighbours (cosine) in each backbone's space.")
        sims = cache.indices(key_names, sel.dataset_key, k_idx, fsets)
        first = next(iter(sims.values()))
        e0 = next(iter(first.estimates.values()))
        st.caption(f"Global embeddings of {n_img} images. Cells: the index, and under it its {e0.level:.0%} bootstrap "
                   f"interval over images ({e0.n_boot} draws). The table adds the permutation baseline (the index after "
                   f"shuffling one backbone's images against the other's, {e0.n_perm} shuffles) and its p-value. "
                   "Diagonal: a backbone with itself."
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
                               help="The CLI's `backbone-lens compare --json` format: one object per backbone with its row "
                                    "of the CKA matrix ('cka', in 'cka_order') and of every index.")

        # -- the agreement map: where do two backbones see different neighbourhoods? --
        st.subheader("Agreement map")
        g1, g2, g3 = st.columns(3)
        ag_a = g1.selectbox("Map of backbone A", names, key="cmp_ag_a")
        ag_b = g2.selectbox("coloured by its neighbours shared with B", names, index=1 if names[0] == ag_a else 0,
                            key="cmp_ag_b")
        ag_method = g3.selectbox("Projection", available_methods(), key="cmp_ag_proj", format_func=method_label)
        if ag_a == ag_b:
            st.info("Pick two different backbones.")
        else:
            XA, XB = fsets[names.index(ag_a)]["embedding"], fsets[names.index(ag_b)]["embedding"]
            overlap = cache.overlap(ag_a, ag_b, sel.dataset_key, k_idx, XA, XB)  # [N]
            coords_a = cache.projection(ag_a, sel.dataset_key, ProjectionParams(ag_method), XA)
            c_map, c_nb = st.columns([3, 2], gap="medium")
            with c_map:
                fig = agreement_scatter(coords_a, overlap, labels, img_names, k=k_idx, other=ag_b, method=ag_method,
                                        chosen=ss["cmp_image"],
                                        title=f"{method_label(ag_method)} of {ag_a}, coloured by neighbours shared with "
                                              f"{ag_b} (k = {k_idx})")
                st.plotly_chart(fig, key="cmp_ag_map", on_select=lambda: pick_from_chart("cmp_ag_map"),
                                selection_mode="points")
                st.caption(f"Mean overlap {overlap.mean():.0%} (the mutual k-NN index); red images sit among different "
                           f"neighbours in the two spaces. Click a point to open it here and below.")
            with c_nb:
                j = ss["cmp_image"]
                sh = cache.shared(ag_a, ag_b, sel.dataset_key, k_idx, j, XA, XB)
                st.markdown(f"**{img_names[j]}**{f' ({labels[j]})' if labels[j] else ''}: {len(sh.shared)} of {k_idx} "
                            "neighbours shared")
                for who, rows_, sims_ in ((ag_a, sh.a, sh.sim_a), (ag_b, sh.b, sh.sim_b)):
                    thumbs = [captioned_thumb(cache.thumb(records[r].sha256, records[r]),
                                              [labels[r] or img_names[r].rsplit("/", 1)[-1], f"cos {c:.2f}"],
                                              border=SAME if r in sh.shared else OTHER, side=96, text_size=11)
                              for r, c in zip(rows_, sims_)]
                    st.markdown(f"nearest in **{who}** (green: also among the other's)")
                    st.image(thumb_grid(thumbs, per_row=5), width="content")
                why_picker(records[j], {ag_a: [records[r] for r in sh.a], ag_b: [records[r] for r in sh.b]},
                           origin="Compare's agreement map", key="cmp_why")
