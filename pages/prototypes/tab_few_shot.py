"""Few-shot tab: accuracy against shots per class, and where the generative and discriminative regimes meet."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import render
from core.classify import evaluation  # caps read at call time (tests lower them)
from core.classify.classifiers import classifier_names
from core.classify.tables import method_label, two_regimes
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext


def draw(ctx: ProtoContext) -> None:
    X, y, seed, K, counts_all = ctx.X, ctx.y, ctx.seed, ctx.K, ctx.counts
    fid = ctx.fid
    st.caption(f"k random training images per class, the rest (at most {evaluation.FEW_SHOT_MAX_TEST:,} of it, a stratified sample) is "
               "the test set; each point is the mean over draws, its error bar "
               "the 95 % Wilson interval over one draw's test images (the draws reuse the same few images, so their "
               "spread alone understates the uncertainty). Generative classifiers (naive Bayes, NMC, LDA) need few images to near "
               "their best; the discriminative linear probe catches up as shots grow: the two regimes (Ng & Jordan "
               "2001, revisited for pre-trained features by Zheng et al. 2023). LDA and FeCAM need 2 images per "
               "class for a covariance and have no point at 1 shot.")
    c1, c2, c3 = st.columns([2, 2, 1])
    shots = c1.multiselect("Shots per class", [1, 2, 3, 4, 5, 8, 10, 15, 20, 30, 50, 100], default=[1, 2, 3, 5],
                           key="fs_shots", persist_state="session")
    names = classifier_names()
    methods = c2.multiselect("Methods", names, default=["nb", "linear", "nmc", "nb_per_class"], format_func=method_label,
                             key="fs_methods", persist_state="session")
    draws = c3.slider("Draws", 1, 30, 10, key="fs_draws", persist_state="session")
    if not shots or not methods:
        st.info("Pick at least one shot value and one method.")
        return
    smallest = int(counts_all.min())
    skipped = [k for k in sorted(shots) if k >= smallest]
    if skipped:
        st.caption(f"Skipped {skipped}: the smallest class has {smallest} image{'s' * (smallest != 1)}, so k must be "
                   f"below {smallest} "
                   "to leave a test image in every class.")
    try:
        rows = cache.few_shot(fid, tuple(sorted(shots)), tuple(methods), draws, seed, X, y)
    except ValueError as e:
        st.error(f"Cannot draw few-shot training sets: {e}")
        return
    if not rows:
        st.warning(f"No shot value is below the smallest class size ({smallest}).")
        return
    df = pd.DataFrame([{**r.__dict__, "ci_low": r.ci_low, "ci_high": r.ci_high} for r in rows])
    fig = go.Figure()
    colours = dict(zip(names, render.hex_colours(len(names))))
    for m in methods:
        d = df[df.method == m]
        bold = m in ("nb", "linear")
        fig.add_trace(go.Scatter(x=d.shots, y=d.mean_acc, error_y=dict(type="data", array=d.ci_high - d.mean_acc,
                                                                     arrayminus=d.mean_acc - d.ci_low, visible=True),
                                 mode="lines+markers", name=method_label(m),
                                 line=dict(color=colours[m], width=3 if bold else 1.5, dash=None if bold else "dot")))
    fig.add_hline(y=1 / K, line_dash="dot", line_color="gray", annotation_text=f"chance (1/{K})",
                  annotation_position="bottom right")
    regimes = two_regimes(rows, "nb", "linear") if {"nb", "linear"} <= set(methods) else None
    if regimes is not None and regimes.crossing is not None:
        fig.add_vline(x=regimes.crossing, line_dash="dash", line_color="black")
        fig.add_trace(go.Scatter(x=[regimes.crossing], y=[regimes.crossing_accuracy], mode="markers",
                                 marker=dict(symbol="x", size=14, color="black"), name="NB and LR cross",
                                 hovertemplate="curves cross at %{x:.1f} shots<extra></extra>"))
        first, then = ("NB", "LR") if regimes.pattern == "both" else ("LR", "NB")
        fig.add_annotation(x=np.log10(regimes.crossing), y=1.0, text=f"← {first} ahead | {then} ahead →",
                           showarrow=False, yanchor="bottom", font=dict(size=12))  # log axis: x in log10
    ks = sorted(df.shots.unique())
    fig.update_layout(height=560, title=dict(text=f"Few-shot accuracy, {draws} draws per point", x=0),
                      legend=dict(title=dict(text="classifier"), orientation="h", y=-0.2, x=0, yanchor="top"),
                      margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title_text="training images per class (shots, log scale)", type="log", tickvals=ks,
                     ticktext=[str(k) for k in ks])
    fig.update_yaxes(title_text="accuracy on the remaining images", range=[0, 1.06], tickformat=".0%")
    st.plotly_chart(fig, key="fs_plot")
    if regimes is not None:
        st.markdown(f"**Two regimes ({ctx.made_by}):** {regimes.sentence}")
    else:
        st.caption("Add naive Bayes (shared variance) and the linear probe to the methods to see where the two "
                   "regimes meet.")
    if "nb_per_class" in methods:
        st.caption("Naive Bayes with a variance per class (scikit-learn's GaussianNB) estimates D variances from k "
                   "images of each class, which is why it can collapse at few shots; the paper's naive Bayes "
                   "shares one variance across classes.")
    out = df.assign(method=df.method.map(method_label)).rename(columns={"n_draws": "draws"})
    st.dataframe(out, hide_index=True, column_config={
        "mean_acc": st.column_config.NumberColumn("mean accuracy", format="%.3f"),
        "std_acc": st.column_config.NumberColumn("std", format="%.3f"),
        "ci_low": st.column_config.NumberColumn("95% low", format="%.3f"),
        "ci_high": st.column_config.NumberColumn("95% high", format="%.3f")})
    st.download_button("Download the curve (CSV)", out.to_csv(index=False).encode(), file_name="few_shot.csv",
                       mime="text/csv", icon=":material/download:")
