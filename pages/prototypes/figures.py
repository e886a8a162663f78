"""Figures and small widgets the Prototypes tabs share: the labelled heat map, a thumbnail,
percentages and the accuracy table."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.classify.tables import method_label
from core.errors import ImageDecodeError
from core.io.images import ImageRecord
from pages.shared.items import record_thumb

THUMB = 120
DIST_LABEL = {"cosine": "cosine distance (1 − cos)", "euclidean": "Euclidean distance"}


def show(where, rec: ImageRecord, side: int = THUMB, caption: str | None = None) -> None:
    """A thumbnail of ``rec`` in ``where``, or a warning when the file changed or went away."""
    try:
        where.image(record_thumb(rec.sha256, rec.name, side, rec), caption=caption)
    except (ImageDecodeError, OSError) as e:  # changed or removed since the dataset was listed
        where.warning(f"Cannot show **{rec.name}**: {getattr(e, 'reason', e)}")


def heatmap(z, x, y, *, colorbar: str, title: str, text=None, colorscale="Viridis", height=480,
            xtitle="", ytitle="", show_y=True, zmin=None, zmax=None, dtick=None, text_size=11) -> go.Figure:
    """A labelled heat map (first row at the top), the values written in the cells when ``text``."""
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, colorscale=colorscale, zmin=zmin, zmax=zmax,
        colorbar=dict(title=dict(text=colorbar, side="right"), dtick=dtick),
        text=text, texttemplate="%{text}" if text is not None else None, textfont=dict(size=text_size),
        hovertemplate=f"{ytitle or 'row'}: %{{y}}<br>{xtitle or 'column'}: %{{x}}<br>{colorbar}: %{{z:.3f}}<extra></extra>"))
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)), height=height, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title_text=xtitle, side="bottom", tickangle=-40)
    fig.update_yaxes(title_text=ytitle, autorange="reversed", showticklabels=show_y)
    return fig


def pct(a: float) -> str:
    return f"{100 * a:.1f}%"


def accuracy_table(results) -> pd.DataFrame:
    """One row per classifier: its accuracy with the 95 % Wilson interval over the test images."""
    return pd.DataFrame([{"method": method_label(r.method), "accuracy": r.accuracy,
                          "95% interval": f"{100 * r.ci_low:.0f}–{100 * r.ci_high:.0f}%",
                          "correct": f"{int(round(r.accuracy * r.n_test))} / {r.n_test}",
                          "protocol": r.protocol, "n_train": r.n_train, "n_test": r.n_test} for r in results])


def show_accuracies(slot, table: pd.DataFrame) -> None:
    slot.dataframe(table, hide_index=True, column_config={
        "method": st.column_config.TextColumn("method", width="large"),
        "accuracy": st.column_config.ProgressColumn("accuracy", format="percent", min_value=0, max_value=1),
        "95% interval": st.column_config.TextColumn(
            "95% interval", help="Wilson score interval of the accuracy over the test images: two methods whose "
                                 "intervals overlap cannot be told apart on this test set.")})
