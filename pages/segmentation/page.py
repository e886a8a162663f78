"""Segmentation from frozen patch tokens: click a point to segment by similarity (in this picture and
in others), k-means parts, a PCA / CLS-attention / normalized-cut / boundary-prior foreground, and co-segmentation of
several pictures; every mask optionally made pixel-sharp (guided filter). The click view is a fragment:
a click reruns it alone, not the page. One module per tab, each drawing from a
:class:`~pages.segmentation.context.SegContext`. The maths lives in core.segment; figures in core.render."""
from __future__ import annotations

import streamlit as st

from core.errors import ImageDecodeError
from pages.segmentation import cache, tab_click, tab_coseg, tab_foreground, tab_parts
from pages.segmentation.context import SegContext
from pages.shared.picking import PickedImage, pick_image
from pages.shared.resources import get_backbone, stop_if_imported
from pages.shared.selection import PATCH_DEFAULT
from pages.shared.sidebar import sidebar

MAX_OTHERS = 6
TABS = {"Click to segment": tab_click, "Parts (k-means)": tab_parts, "Foreground": tab_foreground,
        "Co-segmentation": tab_coseg}

sel = sidebar(PATCH_DEFAULT)
stop_if_imported(sel, "segmentation", "Segmentation")
b = get_backbone(sel.backbone)
spec = b.spec
size = sel.size or spec.input_size
layer = b.resolve_layer(sel.layer, "patch_tokens")
st.title("Segmentation")
caption = st.empty()
pic = pick_image(sel, "seg")
tokens = cache.tokens(spec.name, pic.sha256, size, layer, pic.image)  # [h, w, D]
grid = tokens.shape[:2]  # from the tokens: a CNN's earlier stages have finer grids than spec.grid(size)
caption.caption(f"From the patch tokens of {'block' if spec.family != 'cnn' else 'stage'} {layer} of **{spec.name}** "
                f"at {size} px: a {grid[0]}x{grid[1]} grid. Sidebar: 'Layer' (intermediate blocks segment parts, late "
                "blocks whole objects) and 'Input size' (448 px gives a 32x32 grid on the ViT). Block outputs at "
                "stride = patch size; Amir et al.'s deep-ViT-features use the last block's attention keys at "
                "stride 4 (docs/METHODS.md).")
records = {r.name: r for r in sel.dataset.records if r.sha256 != pic.sha256}  # name -> record
c1, c2, c3 = st.columns([6, 2, 2])
other_names = c1.multiselect("Other images (similarity to the clicked patch, co-segmentation)", list(records),
                             default=list(records)[:3], max_selections=MAX_OTHERS, key="seg_others")
alpha = c2.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="seg_alpha")
sharp = c3.toggle("Pixel-sharp edges", value=False, key="seg_sharp",
                  help="Move every mask from the patch grid onto the picture's edges: a guided filter (He et al.) "
                       "of the patch mask with the picture as the guide, cut at 0.5.")
others = []
for n in other_names:
    try:
        others.append(PickedImage(n, records[n].sha256, records[n].decode(), None))
    except (ImageDecodeError, OSError) as e:  # changed or removed since the dataset was listed
        st.warning(f"Skipped **{n}**: {getattr(e, 'reason', e)}")
ctx = SegContext(sel=sel, b=b, size=size, layer=layer, pic=pic, tokens=tokens, others=tuple(others), alpha=alpha,
                 sharp=sharp)

for module, tab in zip(TABS.values(), st.tabs(list(TABS), key="seg_tab", on_change="rerun")):
    if tab.open:  # only the open tab computes
        with tab:
            module.draw(ctx)
