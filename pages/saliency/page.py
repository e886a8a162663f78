"""Saliency: what in one picture drives a backbone. Every map comes from the one saliency table
(core.explain.methods): attention per block and head and its rollout (ViTs), the Grad-CAM family
(pytorch-grad-cam), prototype maps ("why this class"), a random control; deletion / insertion scores
(core.explain.faithfulness) compare maps by a number, and the report card (core.explain.report) scores
every method on a sample of the dataset. One module per tab, each drawing from a
:class:`~pages.saliency.context.SalContext`."""
from __future__ import annotations

import streamlit as st

from pages.saliency import tab_attention, tab_faithfulness, tab_gradcam, tab_prototype_maps, tab_report
from pages.saliency.context import SalContext
from pages.saliency.targets import far_note
from pages.shared.picking import pick_image
from pages.shared.resources import get_backbone, stop_if_imported
from pages.shared.selection import CLASS_DEFAULT, PATCH_DEFAULT
from pages.shared.sidebar import sidebar
from pages.shared.uploads import upload_shas

CMAPS = ["inferno", "viridis", "magma", "turbo", "jet"]
TABS = {"Attention": tab_attention, "Grad-CAM": tab_gradcam, "Prototype maps": tab_prototype_maps,
        "Faithfulness": tab_faithfulness, "Report card": tab_report}

sel = sidebar(CLASS_DEFAULT if upload_shas() else PATCH_DEFAULT)  # your photos: a backbone with a head first
stop_if_imported(sel, "saliency", "Saliency")
b = get_backbone(sel.backbone)
spec = b.spec
size = sel.size or spec.input_size
st.title("Saliency")
st.caption("Where in the picture the backbone looks. Every map is drawn over the picture, stretched from the "
           "patch grid (the model sees the whole picture resized, no crop).")
pic = pick_image(sel, "sal")
c1, c2, c3 = st.columns([2, 2, 3])
alpha = c1.slider("Map opacity", 0.0, 1.0, 0.55, 0.05, key="sal_alpha")
cmap = c2.selectbox("Colour map", CMAPS, key="sal_cmap")
h, w = spec.grid(size)
c3.caption(f"**{spec.name}** at {size} px: a {h}x{w} grid of {spec.patch_size}-px "
           f"{'patches' if spec.family != 'cnn' else 'cells (output stride)'}"
           + (f", {spec.num_prefix_tokens} prefix token(s) skipped" if spec.num_prefix_tokens else ""))
ctx = SalContext(sel=sel, b=b, pic=pic, size=size, alpha=alpha, cmap=cmap)
far_note(ctx)

tabs = st.tabs(list(TABS), key="sal_tab", on_change="rerun", default="Attention" if spec.has_attention else "Grad-CAM")
for module, tab in zip(TABS.values(), tabs):
    if tab.open:  # only the open tab computes
        with tab:
            module.draw(ctx)
