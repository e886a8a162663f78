"""Prototype maps tab: each patch's cosine to the nearest and the runner-up class prototypes."""
from __future__ import annotations

import streamlit as st

from core import render
from core.explain.methods import PROTOTYPE_A, PROTOTYPE_B, PROTOTYPE_DIFF
from core.render import ColorScale
from pages.saliency import cache
from pages.saliency.context import SalContext
from pages.saliency.targets import prototypes
from pages.saliency.widgets import PANEL, download


def draw(ctx: SalContext) -> None:
    sel, b, spec, pic, size, alpha, cmap, stem = ctx.sel, ctx.b, ctx.spec, ctx.pic, ctx.size, ctx.alpha, ctx.cmap, ctx.stem
    layer = b.resolve_layer(sel.layer)
    st.caption(f"Cosine similarity of every patch token of block {layer} (sidebar 'Layer') to the class means "
               "of the dataset's global embeddings of the same block, for the class the nearest-mean classifier "
               "picks (A) and the runner-up (B). A − B shows which parts pull the picture towards A. Training-free "
               "(not ProtoPNet's learned part prototypes); on a ViT the class means are of the CLS token, "
               "compared with patch tokens, a different token type (docs/METHODS.md).")
    protos = prototypes(ctx, layer)
    if protos is not None:
        rank = protos.ranking(cache.tokens(spec.name, pic.sha256, size, layer, pic.image)[1])  # nearest first
        ca, cb = rank[0][0], rank[1][0]
        pkey = f"{layer}:{sel.dataset_key}"
        pm = {k: ctx.saliency(k, params_key=pkey, prototypes=protos, layer=layer)
              for k in (PROTOTYPE_A, PROTOTYPE_B, PROTOTYPE_DIFF)}  # [h, w] each
        c1, c2 = st.columns([1, 4])
        c1.dataframe({"class": [r[0] for r in rank], "cosine": [round(r[1], 3) for r in rank]}, hide_index=True)
        ab = ColorScale.shared([pm[PROTOTYPE_A], pm[PROTOTYPE_B]], cmap, "patch · prototype cosine")
        diff = ColorScale.shared([pm[PROTOTYPE_DIFF]], "RdBu_r", "cosine A - B", symmetric=True)
        fig = render.row([
            render.row([render.heat_panel(pic.image, pm[PROTOTYPE_A], ab, alpha=alpha, title=f"A: {ca}", max_side=PANEL),
                        render.heat_panel(pic.image, pm[PROTOTYPE_B], ab, alpha=alpha, title=f"B: {cb}", max_side=PANEL)], ab),
            render.heat_figure(pic.image, pm[PROTOTYPE_DIFF], diff, alpha=alpha, title=f"A - B: {ca} vs {cb}",
                               max_side=PANEL),
        ])
        c2.image(fig)
        with c2:
            download(fig, f"{stem}_prototypes_b{layer}.png", key="dl_proto")
