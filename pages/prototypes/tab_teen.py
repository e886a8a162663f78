"""TEEN tab: few-shot prototypes of new classes calibrated towards the base classes (Wang et al. 2023)."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.classify.teen import max_new_class_shots
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext


def draw(ctx: ProtoContext) -> None:
    X, y, classes_all, test_size, seed, K = ctx.X, ctx.y, ctx.classes, ctx.test_size, ctx.seed, ctx.K
    fid = ctx.fid
    st.caption("Base classes keep all their training images; each new class gets only k shots, so its prototype is "
               "noisy and biased. TEEN (Wang et al., NeurIPS 2023) pulls every new prototype towards the base "
               "prototypes it resembles: p̂ = α·p + (1 − α)·Σ_b softmax(τ·cos(p, p_b))·p_b, on normalised prototypes. "
               "Cosine NMC on the same test images, with and without calibration; mean ± std over draws.")
    c1, c2 = st.columns([3, 2])
    half = list(classes_all[: max(1, K // 2)])
    base = c1.multiselect("Base classes (all their training images)", list(classes_all), default=half, key="teen_base",
                          persist_state="session")
    new = [c for c in classes_all if c not in base]
    if not base or not new:
        st.info("Choose at least one base class and leave at least one class as a new class.")
        return
    kmax = max_new_class_shots(y, base, test_size)
    if kmax > 1:
        k = c2.slider("Shots per new class (k)", 1, kmax, 1, key="teen_k", persist_state="session")
    else:
        k = 1
        c2.caption("Shots per new class: k = 1 (a new class has only one training image).")
    c3, c4, c5 = st.columns(3)
    alpha = c3.slider("Fusion weight α (weight of the few-shot prototype; 1 = no calibration)", 0.0, 1.0, 0.5, 0.05,
                      key="teen_alpha", persist_state="session")
    tau = c4.slider("Temperature τ (larger: only the most similar base classes)", 0.0, 64.0, 16.0, 1.0, key="teen_tau",
                    persist_state="session")
    draws = c5.slider("Draws", 1, 30, 10, key="teen_draws", persist_state="session")
    try:
        df = cache.teen(fid, tuple(base), k, alpha, tau, draws, seed, test_size, X, y)
        sweep = cache.teen_sweep(fid, tuple(base), k, tau, min(draws, 5), seed, test_size, X, y)
    except ValueError as e:  # e.g. a class too small for a train/test split
        st.error(f"Cannot run TEEN on this dataset: {e}")
        return
    c1, c2 = st.columns(2, gap="medium")
    fig = go.Figure()
    for name, colour in (("plain", "#7f7f7f"), ("TEEN", "#d62728")):
        d = df[df.prototypes == name]
        fig.add_trace(go.Bar(x=d["classes"], y=d["mean"], error_y=dict(type="data", array=d["std"]), name=name,
                             marker_color=colour,  # no text on the bars: an error bar would cross it (the table has them)
                             hovertemplate="%{x}: %{y:.1%} ± %{error_y.array:.1%}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", height=420, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{len(base)} base + {len(new)} new classes, {k}-shot (α={alpha}, τ={tau})", x=0),
                      legend=dict(title=dict(text="new-class prototypes"), orientation="h", y=1.02, x=1, xanchor="right",
                                  yanchor="bottom"))
    fig.update_yaxes(title_text="accuracy (cosine NMC)", range=[0, 1.1], tickformat=".0%")
    fig.update_xaxes(title_text="test images of")
    c1.plotly_chart(fig, key="teen_bars")
    fig = go.Figure()
    for part, colour in (("new", "#d62728"), ("base", "#1f77b4"), ("all", "#2ca02c")):
        d = sweep[sweep["classes"] == part]
        fig.add_trace(go.Scatter(x=d["alpha"], y=d["mean"], error_y=dict(type="data", array=d["std"]),
                                 mode="lines+markers", name=part, line=dict(color=colour)))
    fig.add_vline(x=alpha, line_dash="dot", line_color="gray", annotation_text="α", annotation_position="top")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10), legend=dict(title=dict(text="test images of")),
                      title=dict(text=f"Accuracy vs fusion weight α (τ={tau}, {min(draws, 5)} draws)", x=0))
    fig.update_xaxes(title_text="α (1 = plain few-shot prototypes)")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.05], tickformat=".0%")
    c2.plotly_chart(fig, key="teen_sweep")
    st.dataframe(df, hide_index=True, column_config={"mean": st.column_config.NumberColumn(format="%.3f"),
                                                    "std": st.column_config.NumberColumn(format="%.3f")})
