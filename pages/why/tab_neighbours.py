"""Why neighbours: the open pair's cosine split into patch-pair terms (core.relate.explain_pair): the figure
(both pictures, each patch tinted by its share, the strongest patch-to-patch links), whether the split is
exact or attributed (with the method's paper), the deletion check, the links as a table, PNG and JSON."""
from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from core.errors import UnsupportedOperationError
from core.relate import explain_pair
from core.relate.why import CHECK_PAIRS, WhyResult
from pages.shared.server import one_line
from pages.why.context import WhyContext
from pages.why.pair import choose_pair

MAX_LINKS = 30   # the slider's end: the deletion check removes the top CHECK_PAIRS pairs
FIGURE_SIDE = 400  # px, each picture's longer side in the figure
CNN_NOTE = ("The decomposition itself is exact; but each cell of a CNN's final map sees most of the picture, so "
            "blurring a cell's pixels changes many cells: read a CNN's links as feature-map cells, not pixels.")


def _badge(r: WhyResult) -> None:
    """Exact or attributed, with the method's name and paper."""
    c1, c2 = st.columns([1, 6], vertical_alignment="center")
    with c1:
        if r.exact:
            st.badge("Exact", icon=":material/check:", color="green",
                     help="The embedding is the mean of the patch features: the patch-pair terms sum to the cosine.")
        else:
            st.badge("Attributed", icon=":material/science:", color="orange",
                     help="The embedding is not a mean of patch features: an attribution method shares the cosine out.")
    c2.markdown(f"**{r.label}** · {r.reference}")


def _check(r: WhyResult) -> None:
    """The deletion check's sentence: a success when the top pairs lower the cosine more than random patches."""
    if r.check is None:
        return
    if r.check.passed:
        st.success(f"Deletion check: {r.check.sentence()}", icon=":material/task_alt:")
    else:
        st.warning(f"Deletion check: {r.check.sentence()}" + (f" {CNN_NOTE}" if r.exact else ""), icon=":material/warning:")


def _links_table(r: WhyResult) -> pd.DataFrame:
    (ha, wa), (hb, wb) = r.grids
    return pd.DataFrame([{"rank": k + 1, f"patch in A (row, col of {ha}x{wa})": f"{lk.a[0]}, {lk.a[1]}",
                          f"patch in B (row, col of {hb}x{wb})": f"{lk.b[0]}, {lk.b[1]}",
                          "contribution": lk.contribution} for k, lk in enumerate(r.links)])


def draw(ctx: WhyContext) -> None:
    records = ctx.records
    if len(records) < 2:
        st.info("A pair needs at least two images: pick another dataset in the sidebar or upload more.")
        return
    if ctx.handoff is not None:
        st.caption(f"Opened from {ctx.handoff.origin}: image A and its neighbour B.")
    a, b = choose_pair(ctx)
    if a == b:
        st.info("Image A and image B are the same picture: pick two different images.")
        return
    c_k, _ = st.columns([2, 3])
    top_k = c_k.slider("Links drawn (top k)", 1, MAX_LINKS, 10, key="why_k", persist_state="session",
                        help="How many of the largest patch-pair terms are drawn and listed. The deletion check always "
                             f"removes the top {CHECK_PAIRS}.")
    ra, rb = records[a], records[b]
    try:
        with st.spinner(f"Explaining {ra.name} and {rb.name} with {ctx.sel.backbone}: one forward pass of the pair, "
                        "the decomposition, then the deletion check (18 blurred images)…"):
            ex = explain_pair(ctx.b, ra, rb, size=ctx.sel.size, layer=ctx.sel.layer, top_k=top_k, max_side=FIGURE_SIDE)
    except UnsupportedOperationError as e:
        st.info(f"No patch decomposition for this backbone: {one_line(e)}")
        return
    r = ex.result
    _badge(r)
    st.image(ex.figure, width="content")
    st.caption(r.caption())
    _check(r)

    c_tab, c_dl = st.columns([3, 2], gap="medium")
    c_tab.dataframe(_links_table(r), hide_index=True, key="why_links",
                    column_config={"contribution": st.column_config.NumberColumn(format="%.5f")})
    c_tab.caption(f"The {len(r.links)} largest patch-pair terms (the gold lines), row and column from the top left "
                  "of each picture's patch grid; contribution: the pair's term of the cosine.")
    png = io.BytesIO()
    ex.figure.save(png, format="PNG")
    stem = f"why_{r.backbone}_{ra.name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}_{rb.name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}"
    stem = stem.replace("/", "_")
    c_dl.download_button("Figure (PNG)", png.getvalue(), f"{stem}.png", "image/png", on_click="ignore",
                         icon=":material/download:", key="why_png")
    c_dl.download_button("Numbers (JSON)", r.to_json(), f"{stem}.json", "application/json", on_click="ignore",
                         icon=":material/download:", key="why_json",
                         help="The CLI's `backbone-lens why-neighbours --json`: cosine, exact, method, each image's grid "
                              "of patch shares, the links and the deletion check.")
    c_dl.caption(f"{r.backbone} at {r.size} px, block {r.block}; cosine {r.cosine:.4f}.")
