"""Segmentation from frozen patch tokens: click a point to segment by similarity (in this picture and
in others), k-means parts, a PCA / CLS-attention foreground, and co-segmentation of several pictures.
The maths lives in core.segment; figures in core.render."""
from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from core import render
from core.errors import ImageDecodeError
from core.explain.saliency import cls_attention_map, image_tokens
from core.render import ColorScale
from core.segment.click import click_mask
from core.segment.clustering import common_foreground, cosegment, kmeans_parts
from core.segment.foreground import attention_foreground, pca_foreground
from core.segment.masks import mask_png_bytes, mask_to_image_size
from core.segment.similarity import cross_similarity, pixel_to_patch
from core.segment.threshold import threshold_mask
from pages.common import PATCH_DEFAULT, PickedImage, get_backbone, pick_image, sidebar

CLICK_SIDE = 448   # px, the clickable picture
PANEL = 260        # px, maps side by side
MAX_OTHERS = 6


# ---- cached per-image work: keyed by (backbone, image sha256, input size, block) ----------------------
@st.cache_data(max_entries=64, show_spinner="Patch tokens…")
def _tokens(name: str, sha: str, size: int, layer: int, _img) -> np.ndarray:
    b = get_backbone(name)
    return image_tokens(b, b.preprocess([_img], size), layer)[0]  # [h, w, D]


@st.cache_data(max_entries=32, show_spinner="CLS attention…")
def _cls_attention(name: str, sha: str, size: int, _img) -> np.ndarray:
    b = get_backbone(name)
    return cls_attention_map(b, b.preprocess([_img], size), -1)  # [h, w] last block, head mean


@st.cache_data(max_entries=32, show_spinner="k-means…")
def _parts(name: str, sha: str, size: int, layer: int, k: int, _tokens: np.ndarray) -> np.ndarray:
    return kmeans_parts(_tokens, k)  # [h, w]


@st.cache_data(max_entries=16, show_spinner="Co-segmentation…")
def _coseg(name: str, shas: tuple[str, ...], size: int, layer: int, k: int, _tokens: list[np.ndarray]) -> list[np.ndarray]:
    return cosegment(_tokens, k)  # per image [h, w]


def _download_png(data_fn, file_name: str, label: str, key: str) -> None:
    st.download_button(f"⬇ {label}", data=data_fn, file_name=file_name, mime="image/png", on_click="ignore", key=key)


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


# ---- the page ----------------------------------------------------------------------------------
sel = sidebar(PATCH_DEFAULT)
b = get_backbone(sel.backbone)
spec = b.spec
size = sel.size or spec.input_size
layer = b.resolve_layer(-1 if sel.layer is None else sel.layer)
st.title("Segmentation")
caption = st.empty()
pic = pick_image(sel, "seg")
tokens = _tokens(spec.name, pic.sha256, size, layer, pic.image)  # [h, w, D]
grid = tokens.shape[:2]  # from the tokens: a CNN's earlier stages have finer grids than spec.grid(size)
caption.caption(f"From the patch tokens of {'block' if spec.family != 'cnn' else 'stage'} {layer} of **{spec.name}** "
                f"at {size} px: a {grid[0]}x{grid[1]} grid. Sidebar: 'Layer' (intermediate blocks segment parts, late "
                "blocks whole objects) and 'Input size' (448 px gives a 32x32 grid on the ViT).")
records = {r.name: r for r in sel.dataset.records if r.sha256 != pic.sha256}  # name -> record
c1, c2 = st.columns([3, 1])
other_names = c1.multiselect("Other images (similarity to the clicked patch, co-segmentation)", list(records),
                             default=list(records)[:3], max_selections=MAX_OTHERS, key="seg_others")
alpha = c2.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="seg_alpha")
others = []
for n in other_names:
    try:
        others.append(PickedImage(n, records[n].sha256, records[n].decode(), None))
    except (ImageDecodeError, OSError) as e:  # changed or removed since the dataset was listed
        st.warning(f"Skipped **{n}**: {getattr(e, 'reason', e)}")
stem = f"{_stem(pic.name)}_{spec.name}_{size}_b{layer}"

tab_names = ["Click to segment", "Parts (k-means)", "Foreground", "Co-segmentation"]
tabs = dict(zip(tab_names, st.tabs(tab_names, key="seg_tab", on_change="rerun")))

# -- click a patch ---------------------------------------------------------------------------------
with tabs["Click to segment"]:
    if tabs["Click to segment"].open:
        t1, t2 = st.columns([1, 3])
        auto = t1.toggle("Otsu threshold", value=True, key="seg_auto",
                         help="Pick the threshold that best splits this similarity map in two; turn off to set it.")
        click_key = f"seg_click_{pic.sha256[:16]}"
        prev = st.session_state.get(click_key)
        if prev:  # the last click on this picture, in displayed pixels
            q = pixel_to_patch((min(prev["x"], prev["width"]), min(prev["y"], prev["height"])),
                               (prev["width"], prev["height"]), grid)
        else:  # before any click: the most object-like patch (highest first-principal-component score)
            fg_score = pca_foreground(tokens)[0]  # [h, w]
            q = tuple(int(v) for v in np.unravel_index(np.argmax(fg_score), fg_score.shape))
        fixed = st.session_state.get("seg_thr", 0.5)
        click = click_mask(tokens, q, None if auto else fixed)
        sim, thr, mask = click.similarity, click.threshold, click.mask  # [h, w], float, bool [h, w]
        t2.slider("Cosine threshold", -1.0, 1.0, 0.5, 0.01, key="seg_thr", disabled=auto,
                  help=f"Otsu's threshold for this map: {click.otsu:.2f}")
        left, right = st.columns([1, 1])
        with left:
            st.markdown(f"**Click on the picture** — patch {q} (row, column), threshold {thr:.2f}, "
                        f"mask {mask.mean():.0%} of the picture")
            shown = render.mask_panel(pic.image, mask, alpha=alpha, max_side=CLICK_SIDE, marker=(q, grid))
            streamlit_image_coordinates(shown, key=click_key, width=shown.width, cursor="crosshair",
                                        image_format="JPEG", jpeg_quality=90)
            _download_png(lambda: mask_png_bytes(mask_to_image_size(mask, pic.image.size)), f"{stem}_mask_{q[0]}_{q[1]}.png",
                          "mask PNG", "dl_click_mask")
        with right:
            maps = [sim]
            if others:
                other_toks = np.stack([_tokens(spec.name, o.sha256, size, layer, o.image) for o in others])  # [M, h, w, D]
                maps += list(cross_similarity(tokens[q], other_toks))  # M x [h, w]
            scale = ColorScale(float(min(m.min() for m in maps)), 1.0, "viridis", "cosine to the clicked patch")
            panels = [render.heat_panel(pic.image, sim, scale, alpha=alpha, title="this picture", max_side=PANEL,
                                        marker=(q, grid))]
            panels += [render.heat_panel(o.image, m, scale, alpha=alpha, title=_stem(o.name), max_side=PANEL)
                       for o, m in zip(others, maps[1:])]
            heat = render.row(panels[:2], scale) if len(panels) <= 2 else render.stack(
                [render.row(panels[i:i + 2], scale if i == 0 else None) for i in range(0, len(panels), 2)])
            st.image(heat)
            masks = [render.mask_panel(o.image, threshold_mask(m, thr), alpha=alpha, title=f"{_stem(o.name)}: sim >= {thr:.2f}",
                                       max_side=PANEL // 2 + 40) for o, m in zip(others, maps[1:])]
            if masks:
                st.image(render.row(masks))
            _download_png(lambda: render.png_bytes(heat), f"{stem}_similarity_{q[0]}_{q[1]}.png", "similarity PNG",
                          "dl_click_heat")

# -- k-means parts ---------------------------------------------------------------------------------
with tabs["Parts (k-means)"]:
    if tabs["Parts (k-means)"].open:
        k = st.slider("k (parts)", 2, 10, 4, key="seg_k")
        labels = _parts(spec.name, pic.sha256, size, layer, k, tokens)  # [h, w]
        fig = render.stack([render.labels_panel(pic.image, labels, k, alpha=alpha, max_side=CLICK_SIDE,
                                                title=f"k-means, k={k}, block {layer}"),
                            render.legend([f"part {i}" for i in range(k)], render.palette(k))])
        st.image(fig)
        c1, c2 = st.columns(2)
        with c1:
            _download_png(lambda: render.label_png_bytes(labels, k, pic.image.size), f"{stem}_parts_k{k}.png",
                          "label PNG (palette colours)", "dl_parts")
        with c2:
            _download_png(lambda: render.png_bytes(fig), f"{stem}_parts_k{k}_overlay.png", "figure PNG", "dl_parts_fig")

# -- foreground ------------------------------------------------------------------------------------
with tabs["Foreground"]:
    if tabs["Foreground"].open:
        score, pmask = pca_foreground(tokens)  # [h, w], bool [h, w]
        cols = st.columns(2 if spec.has_attention else 1)
        with cols[0]:
            st.markdown("**First principal component** of the patch tokens (> 0 = foreground; sign: the picture's "
                        "border is background)")
            s = ColorScale.shared([score], "RdBu_r", "PC1 score", symmetric=True)
            fig = render.heat_figure(pic.image, score, s, alpha=alpha, max_side=PANEL)
            st.image(render.stack([fig, render.mask_panel(pic.image, pmask, alpha=alpha, max_side=PANEL,
                                                          title=f"PCA foreground: {pmask.mean():.0%}")]))
            _download_png(lambda: mask_png_bytes(mask_to_image_size(pmask, pic.image.size)), f"{stem}_fg_pca.png",
                          "mask PNG", "dl_fg_pca")
        if spec.has_attention:
            with cols[1]:
                keep = st.slider("Attention mass kept", 0.1, 1.0, 0.6, 0.05, key="seg_keep",
                                 help="The most-attended patches holding this share of the CLS attention (DINO's rule).")
                att = _cls_attention(spec.name, pic.sha256, size, pic.image)  # [h, w]
                amask = attention_foreground(att, keep)
                s = ColorScale(0.0, float(att.max()), "inferno", "CLS attention (last block, head mean)")
                fig = render.heat_figure(pic.image, att, s, alpha=alpha, max_side=PANEL)
                st.image(render.stack([fig, render.mask_panel(pic.image, amask, alpha=alpha, max_side=PANEL,
                                                              title=f"attention foreground: {amask.mean():.0%}")]))
                _download_png(lambda: mask_png_bytes(mask_to_image_size(amask, pic.image.size)), f"{stem}_fg_attention.png",
                              "mask PNG", "dl_fg_att")

# -- co-segmentation -------------------------------------------------------------------------------
with tabs["Co-segmentation"]:
    if tabs["Co-segmentation"].open:
        group = [pic, *others]
        if len(group) < 2:
            st.info("Pick at least one other image above to co-segment.")
        else:
            c1, c2 = st.columns(2)
            k = c1.slider("k (clusters shared by all pictures)", 2, 12, 5, key="seg_cok")
            fg_from = c2.radio("Foreground score", ["PCA"] + (["CLS attention"] if spec.has_attention else []),
                               horizontal=True, key="seg_cofg")
            toks = [tokens] + [_tokens(spec.name, o.sha256, size, layer, o.image) for o in others]
            labels = _coseg(spec.name, tuple(g.sha256 for g in group), size, layer, k, toks)
            if fg_from == "PCA":
                ref = np.concatenate([t.reshape(-1, t.shape[-1]) for t in toks])  # one PCA for all pictures
                scores = [pca_foreground(t, ref)[0] for t in toks]
            else:
                scores = [_cls_attention(spec.name, g.sha256, size, g.image) for g in group]
            fg = common_foreground(labels, scores)
            names = [f"cluster {i}{' (foreground)' if i in fg else ''}" for i in range(k)]
            top = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title=_stem(g.name), max_side=PANEL - 60)
                              for g, l in zip(group, labels)])
            bottom = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title="common foreground",
                                                     max_side=PANEL - 60, highlight=fg) for g, l in zip(group, labels)])
            fig = render.stack([top, bottom, render.legend(names, render.palette(k))])
            st.image(fig)
            st.caption(f"One k-means over the patches of all {len(group)} pictures, so a colour is the same cluster "
                       "everywhere. Common foreground: clusters whose mean foreground score is above the picture's "
                       f"mean in at least half of the pictures ({fg_from}).")
            fg_mask = np.isin(labels[0], list(fg))
            c1, c2 = st.columns(2)
            with c1:
                _download_png(lambda: mask_png_bytes(mask_to_image_size(fg_mask, pic.image.size)),
                              f"{stem}_cofg_k{k}.png", "common-foreground mask PNG (this picture)", "dl_co_mask")
            with c2:
                _download_png(lambda: render.png_bytes(fig), f"{stem}_coseg_k{k}.png", "figure PNG", "dl_co_fig")
