"""Discover: the classes the labels do not name (generalized category discovery on frozen embeddings,
core.discover). "Discover new classes": semi-supervised k-means puts every unlabelled image into a known class
or a new cluster; each new cluster can be named and accepted as a class, which every page then uses
(pages.shared.labels). "Evaluate: hide classes": on a labelled set, All / Old / New clustering accuracy with
the chosen classes hidden, beside plain k-means. Runs go to a worker thread (pages.discover.cache), keyed by
the features and the settings. One module per tab, each drawing from a
:class:`~pages.discover.context.DiscContext`."""
from __future__ import annotations

import numpy as np
import streamlit as st

from pages.discover import tab_discover, tab_evaluate
from pages.discover.context import DiscContext
from pages.shared.resources import features, show_failures
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.sidebar import sidebar

TABS = {"Discover new classes": tab_discover, "Evaluate: hide classes": tab_evaluate}

sel = sidebar(CLASS_DEFAULT)
st.title("Discover")
st.caption("Find the classes the labels do not name: the labelled classes keep their prototypes and every unlabelled "
           "image goes to a known class or to a new cluster (semi-supervised k-means on the L2-normalised embeddings; "
           "Vaze et al., Generalized Category Discovery, CVPR 2022).")

base = sel.base  # the dataset as read: accepted names are the result of this page, not its input
if not base.records:
    st.info("This dataset has no usable image: pick another dataset in the sidebar.")
    st.stop()
fs = features(sel, dataset=base)
show_failures(fs)
ctx = DiscContext(sel=sel, fs=fs, X=fs["embedding"], labels=np.asarray(fs.labels, dtype=str))

default = "Discover new classes" if ctx.n_unlabelled else "Evaluate: hide classes"
for module, tab in zip(TABS.values(), st.tabs(list(TABS), default=default, key="disc_tab", on_change="rerun")):
    if tab.open:  # only the open tab computes
        with tab:
            module.draw(ctx)
