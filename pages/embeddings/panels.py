"""The Embeddings page's panels beside and under the map: the opened image with its nearest
neighbours, a box / lasso selection's thumbnails, and the coordinates export."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.geometry.neighbours import projection_table
from core.projection.projectors import method_label
from pages.embeddings.cache import THUMB, big, image_or_warning, short
from pages.embeddings.view import UPLOAD, VOTE_K, MapView
from pages.shared.items import record_thumb
from pages.shared.why import why_button

MAX_GRID = 48       # thumbnails shown for a box / lasso selection


def opened_image(v: MapView) -> None:
    """The image picker, and the opened image with its nearest neighbours (needs ``st`` in a column)."""
    N = v.n

    def _fmt(i: int | None) -> str:
        if i is None:
            return "— click a point or choose —"
        return f"{v.records[i].name} ({v.label(i)})"

    pick = st.selectbox("Open an image", [None, *range(len(v.records))], format_func=_fmt, key="emb_pick")
    if pick is None or v.nbrs is None:
        st.markdown("Click a point in the map to open that image here with its nearest neighbours. "
                    "Box or lasso-select (toolbar, top right of the plot) to see a group's thumbnails.")
        return
    rec = v.records[pick]
    is_up = pick >= N
    image_or_warning(st, big, rec)
    far = v.up_far[pick - N] if is_up else None
    if far:
        st.markdown(f"**{rec.name}** · {UPLOAD} · nearest images mostly **{v.up_votes[pick - N]}**, but:")
        st.warning(f"**Far from every class.** {far}", icon=":material/help:")
    else:
        st.markdown(f"**{rec.name}** · " + (f"{UPLOAD} · {VOTE_K}-NN vote: **{v.up_votes[pick - N]}**" if is_up
                                             else f"class **{v.labels[pick]}**"))
    st.slider("Neighbours (k)", 1, min(24, N - 1), min(8, N - 1), key="emb_k", persist_state="session",
              help="Ringed in the map: where the nearest neighbours in the full feature space landed.")
    idx, sims = v.nbrs.indices[0], v.nbrs.similarities[0]
    if not is_up:
        same = int(sum(v.labels[i] == v.labels[pick] for i in idx))
        st.caption(f"{same} of {len(idx)} nearest neighbours share its class "
                   f"(cosine similarity, full {v.X.shape[1]}-D space).")
    cols = st.columns(4)
    for j, (i, s) in enumerate(zip(idx, sims)):
        col = cols[j % 4]
        image_or_warning(col, record_thumb, v.records[i], THUMB, caption=short(v.records[i].name))
        colour = "green" if (not is_up and v.labels[i] == v.labels[pick]) else ("red" if not is_up else "blue")
        col.markdown(f":{colour}[{v.labels[i]}]  \ncos **{s:.3f}**")
        if not is_up:  # an upload is not a row of the dataset the Why page shows
            why_button(col, rec, v.records[i], backbone=v.backbone, origin="Embeddings", key=f"emb_why_{j}")


def selection_grid(v: MapView) -> None:
    """Thumbnails of a box / lasso selection (the first :data:`MAX_GRID`) with its class counts."""
    if not v.multi:
        return
    names, counts = np.unique([v.label(i) for i in v.multi], return_counts=True)
    st.subheader(f"Selection: {len(v.multi)} images")
    st.caption(" · ".join(f"{n}: {c}" for n, c in sorted(zip(names, counts), key=lambda t: -t[1]))
               + (f" (first {MAX_GRID} shown)" if len(v.multi) > MAX_GRID else ""))
    cols = st.columns(8)
    for j, i in enumerate(v.multi[:MAX_GRID]):
        image_or_warning(cols[j % 8], record_thumb, v.records[i], THUMB,
                         caption=f"{v.labels[i] if i < v.n else 'upload'} · {short(v.records[i].name, 10)}")


def export(v: MapView, where) -> None:
    """The coordinates with paths and labels as a CSV download."""
    N, M = v.n, len(v.records) - v.n
    table = projection_table(v.coords, [r.name for r in v.records], [str(r.path) if r.path else "" for r in v.records],
                             v.labels + [""] * M, ["dataset"] * N + ["upload"] * M)
    name = method_label(v.shown.method)
    where.download_button("Download coordinates (CSV)", table.to_csv(index=False).encode(), icon=":material/download:",
                          file_name=f"embeddings_{v.shown.method}_{v.coords.shape[1]}d_{v.backbone.replace('/', '_')}.csv",
                          mime="text/csv", key="emb_csv")
    where.caption(f"{name} coordinates with file paths and labels, {len(table)} rows "
                  f"(parameters: `{v.shown.key()}`).")
