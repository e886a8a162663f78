"""Prototypes tab: prototype-to-prototype and image-to-prototype distances, per-class margins."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import render
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import DIST_LABEL, heatmap

MAX_TICKS = 80       # image-name ticks on the image-to-prototype matrix
HEAT_MAX_ROWS = 2_000  # image rows drawn in the image-to-prototype heat map (evenly spaced above)


def draw(ctx: ProtoContext) -> None:
    X, y, items, metric, K = ctx.X, ctx.y, ctx.items, ctx.metric, ctx.K
    fid = ctx.fid
    pd_ = cache.prototypes(fid, metric, X, y)
    classes, order, D_pp, D_ip, margin = pd_.classes, pd_.order, pd_.D_pp, pd_.D_ip, pd_.margin
    st.caption(f"{K} prototypes from all {len(y):,} images (in-sample: the held-out accuracies are on the Classifiers tab).")
    c1, c2 = st.columns([1, 1], gap="medium")  # the class-by-class matrix needs room for its numbers
    text = np.vectorize(lambda v: f"{v:.2f}")(np.maximum(D_pp, 0.0)) if K <= 12 else None  # no "-0.00"
    c1.plotly_chart(heatmap(D_pp, list(classes), list(classes), colorbar=DIST_LABEL[metric], text=text,
                             title="Prototype to prototype", xtitle="prototype", ytitle="prototype", height=520,
                            text_size=11 if K <= 8 else 9),
                    key="pp_heat")
    names = [items.names[i] for i in order]
    # a heat map of 100,000 rows would not draw: show HEAT_MAX_ROWS rows evenly spaced in class order
    rows = np.unique(np.linspace(0, len(order) - 1, HEAT_MAX_ROWS).round().astype(int)) if len(order) > HEAT_MAX_ROWS \
        else np.arange(len(order))
    ys = [names[i] for i in rows]
    shown = "" if len(rows) == len(order) else f"; {len(rows):,} of {len(order):,} images shown, evenly spaced"
    fig = heatmap(D_ip[rows], list(classes), ys, colorbar=DIST_LABEL[metric],
                   title=f"Image to prototype (images sorted by class{shown})",
                   xtitle="prototype", ytitle="image", height=max(520, min(1400, 14 * len(ys) + 120)),
                   show_y=len(ys) <= MAX_TICKS)
    wrong = np.flatnonzero(pd_.nearest[rows] != pd_.own[rows])  # among the rows shown
    if len(wrong):
        fig.add_trace(go.Scatter(x=classes[pd_.nearest[rows[wrong]]], y=[ys[i] for i in wrong], mode="markers",
                                 marker=dict(symbol="x", size=9, color="red", line=dict(width=1, color="white")),
                                 name="nearest prototype is another class", hoverinfo="skip"))
    bounds = np.flatnonzero(y[order][rows][1:] != y[order][rows][:-1])  # last shown row of each class
    for b in bounds:
        fig.add_shape(type="line", xref="paper", x0=0, x1=1, y0=b + 0.5, y1=b + 0.5, yref="y",
                      line=dict(color="white", width=2))
    fig.update_yaxes(type="category", dtick=1, tickfont=dict(size=10))
    fig.update_layout(legend=dict(orientation="h", y=-0.08, x=0))
    c2.plotly_chart(fig, key="ip_heat")

    st.subheader("Per-class margin")
    st.caption("Margin of an image = distance to the nearest other prototype − distance to its own prototype. "
               "Positive: NMC gets it right, with that much room.")
    df = pd.DataFrame({"image": names, "class": y[order], "margin": margin})
    fig = go.Figure()
    colours = render.class_colours(list(classes))
    for c in classes:
        d = df[df["class"] == c]
        fig.add_trace(go.Box(y=d["margin"], name=str(c), marker_color=colours[c],
                             boxpoints="all" if len(df) <= 2000 else "outliers", jitter=0.4, pointpos=0, text=d["image"],
                             hovertemplate="%{text}<br>margin %{y:.3f}<extra></extra>", showlegend=False))
    fig.add_hline(y=0, line_dash="dash", line_color="gray")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=10, b=10))
    fig.update_yaxes(title_text=f"margin ({DIST_LABEL[metric]})")
    fig.update_xaxes(title_text="class")
    c1, c2 = st.columns([1, 1], gap="medium")  # every column of the summary table visible
    c1.plotly_chart(fig, key="margins")
    summary = df.groupby("class")["margin"].agg(images="size", mean_margin="mean", min_margin="min",
                                                correct=lambda m: float((m > 0).mean()))
    c2.dataframe(summary, column_config={
        "mean_margin": st.column_config.NumberColumn("mean margin", format="%.3f"),
        "min_margin": st.column_config.NumberColumn("min margin", format="%.3f"),
        "correct": st.column_config.ProgressColumn("margin > 0", format="percent", min_value=0, max_value=1)})

    def csv() -> bytes:  # made on a click only: 100,000 rows take seconds
        out = pd.DataFrame(D_ip, columns=[f"d_{c}" for c in classes])
        out.insert(0, "margin", margin)
        out.insert(0, "label", y[order])
        out.insert(0, "path", [items.paths[i] for i in order])
        out.insert(0, "name", names)
        return out.to_csv(index=False).encode()

    c2.download_button("Download image-to-prototype distances (CSV)", csv, file_name=f"prototype_distances_{metric}.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")
