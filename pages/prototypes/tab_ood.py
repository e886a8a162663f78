"""Out-of-distribution tab: Mahalanobis and energy scores, with a class treated as unknown."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.classify.ood import OOD_SCORES
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import THUMB
from pages.shared.items import show_thumb

OOD_LABEL = {"mahalanobis": "Mahalanobis distance (to the nearest class)", "energy": "energy (−log p(x) + const)"}


def draw(ctx: ProtoContext) -> None:
    X, y, items, classes_all, test_size, seed, K = ctx.X, ctx.y, ctx.items, ctx.classes, ctx.test_size, ctx.seed, ctx.K
    fid = ctx.fid
    st.caption("How far an image lies from every class, from the statistics LDA uses: the class means and one shared "
               "covariance (Ledoit-Wolf). Mahalanobis = the distance to the nearest class mean, not squared, as on every "
               "page (Lee et al. 2018 score its square: the same ranking); energy = −log Σ_c π_c exp(−d_c² / 2), i.e. "
               "−log p(x) up to a constant (Liu et al. 2020). "
               "Higher = more unusual.")
    unknown = st.multiselect("Treat these classes as unknown (left out of the statistics)", list(classes_all),
                             default=[], key="ood_unknown", persist_state="session")
    if unknown and K - len(unknown) < 2:
        st.info("Leave at least two known classes.")
        return
    try:
        res = cache.unknown(fid, tuple(sorted(unknown)), test_size, seed, X, y)
    except ValueError as e:
        st.error(f"Cannot fit the class statistics: {e}")
        return
    rows, sc, flag = res.test_indices, res.scores, res.is_unknown
    if unknown:
        st.caption(f"Statistics from the training split of the {K - len(unknown)} known classes ({res.n_train} images); "
                   f"scored: their {int((~flag).sum())} test images and all {int(flag.sum())} images of the unknown "
                   "classes. AUROC = chance that an unknown image scores above a known one (0.5 = no better than "
                   "chance, 1 = perfect).")
        m = st.columns(len(OOD_SCORES))
        for col, kind in zip(m, OOD_SCORES):
            col.metric(f"AUROC, {OOD_LABEL[kind]}", f"{res.auroc[kind]:.3f}")
    else:
        st.caption(f"Statistics from the training split ({res.n_train} images); scored: the {len(rows)} held-out test "
                   "images, which the statistics never saw. Mark a class as unknown above to measure how well the "
                   "scores flag a class the model never saw.")
    cols = st.columns(len(OOD_SCORES), gap="medium")
    for col, kind in zip(cols, OOD_SCORES):
        v = sc.score(kind)
        fig = go.Figure()
        for name, mask, colour in (("known classes", ~flag, "#1f77b4"), ("unknown classes", flag, "#d62728")):
            if mask.any():
                fig.add_trace(go.Histogram(x=v[mask], name=name, marker_color=colour, opacity=0.65, nbinsx=30))
        fig.update_layout(barmode="overlay", height=320, margin=dict(l=10, r=10, t=40, b=10),
                          title=dict(text=OOD_LABEL[kind], x=0), legend=dict(orientation="h", y=-0.25))
        fig.update_xaxes(title_text="score (higher = more unusual)")
        fig.update_yaxes(title_text="images")
        col.plotly_chart(fig, key=f"ood_hist_{kind}")
    table = pd.DataFrame({"image": [items.names[i] for i in rows], "class": y[rows],
                          "unknown class": flag, "nearest class": sc.nearest,
                          "Mahalanobis distance": sc.mahalanobis, "energy": sc.energy}).sort_values("Mahalanobis distance",
                                                                                           ascending=False)
    st.subheader("Most unusual images (Mahalanobis)")
    top = st.columns(6)
    for j, i in enumerate(table.index[:6]):
        show_thumb(top[j], items, rows[i], THUMB, caption=f"{y[rows[i]]} · {sc.mahalanobis[i]:.1f}")
    st.dataframe(table, hide_index=True, column_config={
        "Mahalanobis distance": st.column_config.NumberColumn(format="%.1f"),
        "energy": st.column_config.NumberColumn(format="%.1f")})
