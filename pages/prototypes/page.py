"""Prototypes: class means of frozen features as a classifier. Distances between prototypes and from
every image to every prototype with per-class margins; every registered classifier (NMC, k-NN,
linear probe, two naive Bayes, LDA, RanPAC, FeCAM) with a confusion matrix and the misclassified
images; the few-shot "two regimes" curve; exemplar-free class-incremental learning; TEEN
calibration of few-shot prototypes; CLIP text prototypes (zero-shot); out-of-distribution scores
with an unknown class; and classifying an uploaded image.

Each tab computes only while it is open (one module per tab, each drawing from a
:class:`~pages.prototypes.context.ProtoContext`), and every result is cached by (features, parameters).
The maths lives in core.classify.
"""
from __future__ import annotations

from typing import cast

import numpy as np
import streamlit as st

from core.geometry.vectors import METRICS, Metric
from pages.prototypes import (
    tab_classifiers,
    tab_few_shot,
    tab_incremental,
    tab_ood,
    tab_prototypes,
    tab_teen,
    tab_upload,
    tab_zero_shot,
)
from pages.prototypes.context import ProtoContext
from pages.shared.resources import features, show_failures
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.sidebar import sidebar

TABS = {"Prototypes": tab_prototypes, "Classifiers": tab_classifiers, "Few-shot": tab_few_shot,
        "Class-incremental": tab_incremental, "TEEN": tab_teen, "Zero-shot": tab_zero_shot,
        "Out-of-distribution": tab_ood, "Classify an upload": tab_upload}

sel = sidebar(CLASS_DEFAULT)
st.title("Prototypes")
st.caption("A prototype is the mean embedding of a class. The nearest-mean classifier (NMC) sends an image to the "
           "nearest prototype: no training, new classes are added by adding a mean (SimpleCIL).")

fs_all = features(sel)
show_failures(fs_all)
labelled = np.array([bool(lab) for lab in fs_all.labels], bool)  # [N]; unlabelled ones are classified, not learnt from
if not labelled.any():
    st.info("Prototypes need class labels: use a folder with one subfolder per class, or add photos as a new class "
            "in the sidebar.")
    st.stop()
fs = fs_all if labelled.all() else fs_all.subset(np.flatnonzero(labelled))
queries = None if labelled.all() else fs_all.subset(np.flatnonzero(~labelled))
y = np.asarray(fs.labels)  # [N]
classes, counts = np.unique(y, return_counts=True)
if len(classes) < 2:
    st.info(f"Prototypes need at least 2 classes; this dataset has only {classes[0]!s}.")
    st.stop()

c_metric, c_test, c_seed = st.columns([2, 2, 1])
metric = c_metric.radio("Distance to prototypes", METRICS, horizontal=True, key="proto_metric", persist_state="session",
                        format_func=lambda m: {"cosine": "cosine (SimpleCIL)", "euclidean": "Euclidean (classic NMC)"}[m])
test_size = c_test.slider("Held-out fraction per class", 0.1, 0.5, 0.3, 0.05, key="proto_test", persist_state="session",
                          help="Stratified split for accuracies; sets under 20 images or with a class under 3 "
                               "images use leave-one-out instead.")
seed = int(c_seed.number_input("Seed", 0, 2**31 - 1, 0, key="proto_seed", persist_state="session"))
if queries is not None:
    st.caption(f"{len(queries.records):,} unlabelled images are left out of the prototypes and classifiers (your photos, "
               "or a folder's `_unlabelled/`): the *Classify an upload* tab classifies them, and the Discover page can "
               "name their clusters as new classes.")
ctx = ProtoContext(sel=sel, fs=fs, X=fs["embedding"], y=y, classes=classes, counts=counts, metric=cast(Metric, metric),
                   test_size=test_size, seed=seed, queries=queries)

for module, tab in zip(TABS.values(), st.tabs(list(TABS), key="proto_tab", on_change="rerun")):
    if tab.open:  # only the open tab computes
        with tab:
            module.draw(ctx)
