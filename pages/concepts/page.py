"""Concepts: which visual concepts a backbone uses across a dataset, and which carry each class. k concepts are
found without training in the patch features (core.concepts: NMF of a CNN's post-ReLU map as CRAFT does, NMF of
shifted ViT tokens), each shown as a strip of its most typical patches with a name field; the per-class table
splits each class's nearest-class-mean score over the concepts; the fidelity line says how much the concepts
reconstruct and what deleting a class's top concept does. The atlas is computed on a worker thread with a
progress bar (pages.shared.concept_jobs) and cached on disk. One module per section, each drawing from a
:class:`~pages.concepts.context.ConceptsContext`."""
from __future__ import annotations

import streamlit as st

from core.concepts.atlas import DEFAULT_K
from core.concepts.methods import method_names
from pages.concepts import section_atlas, section_table
from pages.concepts.context import ConceptsContext
from pages.shared import concept_jobs
from pages.shared.concept_jobs import AtlasSettings
from pages.shared.resources import load_backbone_or_stop
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.sidebar import sidebar

METHODS = {"auto": "auto (NMF for a CNN, shifted NMF for a ViT)", "nmf": "NMF (non-negative maps: CNNs)",
           "nmf_shifted": "NMF of shifted tokens", "spherical_kmeans": "spherical k-means"}

sel = sidebar(CLASS_DEFAULT)
st.title("Concepts")
st.caption("Visual concepts found without training in the backbone's patch features across the dataset: each one "
           "shown by its most typical patches, named by you, and scored by how much it adds to each class's "
           "nearest-class-mean score. Method and measurements: README, 'Concept atlas'; differences from CRAFT: "
           "docs/METHODS.md.")
if sel.imported:
    st.info(f"**{sel.imported}** is an imported set of embeddings: concepts need the pictures' patch features. Pick a "
            "dataset of images in the sidebar.")
    st.stop()
records = tuple(sel.dataset.records)
if not records:
    st.info("The dataset is empty: pick another dataset in the sidebar or upload images.")
    st.stop()
b = load_backbone_or_stop(sel.backbone)

with st.form("cc_settings", border=False):
    c_k, c_m, c_s, c_go = st.columns([3, 3, 1, 2], vertical_alignment="bottom")
    k = c_k.slider("Concepts (k)", 2, 20, DEFAULT_K, key="cc_k",
                   help="12 is the default: 16 reconstructs more but splits the classes' concepts (README).")
    method = c_m.selectbox("Method", method_names(), key="cc_method", format_func=lambda m: METHODS.get(m, m),
                           help="NMF needs non-negative features (a CNN's post-ReLU map); ViT tokens are signed, so "
                                "they are shifted by each dimension's minimum first.")
    seed = c_s.number_input("Seed", 0, 2**31 - 1, 0, key="cc_seed", help="Seeds the sample of patches and the fit.")
    c_go.form_submit_button("Find the concepts", type="primary", icon=":material/auto_awesome:")

settings = AtlasSettings(b.spec.weights_id, sel.dataset_key, int(k), str(method), int(seed), sel.layer, sel.size)
ss = st.session_state
previous = ss.get("cc_settings_asked")
if previous is not None and previous != settings:
    fut = concept_jobs.job(previous)
    if fut is not None and not fut.done():
        concept_jobs.cancel(previous)  # this session asked for other settings: stop the old job
ss["cc_settings_asked"] = settings

atlas = concept_jobs.obtain(b, records, settings, what=f"{b.spec.name}, k = {k}, {method}", key="cc", auto=True)
if atlas is None:
    st.stop()

ctx = ConceptsContext(sel=sel, atlas=atlas, records=records, settings=settings)
section_atlas.draw(ctx)
section_table.draw(ctx)
