"""Classify an upload tab: each uploaded image's nearest prototype, distances and place in the map."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import render
from core.classify.margins import new_image_distances
from core.classify.ood import ood_scores
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import DIST_LABEL, pct, show
from pages.shared.datasets import checked_uploads
from pages.shared.resources import features, show_failures


def draw(ctx: ProtoContext) -> None:
    X, y, sel, metric, test_size, seed, K = ctx.X, ctx.y, ctx.sel, ctx.metric, ctx.test_size, ctx.seed, ctx.K
    fid = ctx.fid
    files = st.file_uploader("Upload images to classify", accept_multiple_files=True, key="proto_upload",
                             help="Each is embedded with the selected backbone and compared to the prototypes of "
                                  "the whole dataset.")
    if not files:
        st.info("Upload one or more images: each gets its predicted class (nearest prototype), its distance to "
                "every prototype and its place in the embedding.")
        return
    up = checked_uploads(files)  # validated once per session, server limits
    for f in up.failures:
        st.error(f"Cannot use the uploaded file **{f.name}**: {f.reason}")
    if not up.records:
        return
    ufs = features(sel, dataset=up)
    show_failures(ufs)
    if not ufs.records:
        return
    U = ufs["embedding"]  # [M, D]
    nd = new_image_distances(X, y, U, metric)
    classes, Dm = nd.classes, nd.D  # [K], [M, K]
    try:  # statistics of the training split; the held-out test images are the reference
        held = cache.unknown(fid, (), test_size, seed, X, y)
        gauss, ref_maha = held.model, held.scores.mahalanobis  # ShrunkLDA, [T] held-out scores
        up_ood = ood_scores(gauss, U)
    except ValueError as e:  # e.g. a class with a single image: no split, no covariance
        gauss = None
        st.caption(f"No Mahalanobis distances: {e}")
    proj = cache.pca_map(fid, X)
    base, pcs, ups = proj.embedding_, proj.transform(nd.P), proj.transform(U)  # [N, 2], [K, 2], [M, 2]
    colours = render.class_colours(list(classes))
    for j, rec in enumerate(ufs.records):
        order = nd.ranking[j]
        pred = classes[order[0]]
        with st.container(border=True):
            c1, c2, c3 = st.columns([1, 2, 2], gap="medium")
            show(c1, rec, side=220)
            c1.markdown(f"**{rec.name}**")
            c1.success(f"Predicted class: **{pred}**")
            c1.caption(f"runner-up **{classes[order[1]]}**, {nd.runner_up_gap[j]:.3f} further ({metric})")
            share = float(nd.share_as_far[j])
            c1.caption(f"{pct(share)} of the dataset images lie at least this far from their own prototype"
                       + (": the upload may belong to none of these classes (NMC always picks one)." if share < 0.05 else "."))
            if gauss is not None:
                d = np.sqrt(up_ood.distances[j])  # [K] Mahalanobis distance to every class
                beyond = float(np.mean(ref_maha < up_ood.mahalanobis[j]))
                c1.caption(f"How far from every class (Mahalanobis, shared covariance): nearest **{up_ood.nearest[j]}** "
                           f"at {d.min():.1f}; further than {pct(beyond)} of the held-out dataset images are from "
                           f"their nearest class (statistics of the training split); energy {up_ood.energy[j]:.1f}.")
                c1.dataframe(pd.DataFrame({"class": gauss.classes_, "Mahalanobis": d}).sort_values("Mahalanobis"),
                             hide_index=True, height=min(36 * K + 40, 320),
                             column_config={"Mahalanobis": st.column_config.NumberColumn(format="%.1f")})
            fig = go.Figure(go.Bar(x=Dm[j, order], y=classes[order], orientation="h",
                                   marker_color=["#d62728" if i == 0 else "#9ecae1" for i in range(K)],
                                   text=[f"{v:.3f}" for v in Dm[j, order]], textposition="auto"))
            fig.update_layout(height=max(360, 28 * K + 90), margin=dict(l=10, r=10, t=40, b=10),
                              title=dict(text="Distance to every prototype", x=0))
            fig.update_xaxes(title_text=DIST_LABEL[metric])
            fig.update_yaxes(title_text="prototype", autorange="reversed")
            c2.plotly_chart(fig, key=f"up_bar_{j}")
            fig = go.Figure()
            for k, c in enumerate(classes):
                rows = y == c
                col = colours[c]
                fig.add_trace(go.Scattergl(x=base[rows, 0], y=base[rows, 1], mode="markers", name=str(c), legendgroup=str(c),
                                           marker=dict(size=7, color=col, opacity=0.6),
                                           text=[ctx.items.names[int(i)] for i in np.flatnonzero(rows)],
                                           hovertemplate="%{text}<extra>" + str(c) + "</extra>"))
                fig.add_trace(go.Scatter(x=pcs[k:k + 1, 0], y=pcs[k:k + 1, 1], mode="markers", legendgroup=str(c),
                                         showlegend=False, marker=dict(symbol="diamond", size=13, color=col,
                                                                       line=dict(width=1.5, color="black")),
                                         hovertemplate=f"prototype of {c}<extra></extra>"))
            fig.add_trace(go.Scatter(x=ups[j:j + 1, 0], y=ups[j:j + 1, 1], mode="markers", name="this upload",
                                     marker=dict(symbol="star", size=20, color="black", line=dict(width=1.5, color="white")),
                                     hovertemplate=f"{rec.name}<extra>upload</extra>"))
            fig.update_layout(height=max(360, 28 * K + 90), margin=dict(l=10, r=10, t=40, b=10),
                              title=dict(text="Where it falls (PCA; diamonds = prototypes)", x=0),
                              legend=dict(title=dict(text="class"), font=dict(size=11), tracegroupgap=0))
            fig.update_xaxes(title_text="PC 1")
            fig.update_yaxes(title_text="PC 2")
            c3.plotly_chart(fig, key=f"up_map_{j}")
