"""Grad-CAM tab: the pytorch-grad-cam family against a chosen target."""
from __future__ import annotations

import streamlit as st

from core import render
from core.explain.cam import CAM_METHODS, cam_layer_names
from core.render import ColorScale
from pages.saliency.context import SalContext
from pages.saliency.targets import target_picker
from pages.saliency.widgets import PANEL, download, warn_empty


def draw(ctx: SalContext) -> None:
    b, spec, pic, size, alpha, cmap, stem = ctx.b, ctx.spec, ctx.pic, ctx.size, ctx.alpha, ctx.cmap, ctx.stem
    h, w = spec.grid(size)
    methods = st.multiselect("Methods (pytorch-grad-cam)", list(CAM_METHODS),
                             default=["Grad-CAM", "LayerCAM", "EigenCAM"], key="sal_methods",
                             help="\n".join(f"- **{m.name}**: {m.summary}" for m in CAM_METHODS.values()))
    picked = target_picker(ctx)
    if picked is not None and methods:
        target, tkey = picked
        maps = {m: ctx.saliency(m, target, tkey) for m in methods}
        scale = ColorScale(0.0, 1.0, cmap, "CAM (each scaled to [0, 1])")
        panels = [render.heat_panel(pic.image, v, scale, alpha=alpha, title=k, max_side=PANEL) for k, v in maps.items()]
        st.image(render.row(panels, scale))
        st.caption(f"Target: **{target.label}**; target layer: `{', '.join(cam_layer_names(b))}` "
                   + (f"(patch tokens, prefix tokens dropped, reshaped to the {h}x{w} grid)." if spec.family != "cnn"
                      else f"(the {h}x{w} feature map)."))
        for k, v in maps.items():
            warn_empty(k, v)
        cols = st.columns(len(maps) + 1)
        for col, (k, v) in zip(cols, maps.items()):
            with col:
                download(render.heat_figure(pic.image, v, scale, alpha=alpha, title=f"{k}: {target.label}"),
                          f"{stem}_{k}.png", label=k, key=f"dl_cam_{k}")
        with cols[-1]:
            download(render.row(panels, scale), f"{stem}_cams.png", label="all", key="dl_cam_all")
