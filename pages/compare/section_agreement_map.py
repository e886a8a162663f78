"""Agreement map section: source A's map coloured by each image's share of nearest neighbours it keeps in
source B (core.compare.agreement.agreement_map), and the opened image's neighbours in both spaces. A
fragment: a click on the map, or a control of this view, reruns this view alone, not the page."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.projection.projectors import ProjectionParams, available_methods, method_label
from pages.compare import cache, widgets
from pages.compare.context import CmpContext
from pages.compare.figures import OTHER, SAME, agreement_scatter, captioned_thumb, thumb_grid
from pages.shared.why import why_picker

PICK = "cmp_ag_pick"  # the opened image: its row among the shared images
MAP_KEY = "cmp_ag_map"
NB_SIDE = 96          # px, neighbour thumbnails
OPENED_SIDE = 200     # px, the opened image


def draw(ctx: CmpContext, k: int | None) -> None:
    """``k``: the neighbours chosen for the indices (None: too few images, which the indices' section said)."""
    if k is not None:
        st.subheader("Agreement map")
        _view(ctx, k)


def _picked(rows: np.ndarray) -> None:
    """on_select of the map: the clicked point (``customdata`` = its position on the map) becomes the opened image."""
    pts = st.session_state.get(MAP_KEY, {}).get("selection", {}).get("points", [])
    if pts and "customdata" in pts[0]:
        cd = pts[0]["customdata"]
        st.session_state[PICK] = int(rows[int(cd[0] if isinstance(cd, (list, tuple)) else cd)])


def _open_side_by_side(row: int) -> None:
    st.session_state["cmp_image"] = row


@st.fragment
def _view(ctx: CmpContext, k: int) -> None:
    ss, names = st.session_state, list(ctx.names)
    g1, g2, g3 = st.columns(3)
    a = g1.selectbox("Map of source A", names, key="cmp_ag_a")
    b = g2.selectbox("coloured by its neighbours shared with B", names, index=1 if names[0] == a else 0, key="cmp_ag_b")
    method = g3.selectbox("Projection", available_methods(), key="cmp_ag_proj", format_func=method_label)
    if a == b:
        st.info("Pick two different sources.")
        return
    XA, XB = ctx.X(a), ctx.X(b)  # [M, DA], [M, DB]
    am = cache.agreement(ctx.key, a, b, k, XA, XB)  # rows [n] on the map, overlap [n]
    coords = cache.projection(ctx.key, a, len(am.rows), ProjectionParams(method), XA, am.rows if am.sampled else None)
    labels = [ctx.labels[r] for r in am.rows]
    names_m = [ctx.img_names[r] for r in am.rows]
    row = ss.get(PICK)
    if row is None or not np.isin(row, am.rows):  # before a click: where the two spaces differ most
        row = int(am.rows[int(np.argmin(am.overlap))])
    j = int(np.searchsorted(am.rows, row))  # its position on the map
    c_map, c_nb = st.columns([3, 2], gap="medium")
    with c_map:
        fig = agreement_scatter(coords, am.overlap, labels, names_m, k=am.k, other=b, method=method, chosen=j,
                                title=f"{method_label(method)} of {a}, coloured by neighbours shared with {b} (k = {am.k})")
        st.plotly_chart(fig, key=MAP_KEY, on_select=lambda: _picked(am.rows), selection_mode="points")
        st.caption(f"Mean overlap {am.overlap.mean():.0%} (the mutual k-NN index); red images sit among different "
                   "neighbours in the two spaces. Click a point to open it on the right (only this view reruns)."
                   + (f" The map shows {widgets.sample_note(len(am.rows), am.n_total)}, neighbours searched among "
                      "them, as the mutual k-NN index does." if am.sampled else ""))
    with c_nb:
        sh = cache.shared(ctx.key, a, b, am.k, j, am, XA, XB)
        lab = ctx.labels[row]
        st.markdown(f"**{ctx.img_names[row]}**{f' ({lab})' if lab else ''}: {len(sh.shared)} of {am.k} neighbours "
                    f"shared by {a} and {b}")
        st.image(ctx.items.thumb(row, OPENED_SIDE), width=OPENED_SIDE)
        for who, pos, sims in ((a, sh.a, sh.sim_a), (b, sh.b, sh.sim_b)):
            thumbs = [captioned_thumb(ctx.items.thumb(int(am.rows[p]), NB_SIDE),
                                      [labels[p] or names_m[p].rsplit("/", 1)[-1], f"cos {c:.2f}"],
                                      border=SAME if p in sh.shared else OTHER, side=NB_SIDE, text_size=11)
                      for p, c in zip(pos, sims)]
            st.markdown(f"nearest in **{who}** (green: also among the other's)")
            st.image(thumb_grid(thumbs, per_row=5), width="content")
        if ctx.records is not None:  # why are they neighbours: for the backbones among the two sources
            nbrs = {who: [ctx.records[int(am.rows[p])] for p in pos] for who, pos in ((a, sh.a), (b, sh.b))
                    if who in ctx.backbone_names}
            why_picker(ctx.records[row], nbrs, origin="Compare's agreement map", key="cmp_why")
        if ctx.backbone_names and ctx.records is not None:
            if st.button("Open it side by side below", key="cmp_ag_open", on_click=_open_side_by_side, args=(row,),
                         help="Saliency, the click mask and each backbone's neighbours of this image (reruns the page)."):
                st.rerun()  # the whole page: the side-by-side columns show the image
