"""The Discover page's figures (plotly, no Streamlit): the k curve with its best point, and the known
classes' growth (labelled images, plus the unlabelled images discovery put into each)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from core.discover import KCurve

BEST = "#d62728"
CRITERION = ("Criterion (Vaze et al., CVPR 2022): k-means on all images with (known classes + k_new) clusters, labels "
             "unused, scored by clustering accuracy on the labelled images under Hungarian matching; each point is the "
             "mean of {runs} runs on {n_fit:,} images; the best is starred (ties: the larger k_new). The labelled "
             "images only see the known classes, so the estimate is coarse.")


def k_curve_figure(curve: KCurve, chosen: int | None = None, truth: int | None = None) -> go.Figure:
    """Mean clustering accuracy on the labelled images against the number of new clusters; the best
    point starred, ``chosen`` (if it differs) and ``truth`` (the number hidden, when known) as lines."""
    ks, score = [int(k) for k in curve.k_new], [float(s) for s in curve.score]
    fig = go.Figure(go.Scatter(x=ks, y=score, mode="lines+markers", name="score", line=dict(color="#1f77b4", width=2),
                               marker=dict(size=7),
                               hovertemplate="%{x} new clusters<br>labelled-image accuracy %{y:.3f}<extra></extra>"))
    best = curve.best
    fig.add_trace(go.Scatter(x=[best], y=[score[ks.index(best)]], mode="markers+text", name=f"best: {best}",
                             marker=dict(symbol="star", size=18, color=BEST, line=dict(width=1, color="white")),
                             text=[f"best: {best}"], textposition="top center", textfont=dict(size=13, color=BEST),
                             hoverinfo="skip"))
    if truth is not None:
        fig.add_vline(x=truth, line=dict(color="#2ca02c", dash="dash", width=2),
                      annotation=dict(text=f"hidden: {truth}", font=dict(size=12, color="#2ca02c")),
                      annotation_position="bottom right")
    if chosen is not None and chosen != best:
        fig.add_vline(x=chosen, line=dict(color="#555", dash="dot"), annotation_text=f"used: {chosen}")
    lo = min(score)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
                      title=dict(text="Choosing the number of new clusters", x=0, font=dict(size=15)))
    fig.update_xaxes(title_text="new clusters (k_new)", dtick=1 if len(ks) <= 25 else None)
    fig.update_yaxes(title_text="accuracy on labelled images", range=[max(0.0, lo - 0.08), 1.04])
    return fig


def growth_figure(classes: Sequence[str], labelled: Sequence[int], added: Mapping[str, int],
                  colours: Mapping[str, str]) -> go.Figure:
    """One bar per known class: its labelled images (solid) and the unlabelled images discovery put into
    it (hatched, the same colour), with "+n" at the end."""
    ys = list(classes)
    add = [int(added.get(c, 0)) for c in ys]
    cols = [colours[c] for c in ys]
    fig = go.Figure([
        go.Bar(y=ys, x=list(labelled), orientation="h", name="labelled", marker=dict(color=cols),
               hovertemplate="%{y}: %{x} labelled images<extra></extra>"),
        go.Bar(y=ys, x=add, orientation="h", name="added by discovery", text=[f"+{a}" for a in add],
               textposition="outside", cliponaxis=False,
               marker=dict(color=cols, opacity=0.55, pattern=dict(shape="/", fgcolor="white", size=6)),
               hovertemplate="%{y}: +%{x} unlabelled images<extra></extra>"),
    ])
    fig.update_layout(barmode="stack", height=max(240, 90 + 28 * len(ys)), margin=dict(l=10, r=30, t=50, b=10),
                      title=dict(text="Known classes: labelled (solid) + added by discovery (hatched)", x=0,
                                 font=dict(size=15)), showlegend=False)
    fig.update_xaxes(title_text="images")
    fig.update_yaxes(autorange="reversed")
    return fig
