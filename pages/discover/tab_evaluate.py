"""Evaluate: on a labelled set, treat some classes as unknown and score how discovery finds them
(core.discover.evaluate_discovery): clustering accuracy All / Old / New beside plain k-means on all images,
and the number of new clusters found against the number hidden."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.discover import DiscoveryScores
from core.discover.api import K
from core.discover.protocol import LABELLED_SHARE
from pages.discover import cache, widgets
from pages.discover.context import DiscContext
from pages.discover.figures import CRITERION, k_curve_figure

K_MODES = {"hidden": "the number hidden", "auto": "auto", "fixed": "fixed"}


def draw(ctx: DiscContext) -> None:
    st.caption("When the truth is known: the classes you pick are hidden from the method (all their images "
               "unlabelled, and part of every other class's too), discovery runs, and its clusters are scored "
               "against the hidden labels, as the generalized category discovery papers do.")
    lab = ctx.labels != ""
    X, y = ctx.X[lab], ctx.labels[lab]
    if not lab.all():
        st.caption(f"{int((~lab).sum()):,} unlabelled images are left out: only labelled images can be scored.")
    classes = ctx.classes
    if len(classes) < 2:
        st.info("The evaluation needs a labelled folder with at least two classes (one to hide, one to keep): pick "
                "one in the sidebar, e.g. the sample stamps.")
        return
    hidden = st.multiselect("Treat these classes as unknown", classes, key="disc_hidden",
                            placeholder="Pick the classes to hide",
                            help="Their images are all unlabelled; the method has to find them as new clusters.")
    c_share, c_mode, c_k, c_seed = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    share = float(c_share.slider("Labelled share of the other classes", 0.1, 1.0, LABELLED_SHARE, 0.05,
                                 key="disc_share",
                                 help="Of each known class, this share of its images keeps its label (drawn per "
                                      "class); the rest is unlabelled and scored too (the papers: 0.5)."))
    mode = c_mode.segmented_control("New clusters", list(K_MODES), format_func=lambda m: K_MODES[m], default="hidden",
                                    required=True, key="disc_eval_k_mode",
                                    help="the number hidden: the protocol's known k; auto: chosen by the k curve.")
    k_fixed = c_k.number_input("k", min_value=0, value=max(1, len(hidden)), step=1, key="disc_eval_k",
                               disabled=mode != "fixed")
    seed = int(c_seed.number_input("Seed", 0, 2**31 - 1, 0, key="disc_eval_seed"))
    if not hidden:
        st.info("Pick at least one class to treat as unknown.")
        return
    k: K | None = None if mode == "hidden" else "auto" if mode == "auto" else int(k_fixed)
    h = tuple(sorted(hidden))
    key = cache.evaluate_key(ctx.fid, h, k, share, seed)
    r = widgets.run_or_result(key, lambda: cache.start_evaluate(ctx.fid, X, y, h, k, share, seed), "Evaluate",
                              widget_key="disc_eval_run",
                              help="Hide the classes, run discovery, score it and plain k-means on the same images.")
    if r is not None:
        _show(ctx, r)


def _fmt(v: float) -> float | None:
    return None if np.isnan(v) else round(float(v), 3)


def _show(ctx: DiscContext, r: DiscoveryScores) -> None:
    c1, c2, c3 = st.columns(3)
    c1.metric("New clusters found", r.k_new, delta=r.k_new - r.k_new_true, delta_color="off",
              help="Delta: against the number of classes hidden.")
    c2.metric("Classes hidden", r.k_new_true)
    c3.metric("Scored images", f"{r.ss_kmeans.n_old + r.ss_kmeans.n_new:,}",
              help="The unlabelled images: every image of a hidden class, and the unlabelled share of the others.")
    table = pd.DataFrame([
        {"method": "SS-k-means (the known classes' labels used)", "All": _fmt(r.ss_kmeans.all),
         "Old": _fmt(r.ss_kmeans.old), "New": _fmt(r.ss_kmeans.new)},
        {"method": "k-means on all images (kmeans_all, labels unused)", "All": _fmt(r.kmeans_all.all),
         "Old": _fmt(r.kmeans_all.old), "New": _fmt(r.kmeans_all.new)},
    ])
    acc = {c: st.column_config.NumberColumn(c, format="%.3f") for c in ("All", "Old", "New")}
    st.dataframe(table, hide_index=True, column_config=acc)
    s = r.split
    st.caption(f"Hidden: {', '.join(s.unknown_classes)}; known: {', '.join(s.known_classes)} "
               f"({100 * s.share:g}% of each one's images labelled: {int(s.labelled.sum()):,} images). Clustering "
               f"accuracy on the {r.ss_kmeans.n_old + r.ss_kmeans.n_new:,} unlabelled images "
               f"({r.ss_kmeans.n_old:,} of known classes: Old; {r.ss_kmeans.n_new:,} of hidden ones: New) after ONE "
               f"Hungarian matching of clusters to classes over all of them (the GCD papers' protocol). k-means on all "
               f"images uses the same number of clusters ({len(s.known_classes) + r.k_new}) and the same seeding, "
               f"without the labels.")
    curve = r.discovery.k_curve
    if curve is not None:
        st.plotly_chart(k_curve_figure(curve, truth=r.k_new_true), key="disc_eval_curve", config={"displaylogo": False})
        st.caption(CRITERION.format(runs=curve.runs, n_fit=curve.n_fit) + " The dashed line: the number hidden.")
