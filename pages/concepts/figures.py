"""The Concepts page's plotly figure: the per-class contribution table as a labelled heat map. No Streamlit."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from core.concepts.contributions import ClassTable

LABEL_CHARS = 24  # a concept's axis label is cut to this many characters


def short(text: str, n: int = LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def column_label(text: str, width: int = 10) -> str:
    """``"C3 brown hide"`` -> ``"C3<br>brown<br>hide"``: the number, then the name in lines of about ``width``
    characters, so the columns' labels stay horizontal and apart."""
    number, _, name = short(text).partition(" ")
    lines: list[str] = []
    for word in name.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join([number, *lines])


def class_table_heatmap(table: ClassTable, concept_labels: Sequence[str], *, title: str) -> go.Figure:
    """Classes (rows) x concepts (columns): each concept's term in the class's mean cosine NMC score to its own
    prototype, written in the cells; each class's top concept outlined; the row labels carry the class's score
    (the sum of its row, the offset and the residual) and its number of images.

    Args:
        table: the atlas's :class:`~core.concepts.contributions.ClassTable` (``contributions [C, k]``).
        concept_labels: ``k`` column labels (e.g. ``atlas.label(j)``, with the user's names).
    """
    Z = np.asarray(table.contributions, np.float64)  # [C, k]
    C, k = Z.shape
    if len(concept_labels) != k:
        raise ValueError(f"{len(concept_labels)} labels for {k} concepts")
    cols = [column_label(s) for s in concept_labels]
    rows = [f"{c} · score {s:.2f} · {n} img" for c, s, n in zip(table.classes, table.score, table.counts)]
    signed = bool((Z < 0).any())
    lim = float(np.abs(Z).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=Z, x=cols, y=rows, zmin=-lim if signed else 0.0, zmax=lim, zmid=0.0 if signed else None,
        colorscale="RdBu_r" if signed else "Blues",
        colorbar=dict(title=dict(text="term in the<br>class's score", side="right")),
        texttemplate="%{z:.2f}", textfont=dict(size=12),
        hovertemplate="class %{y}<br>concept %{x}<br>term %{z:.3f}<extra></extra>"))
    for c, j in enumerate(table.top_concept):  # the class's top concept: the one the deletion test removes
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=c - 0.5, y1=c + 0.5, line=dict(color="#d62728", width=3))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=140 + 36 * C, font=dict(size=13),
                      margin=dict(l=10, r=20, t=50, b=10), xaxis_title="concept", yaxis_title=None)
    fig.update_xaxes(type="category", side="bottom", tickangle=0, tickfont=dict(size=13))
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=13))
    return fig
