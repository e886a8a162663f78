"""Discover new classes: every unlabelled image goes to a known class or to a new cluster (SS-k-means,
core.discover.discover); the k curve, the known classes' growth, and per new cluster its central images,
size, nearest known class and margin, with a name field and "Accept" (pages.shared.labels)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import streamlit as st

from core import render
from core.discover import Discovery, NewCluster
from core.discover.api import K
from pages.discover import cache, widgets
from pages.discover.context import DiscContext
from pages.discover.figures import CRITERION, growth_figure, k_curve_figure
from pages.shared import labels
from pages.shared.items import record_thumb
from pages.shared.server import one_line

INPUTS = ("**Known classes + unlabelled images:** in a folder with one subfolder per class, put the unlabelled "
          "images in a subfolder named `_unlabelled` (`root/<class>/…` labelled, `root/_unlabelled/…` not); or "
          "upload images in the sidebar, giving a class name to the batches you know and none to the others.")
MARGIN = ("**Margin**: the median, over the cluster's images, of (cosine distance to the nearest known prototype) − "
          "(cosine distance to the cluster's own centre). Clearly above 0: its images sit nearer their own centre than "
          "any known class, a candidate new class. Near 0 or below: the cluster may be part of its nearest known "
          "class (a pose, a background, a sub-type of it).")



def draw(ctx: DiscContext) -> None:
    st.caption(INPUTS)
    if ctx.n_unlabelled == 0:
        st.info("Every image of this dataset has a label: nothing to discover. Add unlabelled images (a `_unlabelled` "
                "subfolder, or uploads without a class name), or open **Evaluate: hide classes** to see how well "
                "discovery finds classes hidden from it.")
        return
    c_mode, c_k, c_seed = st.columns([2, 1, 1], vertical_alignment="bottom")
    mode = c_mode.segmented_control(
        "Number of new clusters", ["auto", "fixed"], default="auto", required=True, key="disc_k_mode",
        help="auto: the k whose k-means best matches the labelled classes (the curve below); fixed: the number below.")
    k_fixed = c_k.number_input("k (new clusters)", min_value=0, value=3, step=1, key="disc_k", disabled=mode == "auto")
    seed = int(c_seed.number_input("Seed", 0, 2**31 - 1, 0, key="disc_seed"))
    k: K = "auto" if mode == "auto" else int(k_fixed)
    key = cache.discover_key(ctx.fid, k, seed)
    d = widgets.run_or_result(key, lambda: cache.start_discover(ctx.fid, ctx.X, ctx.labels, k, seed), "Discover",
                              widget_key="disc_run",
                              help="Semi-supervised k-means on the embeddings: the labelled images stay in their "
                                   "classes; every unlabelled image goes to a known class or a new cluster.")
    if d is not None:
        _show(ctx, d, k, key)


def _show(ctx: DiscContext, d: Discovery, k: K, key: tuple) -> None:
    known = [str(c) for c in d.known_classes]
    new = [c.name for c in d.clusters]
    note = f"{ctx.sel.backbone}, k={k}"
    labels.remember_discovery(ctx.sel.base.key, key, [ctx.fs.records[i] for i in d.unlabelled],
                              d.display_labels()[d.unlabelled].tolist(), known, new, note)
    colours = render.discovery_colours(known, new)
    n_u = len(d.unlabelled)
    sampled = f" (centres fitted on a sample of {d.fit.n_fit:,})" if d.fit.n_fit < n_u else ""
    st.markdown(f"**{len(known)} known classes**, {len(ctx.labels) - n_u:,} labelled and {n_u:,} unlabelled images "
                f"→ **{d.k_new} new cluster{'' if d.k_new == 1 else 's'}**{sampled} · {ctx.sel.backbone} embeddings")

    left, right = st.columns(2, gap="medium")
    with left:
        if d.k_curve is not None:
            st.plotly_chart(k_curve_figure(d.k_curve), key="disc_curve", config={"displaylogo": False})
            st.caption(CRITERION.format(runs=d.k_curve.runs, n_fit=d.k_curve.n_fit))
        else:
            st.caption(f"k fixed at {d.k_new}: choose **auto** to see the curve that picks it.")
    with right:
        counts = Counter(ctx.labels.tolist())
        st.plotly_chart(growth_figure(known, [counts[c] for c in known], d.known_counts, colours), key="disc_growth",
                        config={"displaylogo": False})
        st.caption("Into known classes: " + " · ".join(f"{c} +{n}" for c, n in d.known_counts.items())
                   + f" (of {n_u:,} unlabelled images; the rest went to the new clusters).")

    st.subheader(f"New clusters ({d.k_new})")
    if not d.clusters:
        st.info("No new cluster: every unlabelled image went to a known class.")
    else:
        st.caption(MARGIN + " Accepting a name makes the cluster's images a class (a new prototype): the Prototypes "
                   "page's classifiers and the Embeddings map use it at once.")
    named = _named_now(ctx, d)
    for c in d.clusters:
        _card(ctx, d, c, colours[c.name], named.get(c.id), note, key)
    got = labels.accepted(ctx.sel.base.key)
    if got:
        st.subheader("Accepted names")
        st.markdown("\n".join(f"- **{a.name}**: {a.n:,} images ({a.note})" for a in got))
        labels.forget_button(ctx.sel.base.key, widget_key="forget_names_page")


def _short(name: str, n: int = 13) -> str:
    """File stem, cut to ``n`` characters (a caption stays under its thumbnail)."""
    stem = name.split("/")[-1].rsplit(".", 1)[0]
    return stem if len(stem) <= n else stem[: n - 1] + "…"


def _n(k: int) -> str:
    return f"{k:,} image{'' if k == 1 else 's'}"


def _named_now(ctx: DiscContext, d: Discovery) -> dict[int, Counter]:
    """New cluster id -> the accepted names its images carry now (empty without accepted names)."""
    if ctx.sel.base_dataset is None:
        return {}
    now = {labels.record_id(r): r.label for r in ctx.sel.dataset.records}
    u = d.unlabelled
    out: dict[int, Counter] = {}
    for c in d.clusters:
        rows = u[d.assignment[u] == c.id]
        out[c.id] = Counter(now.get(labels.record_id(ctx.fs.records[i]), "") for i in rows)
    return out


def _card(ctx: DiscContext, d: Discovery, c: NewCluster, colour: str, named: Counter | None, note: str,
          key: tuple) -> None:
    run = abs(hash(key)) % 10**8  # a new run gets fresh name fields
    with st.container(border=True):
        pics, facts = st.columns([3, 1.25], gap="medium")
        pics.markdown(f"<span style='color:{colour};font-size:1.6em;line-height:1'>■</span> **{c.name}** · {_n(c.size)}",
                      unsafe_allow_html=True)
        if c.size:
            recs = [ctx.fs.records[i] for i in c.central]
            pics.image([record_thumb(r.sha256, r.name, cache.THUMB, r) for r in recs], width=cache.THUMB,
                       caption=[_short(r.name) for r in recs])
            pics.caption(f"{'its most central images' if len(recs) > 1 else 'its image'} (nearest its centre first)"
                         + ("" if len(recs) == c.size else f"; {len(recs)} of {c.size:,}"))
        margin = "n/a" if np.isnan(c.margin) else f":{'green' if c.margin > 0 else 'orange'}[**{c.margin:+.3f}**]"
        facts.markdown(f"nearest known class: **{c.nearest_known}**  \n(cosine distance {c.distance:.3f})  \n"
                       f"margin {margin}")
        if not c.size:
            facts.caption("Empty: no image to name.")
            return
        top = named.most_common(1)[0] if named else ("", 0)
        if top[0]:
            facts.success(f"Accepted as **{top[0]}**" + ("" if top[1] == c.size else f" ({top[1]} of {c.size} images)"))
        name_key = f"disc_name_{run}_{c.id}"
        facts.text_input("Name", key=name_key, placeholder=f"a class name for {c.name}")
        facts.button("Accept", key=f"disc_accept_{run}_{c.id}", on_click=_accept,
                     args=(ctx, d, c, name_key, note, (run, c.id)),
                     icon=":material/check:")
        err = st.session_state.get("_disc_accept_error")
        if err and err[0] == (run, c.id):
            facts.error(err[1])


def _accept(ctx: DiscContext, d: Discovery, c: NewCluster, name_key: str, note: str, where: tuple) -> None:
    """Give the typed name to the cluster's unlabelled images (core's ``named_labels``), for every page."""
    ss = st.session_state
    ss.pop("_disc_accept_error", None)
    name = (ss.get(name_key) or "").strip()
    try:
        new = d.named_labels({c.name: name})
    except ValueError as e:  # an empty name: one line under the field
        ss["_disc_accept_error"] = (where, one_line(e))
        return
    rows = np.flatnonzero(new != d.labels)
    labels.accept(ctx.sel.base.key, name, [ctx.fs.records[i] for i in rows], f"{c.name} of {note}")
