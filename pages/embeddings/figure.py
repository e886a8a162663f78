"""The Embeddings map: one trace per class, uploads as black stars, the opened image and its
nearest neighbours (full feature space) ringed."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core import render
from core.projection.projectors import axis_titles
from pages.embeddings.view import VOTE_K, MapView


def map_figure(v: MapView) -> go.Figure:
    """The scatter of ``v.coords``; ``customdata`` = [row, name, class] for click-to-open."""
    N, coords, three_d = v.n, v.coords, v.three_d
    classes = sorted(set(v.labels))
    colours = render.class_colours(classes)
    if v.colours is not None:  # a discovery: known classes first, then the new clusters, in their own colours
        classes = [c for c in v.colours if c in set(classes)]
        colours = v.colours
    size = 9 if N <= 500 else 6 if N <= 5000 else 4
    lab = np.asarray(v.labels)
    fig = go.Figure()
    ax = axis_titles(v.shown.method, coords.shape[1])
    for c in classes:
        rows = np.flatnonzero(lab == c)
        custom = [[int(i), v.records[i].name, c] for i in rows]
        marker = dict(size=size, color=colours[c], opacity=0.85, line=dict(width=0.5, color="white"))
        hover = "<b>%{customdata[1]}</b><br>class: %{customdata[2]}<extra></extra>"
        if three_d:
            fig.add_trace(go.Scatter3d(x=coords[rows, 0], y=coords[rows, 1], z=coords[rows, 2], mode="markers",
                                       name=c, customdata=custom, hovertemplate=hover, marker={**marker, "size": size * 0.6}))
        else:
            fig.add_trace(go.Scattergl(x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=c,
                                       customdata=custom, hovertemplate=hover, marker=marker))
    ups = coords[N:]
    if len(ups):
        custom = [[N + j, r.name, v.up_votes[j] + (" (far from every class)" if v.up_far[j] else "")]
                  for j, r in enumerate(v.records[N:])]
        hover = f"<b>%{{customdata[1]}}</b><br>your upload · {VOTE_K}-NN vote: %{{customdata[2]}}<extra></extra>"
        marker = dict(symbol="star" if not three_d else "diamond", size=18 if not three_d else 8, color="black",
                      line=dict(width=1.5, color="white"))
        if three_d:
            fig.add_trace(go.Scatter3d(x=ups[:, 0], y=ups[:, 1], z=ups[:, 2], mode="markers",
                                       name="your uploads", customdata=custom, hovertemplate=hover, marker=marker))
        else:
            fig.add_trace(go.Scattergl(x=ups[:, 0], y=ups[:, 1], mode="markers", name="your uploads",
                                       customdata=custom, hovertemplate=hover, marker=marker))
    if v.nbrs is not None and v.pick is not None and not three_d:
        ring = coords[v.nbrs.indices[0]]
        fig.add_trace(go.Scattergl(x=ring[:, 0], y=ring[:, 1], mode="markers", name=f"{len(ring)} nearest (full space)",
                                   hoverinfo="skip", marker=dict(symbol="circle-open", size=16, color="black",
                                                                 line=dict(width=2))))
        fig.add_trace(go.Scattergl(x=coords[[v.pick], 0], y=coords[[v.pick], 1], mode="markers", name="opened image",
                                   hoverinfo="skip", marker=dict(symbol="circle-open", size=24, color="#d62728",
                                                                 line=dict(width=3))))
    legend_title = "class" if v.colours is None else "class / new cluster"
    fig.update_layout(height=760 if three_d else 620,
                      legend=dict(title=dict(text=legend_title), itemsizing="constant", font=dict(size=13)),
                      margin=dict(l=10, r=10, t=30, b=10), dragmode="pan" if three_d else "zoom", hovermode="closest")
    if three_d:
        fig.update_layout(scene=dict(xaxis_title=ax[0], yaxis_title=ax[1], zaxis_title=ax[2], aspectmode="cube"),
                          margin=dict(l=0, r=0, t=10, b=0), legend=dict(x=0, y=1, bgcolor="rgba(255,255,255,0.7)"))
    else:
        fig.update_xaxes(title_text=ax[0], zeroline=False)
        fig.update_yaxes(title_text=ax[1], zeroline=False)
    return fig
