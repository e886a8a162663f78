"""Classify an upload tab: each uploaded image's nearest prototype, distances and place in the map."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import render
from core.classify.margins import new_image_distances
from core.classify.ood import ood_scores
from core.classify.ood_rule import SCORE_LABELS
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import DIST_LABEL, pct, show
from pages.shared.trust import judge
from pages.shared.uploads import add_files


def draw(ctx: ProtoContext) -> None:
    X, y, metric, test_size, seed, K = ctx.X, ctx.y, ctx.metric, ctx.test_size, ctx.seed, ctx.K
    fid = ctx.fid
    placed = st.file_uploader("Upload photos to classify", accept_multiple_files=True,
                              key=f"proto_upload_{st.session_state.get('proto_upload_n', 0)}",
                              help="Kept with your photos (sidebar); each is embedded with the selected backbone and "
                                   "compared to the prototypes of the whole dataset.")
    if placed:
        st.session_state["proto_upload_n"] = st.session_state.get("proto_upload_n", 0) + 1
        add_files(placed)
        st.rerun()
    ufs = ctx.queries
    if ufs is None or not ufs.records:
        st.info("Upload one or more photos (here, or unlabelled in the sidebar): each gets the class of its nearest "
                "prototype, unless it lies farther from every class than the dataset's own images do, its distance "
                "to every prototype and its place in the embedding.")
        return
    U = ufs["embedding"]  # [M, D]
    verdicts = judge(ctx.fs, U, [r.name for r in ufs.records]) if ctx.fs is not None else None
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
            v = verdicts[j] if verdicts is not None else None
            if v is not None and v.far:
                c1.warning(f"**None of these classes**: {v.sentence}", icon=":material/help:")
                c1.caption(f"The nearest prototype would be **{pred}** (runner-up **{classes[order[1]]}**): a guess.")
            else:
                c1.success(f"Predicted class: **{pred}**")
                c1.caption(f"runner-up **{classes[order[1]]}**, {nd.runner_up_gap[j]:.3f} further ({metric})"
                           + (f". {v.sentence}" if v is not None else ""))
            if gauss is not None:
                d = up_ood.distance[j]  # [K] Mahalanobis distance to every class (not squared)
                beyond = float(np.mean(ref_maha < up_ood.mahalanobis[j]))
                c1.caption(f"Mahalanobis distance (shared covariance, not squared): nearest **{up_ood.nearest[j]}** "
                           f"at {d.min():.1f}; further than {pct(beyond)} of the held-out dataset images are from "
                           f"their nearest class (statistics of the training split); energy {up_ood.energy[j]:.1f}.")
                # a narrow column: both columns "small" so the distances are in view, not scrolled off
                c1.dataframe(pd.DataFrame({"class": gauss.classes_, "distance": d}).sort_values("distance"),
                             hide_index=True, height=min(36 * K + 40, 320),
                             column_config={"class": st.column_config.TextColumn(width="small"),
                                            "distance": st.column_config.NumberColumn(
                                                format="%.1f", width="small", help="Mahalanobis distance to the class")})
            fig = go.Figure(go.Bar(x=Dm[j, order], y=classes[order], orientation="h",
                                   marker_color=["#d62728" if i == 0 else "#9ecae1" for i in range(K)],
                                   text=[f"{v:.3f}" for v in Dm[j, order]], textposition="auto"))
            fig.update_layout(height=max(360, 28 * K + 90), margin=dict(l=10, r=10, t=40, b=10),
                              title=dict(text="Distance to every prototype", x=0))
            fig.update_xaxes(title_text=DIST_LABEL[metric])
            fig.update_yaxes(title_text="prototype", autorange="reversed")
            c2.plotly_chart(fig, key=f"up_bar_{j}")
            if v is not None:  # the rule's number beside the bar's: two measurements, said once
                same = v.score_label == SCORE_LABELS.get(metric)  # the rule's measure is the bar's
                c2.caption(f"Prototypes of all the labelled images. The far-from-every-class rule's {v.score_label} "
                           f"to {v.nearest}, {v.score:.3f}, uses class means fitted on part of the images in each of "
                           "its folds, averaged over the folds (so that it compares with the dataset's own held-out "
                           "images): " + ("it can differ slightly from the bar." if same else
                                          "another measure than the bar's."))
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
            fig.add_trace(go.Scatter(x=ups[j:j + 1, 0], y=ups[j:j + 1, 1], mode="markers", name="this photo",
                                     marker=dict(symbol="star", size=20, color="black", line=dict(width=1.5, color="white")),
                                     hovertemplate=f"{rec.name}<extra>upload</extra>"))
            fig.update_layout(height=max(360, 28 * K + 90), margin=dict(l=10, r=10, t=40, b=10),
                              title=dict(text="Where it falls (PCA; diamonds = prototypes)", x=0),
                              legend=dict(title=dict(text="class"), font=dict(size=11), tracegroupgap=0))
            fig.update_xaxes(title_text="PC 1")
            fig.update_yaxes(title_text="PC 2")
            c3.plotly_chart(fig, key=f"up_map_{j}")
