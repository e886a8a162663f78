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

from core.errors import BackboneLensError
from core.geometry.vectors import METRICS, Metric
from core.io.imports import MODEL_ONLY_VIEWS, open_imported
from core.models.extract import FeatureSet
from pages.prototypes import (
    cache,
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
from pages.shared.items import Items, imported_items, record_items
from pages.shared.resources import features, show_failures
from pages.shared.selection import CLASS_DEFAULT, Selection
from pages.shared.server import one_line
from pages.shared.sidebar import sidebar

TABS = {"Prototypes": tab_prototypes, "Classifiers": tab_classifiers, "Few-shot": tab_few_shot,
        "Class-incremental": tab_incremental, "TEEN": tab_teen, "Zero-shot": tab_zero_shot,
        "Out-of-distribution": tab_ood, "Classify an upload": tab_upload}
MODEL_TABS = {"Zero-shot": "zero_shot", "Classify an upload": "upload"}  # need the model, not only its vectors


def _vectors(sel: Selection) -> tuple[str, np.ndarray, np.ndarray, Items, str, FeatureSet | None, FeatureSet | None]:
    """``(identity, X [N, D], y [N], items, made by, features, queries)`` of the sidebar's dataset: an imported
    set's memory map, else the sidebar's backbone run on its labelled images (a progress bar while
    extracting), with its unlabelled ones (your photos, a ``_unlabelled/`` folder) as the queries the
    Classify tab classifies."""
    if sel.imported:
        try:
            s = open_imported(sel.imported)
        except BackboneLensError as e:  # deleted or damaged since the sidebar listed it
            st.error(one_line(e))
            st.stop()
        if not s.labelled:
            st.info(f"**{s.name}** has no class label for {'any' if not s.classes or s.classes == ('',) else 'every'} "
                    "point, and prototypes are class means: import it with a label column (the Embeddings page draws "
                    "it as it is).")
            st.stop()
        made = "another tool" if s.backbone == "imported" else s.backbone  # what `import --backbone` recorded
        st.caption(f"Imported set **{s.name}**: {s.n:,} vectors of dimension {s.dim} made by {made} "
                   f"({s.dtype}, read from its memory map); no model, so nothing is extracted here.")
        return s.fid, s.vectors, cache.imported_labels(s.fid, s), imported_items(s), s.name, None, None
    fs_all = features(sel)
    show_failures(fs_all)
    labelled = np.array([bool(lab) for lab in fs_all.labels], bool)  # [N]; the unlabelled ones are classified, not learnt from
    if labelled.all() or not labelled.any():
        fs, queries = fs_all, None
    else:
        fs, queries = fs_all.subset(np.flatnonzero(labelled)), fs_all.subset(np.flatnonzero(~labelled))
        n_q = len(queries.records)
        st.caption(f"{n_q:,} unlabelled image{'s are' if n_q > 1 else ' is'} left out of the prototypes and classifiers (your "
                   "photos, or a folder's `_unlabelled/`): the *Classify an upload* tab classifies them, and the "
                   "Discover page can name their clusters as new classes.")
    return fs.key, fs["embedding"], np.asarray(fs.labels), record_items(fs.key, fs.records), sel.backbone, fs, queries


sel = sidebar(CLASS_DEFAULT)
st.title("Prototypes")
st.caption("A prototype is the mean embedding of a class. The nearest-mean classifier (NMC) sends an image to the "
           "nearest prototype: no training, new classes are added by adding a mean (SimpleCIL).")

fid, X, y, items, made_by, fs, queries = _vectors(sel)  # X [N, D], y [N]
if len(y) == 0 or not all(y):
    st.info("Prototypes need class labels: use a folder with one subfolder per class, or add photos as a new class "
            "in the sidebar.")
    st.stop()
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
ctx = ProtoContext(sel=sel, fid=fid, X=X, y=y, items=items, made_by=made_by, classes=classes, counts=counts,
                   metric=cast(Metric, metric), test_size=test_size, seed=seed, fs=fs, queries=queries)

for (name, module), tab in zip(TABS.items(), st.tabs(list(TABS), key="proto_tab", on_change="rerun")):
    if tab.open:  # only the open tab computes
        with tab:
            if ctx.imported and name in MODEL_TABS:
                st.info(MODEL_ONLY_VIEWS[MODEL_TABS[name]], icon=":material/info:")
            else:
                module.draw(ctx)
