"""Compare: two to four backbones on the same images, one click. A metrics table (core.compare.metrics, whose
accuracies are core.classify.evaluation.evaluate / few_shot_curve), CKA between the backbones and block by block
(core.compare.cka, core.compare.layers), the similarity indices with intervals and baselines
(core.compare.indices) and the agreement map (one backbone's map coloured by each image's neighbour overlap with
another), then one column per backbone with shared controls: the embedding map, the saliency map each backbone
supports, the click-to-segment mask of the same point, the nearest neighbours; and where the backbones' NMC
predictions disagree. One module per section, each drawing from a :class:`~pages.compare.context.CmpContext`."""
from __future__ import annotations

import dataclasses

import streamlit as st

from pages.compare import cache, section_agreement, section_cka, section_indices, section_metrics, section_side_by_side
from pages.compare.context import CmpContext
from pages.shared.resources import features, load_backbone_or_stop, offline_backbone_names, show_failures
from pages.shared.selection import CLASS_DEFAULT, PATCH_DEFAULT
from pages.shared.sidebar import sidebar

DEFAULT_SET = [CLASS_DEFAULT, PATCH_DEFAULT]
MAX_BACKBONES = 4

sel = sidebar(CLASS_DEFAULT)
st.title("Compare backbones")
st.caption("The same images through two to four backbones: metrics, CKA, and the same views side by side. Each "
           "backbone runs at its own input size and default embedding block (the sidebar's backbone, size and layer "
           "belong to the other pages; the dataset applies here).")

ss = st.session_state
options = offline_backbone_names() + [n for n in ss.get("custom_backbones", []) if n not in offline_backbone_names()]
ss.setdefault("cmp_backbones", [n for n in DEFAULT_SET if n in options])
names: list[str] = st.multiselect(
    f"Backbones to compare (2 to {MAX_BACKBONES})", options, key="cmp_backbones", max_selections=MAX_BACKBONES,
    help="Any mix of ViTs, CNNs and CLIP. Add a timm / open_clip name under 'Other backbone' in the sidebar.")
if len(names) < 2:
    st.info("Pick at least two backbones.")
    st.stop()
if len(sel.dataset) < 3:
    st.info("The dataset needs at least 3 images: pick another dataset in the sidebar or upload more.")
    st.stop()

base = dataclasses.replace(sel, size=None, layer=None)  # every backbone at its own defaults
backbones = tuple(load_backbone_or_stop(n) for n in names)
fsets = tuple(features(base, ("embedding",), backbone=n, layer=None) for n in names)
show_failures(fsets[0])
ctx = CmpContext(sel=base, names=tuple(names), backbones=backbones, fsets=fsets,
                 speeds=tuple(cache.speed(n, fs) for n, fs in zip(names, fsets)))
if ss.get("cmp_image", 0) >= len(ctx.records):
    ss["cmp_image"] = 0  # the image every section opens (a click on any map chooses it)
ss.setdefault("cmp_image", 0)

cmp = section_metrics.draw(ctx)
M, kind = section_cka.draw(ctx)
section_indices.draw(ctx, cmp, M, kind)
section_side_by_side.draw(ctx)
section_agreement.draw(ctx, cmp)
