"""Figures of the Compare page that other pages can reuse: a class-coloured embedding scatter with one
colour per class shared across backbones, the agreement map (one backbone's scatter coloured by each
image's neighbour overlap with another), a labelled heat map for CKA and index matrices, and strips of
captioned thumbnails (nearest neighbours, disagreements). Plotly and PIL only: no Streamlit, so it is testable."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageOps

from core import render
from core.projection.projectors import axis_titles

SAME = (34, 139, 34)       # green border: same class as the query
OTHER = (200, 30, 30)      # red border: another class
NEUTRAL = (150, 150, 150)  # unlabelled


def embedding_scatter(coords: np.ndarray, labels: Sequence[str], names: Sequence[str], colours: dict[str, str], *,
                      title: str, method: str, chosen: int | None = None, neighbours: Sequence[int] = (),
                      height: int = 380) -> go.Figure:
    """Scatter of a 2-D map ``coords [N, 2]``: one trace per class (legend order = ``colours`` order),
    the chosen image as a black star, its neighbours ringed. ``customdata`` holds the row index.

    Args:
        labels: class of each row (``""`` = unlabelled, drawn grey as "unlabelled").
        method: projection name, for the axis titles ("PC 1", "UMAP 1", ...).
    """
    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(labels):
        raise ValueError(f"coords must be [N, 2] with one label per row, got {xy.shape} and {len(labels)} labels")
    lab = np.asarray(labels, dtype=object)
    fig = go.Figure()
    groups = [(c, colours[c]) for c in colours] + ([("", "#999999")] if (lab == "").any() else [])
    for c, col in groups:
        idx = np.flatnonzero(lab == c)
        if len(idx) == 0:
            continue
        fig.add_trace(go.Scatter(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=c or "unlabelled",
            marker=dict(size=8, color=col, line=dict(width=0.5, color="white")),
            unselected=dict(marker=dict(opacity=1.0)),  # a click picks an image; it must not fade the rest
            customdata=idx, text=[names[int(i)] for i in idx],
            hovertemplate="%{text}<br>" + (c or "unlabelled") + "<extra></extra>"))
    if len(neighbours):
        nb = np.asarray(neighbours)
        fig.add_trace(go.Scatter(x=xy[nb, 0], y=xy[nb, 1], mode="markers", name="neighbours", customdata=nb,
                                 marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(width=2, color="black")),
                                 text=[names[i] for i in nb], hovertemplate="%{text}<br>neighbour<extra></extra>"))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[xy[chosen, 0]], y=[xy[chosen, 1]], mode="markers", name="chosen image",
                                 customdata=[chosen], text=[names[chosen]],
                                 marker=dict(size=18, symbol="star", color=colours.get(str(lab[chosen]), "#999999"),
                                             line=dict(width=2, color="black")),
                                 hovertemplate="%{text}<br>chosen image<extra></extra>"))
    ax = axis_titles(method)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=50, r=10, t=40, b=10),
                      xaxis_title=ax[0], yaxis_title=ax[1], legend=dict(orientation="h", y=-0.18, x=0,
                                                                                 font=dict(size=11)),
                      plot_bgcolor="white", clickmode="event+select")
    fig.update_xaxes(showgrid=True, gridcolor="#eee", zeroline=False, showticklabels=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eee", zeroline=False, showticklabels=False)
    return fig


def cka_heatmap(M: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, title: str, colorbar: str,
                x_title: str = "", y_title: str = "", annotate: bool = True, table_order: bool = True,
                height: int = 380, zrange: tuple[float, float] = (0.0, 1.0), reverse: bool = False,
                text: np.ndarray | None = None) -> go.Figure:
    """A ``[R, C]`` matrix as a labelled heat map (viridis over ``zrange``, values written in the cells
    when ``annotate``, or ``text [R, C]`` when given). ``table_order``: first row at the top (like a
    table); else at the bottom (layer plots). ``reverse``: dark = high (for distances)."""
    Z = np.asarray(M, dtype=np.float64)
    if Z.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix {Z.shape} does not match {len(rows)} row and {len(cols)} column labels")
    fig = go.Figure(go.Heatmap(
        z=Z, x=list(cols), y=list(rows), zmin=zrange[0], zmax=zrange[1], colorscale="Viridis", reversescale=reverse,
        colorbar=dict(title=dict(text=colorbar, side="right")),
        text=text, texttemplate=("%{text}" if text is not None else "%{z:.2f}") if annotate else None,
        textfont=dict(size=13),
        hovertemplate=(f"{y_title or 'row'}: %{{y}}<br>{x_title or 'column'}: %{{x}}<br>"
                       f"{colorbar}: %{{z:.3f}}<extra></extra>")))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, font=dict(size=13),
                      margin=dict(l=70 if y_title else 10, r=40, t=40, b=10), xaxis_title=x_title, yaxis_title=y_title)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed" if table_order else True)
    return fig


def agreement_scatter(coords: np.ndarray, overlap: np.ndarray, labels: Sequence[str], names: Sequence[str], *,
                      k: int, title: str, method: str, other: str, chosen: int | None = None,
                      height: int = 520) -> go.Figure:
    """A 2-D map ``coords [N, 2]`` of one backbone coloured by each image's neighbour overlap ``[N]`` in
    ``[0, 1]`` with the backbone ``other`` (red: different neighbourhoods, green: the same); the chosen
    image as a black-ringed star. ``customdata`` holds the row index, for click-to-choose."""
    xy = np.asarray(coords, dtype=np.float64)
    ov = np.asarray(overlap, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or not len(xy) == len(ov) == len(labels) == len(names):
        raise ValueError(f"coords must be [N, 2] with one overlap, label and name per row, got {xy.shape}, "
                         f"{len(ov)}, {len(labels)}, {len(names)}")
    shared = np.rint(ov * k).astype(int)
    fig = go.Figure(go.Scatter(
        x=xy[:, 0], y=xy[:, 1], mode="markers", name="images", customdata=np.arange(len(xy)),
        text=[f"{n}<br>class: {c or 'unlabelled'}<br>{s} of {k} neighbours shared with {other}"
              for n, c, s in zip(names, labels, shared)],
        marker=dict(size=10, color=ov, cmin=0.0, cmax=1.0, colorscale="RdYlGn", line=dict(width=0.5, color="#444"),
                    colorbar=dict(title=dict(text=f"neighbours shared<br>with {other}", side="right"),
                                  tickformat=".0%")),
        unselected=dict(marker=dict(opacity=1.0)), hovertemplate="%{text}<extra></extra>", showlegend=False))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[xy[chosen, 0]], y=[xy[chosen, 1]], mode="markers", name="chosen image",
                                 customdata=[chosen], hoverinfo="skip", showlegend=False,
                                 marker=dict(size=20, symbol="star", color="rgba(0,0,0,0)",
                                             line=dict(width=2.5, color="black"))))
    ax = axis_titles(method)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=50, r=40, t=40, b=10),
                      xaxis_title=ax[0], yaxis_title=ax[1], plot_bgcolor="white", clickmode="event+select")
    fig.update_xaxes(showgrid=True, gridcolor="#eee", zeroline=False, showticklabels=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eee", zeroline=False, showticklabels=False)
    return fig


def captioned_thumb(image: Image.Image, lines: Sequence[str], border=NEUTRAL, side: int = 112,
                    text_size: int = 13) -> Image.Image:
    """A thumbnail with a coloured 4-px border and caption lines above it (first line on top)."""
    out = ImageOps.expand(render.fit(image, side - 8), border=4, fill=tuple(border))
    for line in reversed(list(lines)):
        out = render.titled(out, line, text_size=text_size)
    return out


def thumb_grid(thumbs: Sequence[Image.Image], per_row: int) -> Image.Image:
    """Thumbnails in rows of ``per_row`` (tops aligned), one row above the other."""
    if not thumbs:
        raise ValueError("thumb_grid needs at least one thumbnail")
    if per_row < 1:
        raise ValueError(f"per_row must be >= 1, got {per_row}")
    rows = [render.row(thumbs[i:i + per_row]) for i in range(0, len(thumbs), per_row)]
    return render.stack(rows)
