"""Segmentation from frozen patch tokens: click a point to segment by similarity (in this picture and
in others), k-means parts, a PCA / CLS-attention / normalized-cut / boundary-prior foreground, and co-segmentation of
several pictures; every mask optionally made pixel-sharp (guided filter). The click view is a fragment:
a click reruns it alone, not the page. The maths lives in core.segment; figures in core.render."""
from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from core import render
from core.errors import ImageDecodeError
from core.explain.attention import cls_attention_map
from core.explain.inputs import image_tokens
from core.render import ColorScale
from core.segment.click import click_mask
from core.segment.clustering import common_foreground, cosegment, kmeans_parts
from core.segment.foreground import attention_foreground, boundary_foreground, ncut_foreground, pca_foreground
from core.segment.masks import mask_png_bytes, mask_to_image_size
from core.segment.refine import refine_labels, refine_mask
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


@st.cache_data(max_entries=32, show_spinner="Normalized cut…")
def _ncut(name: str, sha: str, size: int, layer: int, _tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ncut_foreground(_tokens)  # [h, w] score, bool [h, w]


def _shown_mask(image, mask: np.ndarray, sharp: bool, max_side: int) -> np.ndarray:
    """The mask to draw at ``max_side``: the patch mask, or refined at the displayed picture's pixels."""
    return refine_mask(render.fit(image, max_side), mask) if sharp else mask


def _mask_png(image, mask: np.ndarray, sharp: bool) -> bytes:
    """The mask at the picture's own size (refined there when ``sharp``), as PNG bytes."""
    return mask_png_bytes(refine_mask(image, mask) if sharp else mask_to_image_size(mask, image.size))


def _download_png(data_fn, file_name: str, label: str, key: str) -> None:
    st.download_button(f"⬇ {label}", data=data_fn, file_name=file_name, mime="image/png", on_click="ignore", key=key)


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


# ---- the page ----------------------------------------------------------------------------------
sel = sidebar(PATCH_DEFAULT)
b = get_backbone(sel.backbone)
spec = b.spec
size = sel.size or spec.input_size
layer = b.resolve_layer(sel.layer, "patch_tokens")
st.title("Segmentation")
caption = st.empty()
pic = pick_image(sel, "seg")
tokens = _tokens(spec.name, pic.sha256, size, layer, pic.image)  # [h, w, D]
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
stem = f"{_stem(pic.name)}_{spec.name}_{size}_b{layer}"

tab_names = ["Click to segment", "Parts (k-means)", "Foreground", "Co-segmentation"]
tabs = dict(zip(tab_names, st.tabs(tab_names, key="seg_tab", on_change="rerun")))

# -- click a patch: a fragment, so a click reruns this view only -----------------------------------------
@st.fragment
def _click_view(pic: PickedImage, tokens: np.ndarray, others: list[PickedImage], other_toks: np.ndarray | None,
                alpha: float, sharp: bool, stem: str) -> None:
    grid = tokens.shape[:2]
    t0, t1, t2 = st.columns([1, 1, 2])
    border = t0.toggle("Border is background", value=False, key="seg_border",
                       help="Keep the patches more similar to the click than to every patch on the picture's border, "
                            "connected to the click; then the mask's mean token replaces the click until the mask "
                            "settles (no threshold). For an object inside the picture; one that runs along the "
                            "border loses those parts. Other pictures always use the threshold.")
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
    click = click_mask(tokens, q, rule="border") if border else click_mask(tokens, q, None if auto else fixed)
    thr = click.otsu if auto else fixed  # for the other pictures (and this one without the border rule)
    sim, mask = click.similarity, click.mask  # [h, w], bool [h, w]
    t2.slider("Cosine threshold", -1.0, 1.0, 0.5, 0.01, key="seg_thr", disabled=auto,
              help=f"Otsu's threshold for this map: {click.otsu:.2f}")
    left, right = st.columns([1, 1])
    with left:
        rule = "closer to the clicked object than to the border" if border else f"threshold {thr:.2f}"
        st.markdown(f"**Click on the picture** — patch {q} (row, column), {rule}, "
                    f"mask {mask.mean():.0%} of the picture{' (pixel-sharp edges)' if sharp else ''}")
        shown = render.mask_panel(pic.image, _shown_mask(pic.image, mask, sharp, CLICK_SIDE), alpha=alpha,
                                  max_side=CLICK_SIDE, marker=(q, grid))
        streamlit_image_coordinates(shown, key=click_key, width=shown.width, cursor="crosshair",
                                    image_format="JPEG", jpeg_quality=90)
        _download_png(lambda: _mask_png(pic.image, mask, sharp), f"{stem}_mask_{q[0]}_{q[1]}.png", "mask PNG",
                      "dl_click_mask")
    with right:
        maps = [sim]
        if other_toks is not None:
            maps += list(cross_similarity(tokens[q], other_toks))  # M x [h, w]
        scale = ColorScale(float(min(m.min() for m in maps)), 1.0, "viridis", "cosine to the clicked patch")
        panels = [render.heat_panel(pic.image, sim, scale, alpha=alpha, title="this picture", max_side=PANEL,
                                    marker=(q, grid))]
        panels += [render.heat_panel(o.image, m, scale, alpha=alpha, title=_stem(o.name), max_side=PANEL)
                   for o, m in zip(others, maps[1:])]
        heat = render.row(panels[:2], scale) if len(panels) <= 2 else render.stack(
            [render.row(panels[i:i + 2], scale if i == 0 else None) for i in range(0, len(panels), 2)])
        st.image(heat)
        small = PANEL // 2 + 40
        masks = [render.mask_panel(o.image, _shown_mask(o.image, threshold_mask(m, thr), sharp, small), alpha=alpha,
                                   title=f"{_stem(o.name)}: sim >= {thr:.2f}", max_side=small)
                 for o, m in zip(others, maps[1:])]
        if masks:
            st.image(render.row(masks))
        _download_png(lambda: render.png_bytes(heat), f"{stem}_similarity_{q[0]}_{q[1]}.png", "similarity PNG",
                      "dl_click_heat")


with tabs["Click to segment"]:
    if tabs["Click to segment"].open:
        other_toks = np.stack([_tokens(spec.name, o.sha256, size, layer, o.image) for o in others]) if others else None
        _click_view(pic, tokens, others, other_toks, alpha, sharp, stem)  # other_toks: [M, h, w, D]

# -- k-means parts ---------------------------------------------------------------------------------
with tabs["Parts (k-means)"]:
    if tabs["Parts (k-means)"].open:
        k = st.slider("k (parts)", 2, 10, 4, key="seg_k")
        labels = _parts(spec.name, pic.sha256, size, layer, k, tokens)  # [h, w]
        shown_labels = refine_labels(render.fit(pic.image, CLICK_SIDE), labels, k) if sharp else labels
        fig = render.stack([render.labels_panel(pic.image, shown_labels, k, alpha=alpha, max_side=CLICK_SIDE,
                                                title=f"k-means, k={k}, block {layer}"),
                            render.legend([f"part {i}" for i in range(k)], render.palette(k))])
        st.image(fig)
        c1, c2 = st.columns(2)
        with c1:
            _download_png(lambda: render.label_png_bytes(refine_labels(pic.image, labels, k) if sharp else labels, k,
                                                         pic.image.size), f"{stem}_parts_k{k}.png",
                          "label PNG (palette colours)", "dl_parts")
        with c2:
            _download_png(lambda: render.png_bytes(fig), f"{stem}_parts_k{k}_overlay.png", "figure PNG", "dl_parts_fig")


def _foreground_panel(score: np.ndarray, scale: ColorScale, mask: np.ndarray, method: str, file_tag: str,
                      key: str) -> None:
    """One foreground method: its score map ``[h, w]`` over the picture above its mask, and the mask as PNG."""
    fig = render.heat_figure(pic.image, score, scale, alpha=alpha, max_side=PANEL)
    st.image(render.stack([fig, render.mask_panel(pic.image, _shown_mask(pic.image, mask, sharp, PANEL), alpha=alpha,
                                                  max_side=PANEL, title=f"{method} foreground: {mask.mean():.0%}")]))
    _download_png(lambda: _mask_png(pic.image, mask, sharp), f"{stem}_fg_{file_tag}.png", "mask PNG", key)


# -- foreground ------------------------------------------------------------------------------------
with tabs["Foreground"]:
    if tabs["Foreground"].open:
        score, pmask = pca_foreground(tokens)  # [h, w], bool [h, w]
        nscore, nmask = _ncut(spec.name, pic.sha256, size, layer, tokens)  # [h, w], bool [h, w]
        bscore, bmask = boundary_foreground(tokens)  # [h, w], bool [h, w]
        cols = st.columns(4 if spec.has_attention else 3)
        with cols[0]:
            st.markdown("**First principal component** of the patch tokens (> 0 = foreground; sign: the picture's "
                        "border is background)")
            _foreground_panel(score, ColorScale.shared([score], "RdBu_r", "PC1 score", symmetric=True), pmask,
                              "PCA", "pca", "dl_fg_pca")
        with cols[1]:
            st.markdown("**Normalized cut** (TokenCut): the patch graph (cosine > 0.2), its second eigenvector split "
                        "at the mean; the object holds the most extreme patch")
            _foreground_panel(nscore, ColorScale.shared([nscore], "RdBu_r", "eigenvector - mean", symmetric=True),
                              nmask, "normalized-cut", "ncut", "dl_fg_ncut")
        with cols[2]:
            st.markdown("**Boundary prior**: 1 - cosine to the most similar border patch, Otsu's cut, the largest "
                        "region (an object cut by the border counts as background)")
            _foreground_panel(bscore, ColorScale(0.0, max(float(bscore.max()), 1e-6), "magma",
                                                 "1 - max cosine to the border"),
                              bmask, "boundary-prior", "boundary", "dl_fg_boundary")
        if spec.has_attention:
            with cols[3]:
                keep = st.slider("Attention mass kept", 0.1, 1.0, 0.6, 0.05, key="seg_keep",
                                 help="The most-attended patches holding this share of the CLS attention (DINO's rule).")
                att = _cls_attention(spec.name, pic.sha256, size, pic.image)  # [h, w]
                amask = attention_foreground(att, keep)
                _foreground_panel(att, ColorScale(0.0, float(att.max()), "inferno",
                                                  "CLS attention (last block, head mean)"),
                                  amask, "attention", "attention", "dl_fg_att")

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
            side = PANEL - 60
            shown = [refine_labels(render.fit(g.image, side), l, k) if sharp else l for g, l in zip(group, labels)]
            top = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title=_stem(g.name), max_side=side)
                              for g, l in zip(group, shown)])
            bottom = render.row([render.labels_panel(g.image, l, k, alpha=alpha, title="common foreground",
                                                     max_side=side, highlight=fg) for g, l in zip(group, shown)])
            fig = render.stack([top, bottom, render.legend(names, render.palette(k))])
            st.image(fig)
            st.caption(f"One k-means over the patches of all {len(group)} pictures, so a colour is the same cluster "
                       "everywhere. Common foreground: clusters whose mean foreground score is above the picture's "
                       f"mean in at least half of the pictures ({fg_from}).")
            fg_mask = np.isin(labels[0], list(fg))
            c1, c2 = st.columns(2)
            with c1:
                _download_png(lambda: _mask_png(pic.image, fg_mask, sharp),
                              f"{stem}_cofg_k{k}.png", "common-foreground mask PNG (this picture)", "dl_co_mask")
            with c2:
                _download_png(lambda: render.png_bytes(fig), f"{stem}_coseg_k{k}.png", "figure PNG", "dl_co_fig")
