"""Compare: two to four embedding sources on the same images, one click. A source is a backbone run on the
sidebar's images or an imported set of embeddings (core.compare.sources); the sources are matched on the
images they all hold (by file content, else by path) and every number compares those only. A metrics
table (core.compare.metrics, whose accuracies are core.classify.evaluation.evaluate / few_shot_curve), CKA
between the sources and, for backbones, block by block (core.compare.cka, core.compare.layers), the
similarity indices with intervals and baselines (core.compare.indices), the agreement map (one source's map
coloured by each image's neighbour overlap with another; a fragment, so a click reruns it alone), then one
column per backbone with shared controls: the embedding map, the saliency map each backbone supports, the
click-to-segment mask of the same point, the nearest neighbours; and where the sources' NMC predictions
disagree. One module per section, each drawing from a :class:`~pages.compare.context.CmpContext`."""
from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st

from core.compare.sources import MIN_SHARED, EmbeddingSource, feature_source, source_kind
from core.errors import BackboneLensError
from core.io.imports import open_imported
from core.models.extract import FeatureSet
from pages.compare import (
    cache,
    section_agreement,
    section_agreement_map,
    section_cka,
    section_indices,
    section_metrics,
    section_side_by_side,
)
from pages.compare.choice import choose_sources
from pages.compare.context import CmpContext
from pages.shared.resources import features, load_backbone_or_stop, show_failures
from pages.shared.selection import CLASS_DEFAULT, Selection
from pages.shared.server import one_line
from pages.shared.sidebar import sidebar

MIN_IMAGES = 3  # backbones alone on the sidebar's images


def _source(base: Selection, choice: str) -> EmbeddingSource:
    """One chosen source: an imported set (memory-mapped), or a backbone run on the sidebar's images at its own
    input size and default block (features with a progress bar and an ETA; its speed)."""
    kind, name = source_kind(choice)
    if kind == "imported":
        try:
            s = open_imported(name)
        except BackboneLensError as e:  # deleted or damaged since it was listed
            st.error(one_line(e))
            st.stop()
        return cache.imported(s.fid, s)
    b = load_backbone_or_stop(name)
    fs = features(base, ("embedding",), backbone=name, layer=None)
    return feature_source(b, _labelled_part(fs), cache.speed(name, fs))


def _labelled_part(fs: FeatureSet) -> FeatureSet:
    """The labelled images when the dataset mixes them with unlabelled ones (your photos, a folder's
    ``_unlabelled/``): the accuracies need a class for every image compared, as on the Prototypes page."""
    labelled = np.array([bool(lab) for lab in fs.labels], bool)  # [N]
    return fs if labelled.all() or not labelled.any() else fs.subset(np.flatnonzero(labelled))


sel = sidebar(CLASS_DEFAULT)
st.title("Compare backbones")
st.caption("The same images through two to four backbones, or embeddings made elsewhere (imported sets): metrics, "
           "CKA, the similarity indices, where their neighbourhoods differ, and the same views side by side. Each "
           "backbone runs at its own input size and default embedding block (the sidebar's backbone, size and layer "
           "belong to the other pages; its dataset applies here).")

names = choose_sources(sel)
if len(names) < 2:
    st.info("Pick at least two sources.")
    st.stop()
if not sel.imported and len(sel.dataset) < MIN_IMAGES and any(source_kind(n)[0] == "backbone" for n in names):
    st.info(f"The dataset needs at least {MIN_IMAGES} images: pick another dataset in the sidebar or upload more.")
    st.stop()

base = dataclasses.replace(sel, size=None, layer=None)  # every backbone at its own defaults
sources = tuple(_source(base, n) for n in names)
for s in sources:
    if s.features is not None:
        show_failures(s.features)
        break
key = cache.comparison_key(list(sources))
# backbones run on the same images share all of them (the side-by-side views work on a handful of uploads);
# an imported set must share at least MIN_SHARED with the others, or nothing it is compared on means anything
min_shared = MIN_SHARED if any(s.imported is not None for s in sources) else MIN_IMAGES
try:
    aligned = cache.aligned(key, min_shared, sources)
except ValueError as e:  # fewer than 10 shared images, labels that disagree
    st.error(f"Cannot compare these sources: {one_line(e)}")
    st.stop()
twice = [f"{n}: {d:,}" for n, d in zip(aligned.source_names, aligned.duplicates) if d]
unlabelled = sum(not lab for lab in sel.dataset.labels) if any(s.backbone is not None for s in sources) else 0
if unlabelled and unlabelled < len(sel.dataset):
    st.caption(f"{unlabelled:,} unlabelled image{'s are' if unlabelled > 1 else ' is'} left out (your photos, or a "
               "folder's `_unlabelled/`): the sources are compared on the labelled images; Prototypes' *Classify an "
               "upload* classifies yours.")
st.markdown(aligned.summary() + (f" Images listed more than once count once ({', '.join(twice)} rows left out)."
                                 if twice else ""))
ctx = CmpContext(sel=base, aligned=aligned, key=key)
ss = st.session_state
if ss.get("cmp_image", 0) >= ctx.n:
    ss["cmp_image"] = 0  # the image the side-by-side columns open (a click on their maps chooses it)
ss.setdefault("cmp_image", 0)

cmp = section_metrics.draw(ctx)
M, kind = section_cka.draw(ctx)
k_idx = section_indices.draw(ctx, cmp, M, kind)
section_agreement_map.draw(ctx, k_idx)
section_side_by_side.draw(ctx)
section_agreement.draw(ctx, cmp)
