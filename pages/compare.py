"""Compare: two to four backbones on the same images, one click. A metrics table (core.compare.metrics, whose
accuracies are core.classify.evaluation.evaluate / few_shot_curve), CKA between the backbones and block by block
(core.compare.cka, core.compare.layers), the similarity indices with intervals and baselines
(core.compare.indices) and the agreement map (one backbone's map coloured by each image's neighbour overlap with
another), then one column per backbone with shared controls: the embedding map, the saliency map each backbone
supports, the click-to-segment mask of the same point, the nearest neighbours; and where the backbones' NMC
predictions disagree."""
from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict

import numpy as np
import pandas as pd
import streamlit as st
from PIL import ImageDraw
from streamlit_image_coordinates import streamlit_image_coordinates

from core import render
from core.compare.agreement import shared_neighbours
from core.compare.cka import layer_cka_sample_size, rbf_sample_size
from core.compare.comparison import Comparison, build_comparison, cka_between, default_saliency, similarity_indices
from core.compare.indices import DEFAULT_K, INDICES, MAX_KNN_IMAGES, MAX_RESAMPLE_IMAGES, mutual_knn_overlap
from core.compare.layers import LAYER_POOLS, layer_cka_between, layer_features
from core.compare.metrics import best_per_column, columns, silhouette_sample_size
from core.compare.speed import Speed, measure_speed
from core.errors import BackboneLensError
from core.explain.inputs import image_tokens
from core.explain.prototype_maps import PrototypeSet
from core.geometry.neighbours import neighbours_of_row
from core.io.images import thumbnail
from core.projection.projectors import ProjectionParams, available_methods, method_label, project
from core.render import ColorScale
from core.segment.click import click_mask
from core.segment.similarity import pixel_to_patch
from pages.common import (
    CLASS_DEFAULT,
    PATCH_DEFAULT,
    features,
    get_backbone,
    load_backbone_or_stop,
    offline_backbone_names,
    show_failures,
    sidebar,
)
from pages.compare_views import NEUTRAL, OTHER, SAME, agreement_scatter, captioned_thumb, cka_heatmap, embedding_scatter, thumb_grid

DEFAULT_SET = [CLASS_DEFAULT, PATCH_DEFAULT]
MAX_BACKBONES = 4
CLICK_SIDE = 300      # px, the clickable picture
PANEL = 260           # px, saliency and mask panels
MAX_DISAGREEMENTS = 12
BEST_STYLE = "background-color: #c8e6c9; font-weight: 600"
POOL_NAMES = {"embedding": "CLS / pool", "mean": "mean of patches"}


# ---- cached work -------------------------------------------------------------------------------------
@st.cache_resource
def _memo() -> dict:
    """Per-process results that need a progress bar or a timer outside any cached function."""
    return {"speed": {}, "layers": OrderedDict()}


def _speed(name: str, fs) -> Speed:
    """Speed from the extraction stats, else a short timed forward (once per backbone and size)."""
    memo = _memo()["speed"]
    key = (name, fs.size)
    if key not in memo or (memo[key].source == "timed forward" and fs.stats.n_computed >= 8):
        with st.spinner(f"{name}: timing a forward pass…"):
            memo[key] = measure_speed(get_backbone(name), fs)
    return memo[key]


def _sample_note(n: int, total: int) -> str:
    """Caption text for a view computed on a seeded sample of ``n`` of ``total`` images."""
    return f"all {total:,} images" if n >= total else f"a seeded sample of n = {n:,} of the {total:,} images"


@st.cache_data(max_entries=8, show_spinner="Accuracies, few-shot draws, silhouettes, CKA…")
def _comparison(names: tuple[str, ...], dataset_key: str, speeds_key: tuple, _fsets, _speeds) -> Comparison:
    return build_comparison([get_backbone(n) for n in names], _fsets, _speeds)


@st.cache_data(max_entries=16, show_spinner=False)
def _cka(names: tuple[str, ...], dataset_key: str, kind: str, sigma: float, _fsets) -> np.ndarray:
    return cka_between(_fsets, kind, sigma)  # [B, B]


@st.cache_data(max_entries=8, show_spinner="Similarity indices: bootstrap and permutations…")
def _indices(names: tuple[str, ...], dataset_key: str, k: int, _fsets) -> dict:
    return similarity_indices(_fsets, k=k)  # {index: IndexMatrix}


@st.cache_data(max_entries=16, show_spinner=False)
def _overlap(a: str, b: str, dataset_key: str, k: int, _XA: np.ndarray, _XB: np.ndarray) -> np.ndarray:
    return mutual_knn_overlap(_XA, _XB, k)  # [N]


@st.cache_data(max_entries=64, show_spinner=False)
def _shared(a: str, b: str, dataset_key: str, k: int, i: int, _XA: np.ndarray, _XB: np.ndarray):
    return shared_neighbours(_XA, _XB, i, k)


@st.cache_data(max_entries=16, show_spinner="Projecting…")
def _project(name: str, dataset_key: str, params: ProjectionParams, _X: np.ndarray) -> np.ndarray:
    return project(_X, params)  # [N, 2]


@st.cache_data(max_entries=32, show_spinner="Saliency…")
def _saliency(name: str, sha: str, dataset_key: str, _img, _protos):
    return default_saliency(get_backbone(name), _img, prototypes=_protos)


@st.cache_data(max_entries=32, show_spinner="Patch tokens…")
def _tokens(name: str, sha: str, _img) -> np.ndarray:
    b = get_backbone(name)
    return image_tokens(b, b.preprocess([_img]), -1)[0]  # [h, w, D] of the last block


@st.cache_data(max_entries=8, show_spinner=False)
def _picture(sha: str, _record):
    return _record.decode()  # full resolution: the models see it as they saw the dataset


@st.cache_data(max_entries=512, show_spinner=False)
def _thumb(sha: str, _record):
    return thumbnail(_record.decode(), 224)


def _layers(sel, name: str, pool: str):
    """Every block of ``name`` on the dataset, with a progress bar; kept for the process (8 entries)."""
    memo = _memo()["layers"]
    key = (name, sel.dataset_key, pool)
    if key not in memo:
        bar = st.progress(0.0, text=f"{name}: every block, one forward pass…")
        memo[key] = layer_features(get_backbone(name), sel.dataset.records, pool=pool,
                                   progress=lambda d, t: bar.progress(d / t, text=f"{name}: every block, {d} / {t} images"))
        bar.empty()
        while len(memo) > 8:
            memo.popitem(last=False)
    memo.move_to_end(key)
    return memo[key]


def _col_width(key: str) -> int:
    """Pixel width of a metrics-table column (all 14 fit a 1600-px window with the sidebar open)."""
    fixed = {"backbone": 125, "family": 52, "dim": 50, "params": 66, "images_per_s": 52, "speed_source": 98,
             "linear_accuracy": 80}
    return fixed.get(key, 60 if key.endswith("_std") else 78)


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def _png(image) -> bytes:
    return render.png_bytes(image)


def _mark_point(image, uv: tuple[float, float]):
    """A copy of ``image`` with a cyan ring at the relative point ``uv = (x/W, y/H)``."""
    out = image.copy()
    d = ImageDraw.Draw(out)
    x, y = uv[0] * out.width, uv[1] * out.height
    for r, col, w in ((9, (0, 0, 0), 4), (9, (0, 255, 255), 2)):
        d.ellipse([x - r, y - r, x + r, y + r], outline=col, width=w)
    return out


# ---- the page ------------------------------------------------------------------------------------
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
ds = sel.dataset
if len(names) < 2:
    st.info("Pick at least two backbones.")
    st.stop()
if len(ds) < 3:
    st.info("The dataset needs at least 3 images: pick another dataset in the sidebar or upload more.")
    st.stop()

base = dataclasses.replace(sel, size=None, layer=None)  # every backbone at its own defaults
backbones = [load_backbone_or_stop(n) for n in names]
fsets = [features(base, ("embedding",), backbone=n, layer=None) for n in names]
show_failures(fsets[0])
records = fsets[0].records
labels = fsets[0].labels
labelled = bool(labels) and all(labels) and len(set(labels)) >= 2
classes = sorted(set(labels)) if labelled else []
colours = render.class_colours(classes)
speeds = [_speed(n, fs) for n, fs in zip(names, fsets)]
key_names = tuple(names)

# -- metrics ---------------------------------------------------------------------------------------
st.header("Metrics", divider="gray")
cmp: Comparison | None = None
if not labelled:
    st.info("Accuracies, few-shot, silhouette and agreement need class labels (a folder per class, or uploads with "
            "class names). CKA and the side-by-side views below work without them.")
else:
    try:
        cmp = _comparison(key_names, sel.dataset_key, tuple((s.images_per_s, s.source) for s in speeds), fsets, speeds)
    except ValueError as e:
        st.error(f"Cannot compute the metrics on this dataset: {e}")
    if cmp is not None:
        cols = columns(cmp.shots)
        raw = pd.DataFrame([r.as_dict() for r in cmp.rows])[[c.key for c in cols]]
        best = best_per_column(raw.to_dict("records"), cols)
        shown = raw.rename(columns={c.key: c.label for c in cols})

        def _highlight(df: pd.DataFrame) -> pd.DataFrame:
            style = pd.DataFrame("", index=df.index, columns=df.columns)
            for c in cols:
                for i in best.get(c.key, ()):
                    style.iloc[i, df.columns.get_loc(c.label)] = BEST_STYLE
            return style

        fmt = {c.label: "{:.3f}" for c in cols if c.key not in ("backbone", "family", "dim", "params", "speed_source")}
        fmt.update({"img/s": "{:.1f}", "params": lambda v: f"{v / 1e6:.1f} M"})
        st.dataframe(shown.style.apply(_highlight, axis=None).format(fmt, na_rep="n/a"), hide_index=True,
                     column_config={c.label: st.column_config.Column(help=c.help, width=_col_width(c.key),
                                                                     pinned=c.key == "backbone") for c in cols},
                     key="cmp_table")
        r0 = cmp.rows[0]
        st.caption(f"{r0.n_images} images, {r0.n_classes} classes. Accuracies: `core.classify.evaluation.evaluate` defaults "
                   f"({'a stratified 30 % hold-out per class, seed 0' if r0.protocol == 'split' else r0.protocol}"
                   "), the same split for every backbone; few-shot: NMC with k images per class, mean and ± std over "
                   f"10 draws; silhouette: cosine distance, {_sample_note(silhouette_sample_size(r0.n_images), r0.n_images)}. "
                   "Green: best in the column (params: fewest). Click a header to sort.")
        c1, c2, _ = st.columns([1, 1, 4])
        c1.download_button("⬇ Table (CSV)", _csv(raw), "compare_metrics.csv", "text/csv", on_click="ignore",
                           key="dl_cmp_csv")

# -- CKA ---------------------------------------------------------------------------------------------
st.header("Representational similarity (CKA)", divider="gray")
left, right = st.columns(2, gap="large")
with left:
    k1, k2 = st.columns([1, 1])
    kind = k1.radio("Kernel", ["linear", "rbf"], horizontal=True, key="cmp_cka_kind",
                    format_func=lambda k: {"linear": "linear CKA", "rbf": "RBF CKA"}[k],
                    help="Linear CKA (Kornblith et al. 2019) of the global embeddings on the same images; RBF: "
                         "Gaussian kernels, bandwidth = a fraction of the median off-diagonal pairwise distance "
                         "(Kornblith et al.'s code takes the median over all pairs, zeros included: docs/METHODS.md).")
    sigma = k2.slider("RBF bandwidth (× median distance)", 0.1, 2.0, 0.5, 0.1, key="cmp_cka_sigma",
                      disabled=kind != "rbf")
    M = _cka(key_names, sel.dataset_key, kind, sigma, fsets)
    label = "linear CKA" if kind == "linear" else f"RBF CKA (σ = {sigma:g} × median)"
    n_cka = len(records) if kind == "linear" else rbf_sample_size(len(records))
    st.plotly_chart(cka_heatmap(M, names, names, title=f"{label} between backbones, global embeddings of {n_cka:,} "
                                "images", colorbar="CKA"), key="cmp_cka_fig")
    st.caption("Linear CKA: every image, in feature space (no N x N matrix)." if kind == "linear" else
               f"RBF CKA builds n x n kernels: {_sample_note(n_cka, len(records))}.")
    cka_df = pd.DataFrame(M, columns=names).assign(backbone=names)[["backbone", *names]]
    st.download_button("⬇ CKA (CSV)", _csv(cka_df), f"compare_cka_{kind}.csv", "text/csv", on_click="ignore",
                       key="dl_cka")
with right:
    vits = [n for n, b in zip(names, backbones) if b.spec.has_attention]
    default_ab = vits[0] if vits else names[0]
    l1, l2, l3 = st.columns(3)
    a_name = l1.selectbox("Block by block: A", names, index=names.index(default_ab), key="cmp_lay_a")
    b_name = l2.selectbox("B (same = within one)", names, index=names.index(default_ab), key="cmp_lay_b")
    pool = l3.radio("Per block", list(LAYER_POOLS), key="cmp_lay_pool", horizontal=True,
                    format_func=POOL_NAMES.get,
                    help="\n".join(f"- **{k}**: {v}" for k, v in LAYER_POOLS.items()))
    if st.toggle("Compute the layer-by-layer CKA", key="cmp_lay_on",
                 help="One forward pass over all images per backbone, keeping every block."):
        try:
            fa = _layers(sel, a_name, pool)
            fb = fa if b_name == a_name else _layers(sel, b_name, pool)
            LM = layer_cka_between(fa, fb, kind, sigma)  # [LA, LB]
        except (BackboneLensError, ValueError) as e:
            st.error(f"Cannot compute the layer CKA: {e}")
            st.stop()
        fig = cka_heatmap(LM, [str(l) for l in fa.layers], [str(l) for l in fb.layers], annotate=LM.size <= 64,
                          title=f"{label.split(' (')[0]} between blocks ({POOL_NAMES[pool]}), {len(records)} images",
                          colorbar="CKA",
                          x_title=f"{b_name} block", y_title=f"{a_name} block", table_order=False)
        st.plotly_chart(fig, key="cmp_layer_fig")
        n_lay = layer_cka_sample_size(len(records))
        st.caption(f"Exact CKA on all {len(records):,} images." if n_lay == len(records) else
                   f"Minibatch CKA (Nguyen et al. 2021: unbiased HSIC averaged over minibatches of 1,024) on "
                   f"{_sample_note(n_lay, len(records))}.")
        lay_df = pd.DataFrame(LM, columns=[f"{b_name}:{l}" for l in fb.layers]).assign(
            block=[f"{a_name}:{l}" for l in fa.layers])
        st.download_button("⬇ Layer CKA (CSV)", _csv(lay_df[["block", *lay_df.columns[:-1]]]),
                           f"layer_cka_{a_name}_{b_name}_{pool}.csv".replace("/", "_"), "text/csv", on_click="ignore",
                           key="dl_lay")
    else:
        st.caption(f"CKA between every block of A and every block of B ({LAYER_POOLS[pool]}). Turn it on to compute "
                   "(one pass over the images per backbone, then cached).")

# -- similarity indices ---------------------------------------------------------------------------------
img_names = [r.name for r in records]


def _pick_from_chart(chart_key: str) -> None:
    """A click on a point of any embedding map chooses that image for every column."""
    pts = ss.get(chart_key, {}).get("selection", {}).get("points", [])
    if pts and "customdata" in pts[0]:
        cd = pts[0]["customdata"]
        ss["cmp_image"] = int(cd[0] if isinstance(cd, (list, tuple)) else cd)


ss.setdefault("cmp_image", 0)
if ss["cmp_image"] >= len(records):
    ss["cmp_image"] = 0

st.header("Similarity indices", divider="gray")
n_img = len(records)
if n_img < 5:
    st.info("The similarity indices need at least 5 images.")
else:
    k_max = min(50, n_img - 1)
    k_idx = st.slider("Neighbours k (mutual k-NN, CKNNA)", 2, k_max, min(DEFAULT_K, k_max), key="cmp_k_idx",
                      help="Each image's k nearest neighbours (cosine) in each backbone's space.")
    sims = _indices(key_names, sel.dataset_key, k_idx, fsets)
    first = next(iter(sims.values()))
    e0 = next(iter(first.estimates.values()))
    st.caption(f"Global embeddings of {n_img} images. Cells: the index, and under it its {e0.level:.0%} bootstrap "
               f"interval over images ({e0.n_boot} draws). The table adds the permutation baseline (the index after "
               f"shuffling one backbone's images against the other's, {e0.n_perm} shuffles) and its p-value. "
               "Diagonal: a backbone with itself."
               + ("" if n_img <= min(MAX_KNN_IMAGES, MAX_RESAMPLE_IMAGES) else
                  f" Values: CKA and Procrustes on all {n_img:,} images, mutual k-NN and CKNNA on "
                  f"{_sample_note(min(n_img, MAX_KNN_IMAGES), n_img)} (their intervals too); the intervals and baselines "
                  f"of CKA and Procrustes on seeded draws of n = {min(n_img, MAX_RESAMPLE_IMAGES):,} images."))
    cols_idx = [c for _ in range(0, len(sims), 2) for c in st.columns(2, gap="large")]  # two matrices a row
    for col, (iname, m) in zip(cols_idx, sims.items()):
        info = INDICES[iname]
        text = np.array([[f"{m.value[a, b]:.2f}" if a == b else
                          f"{m.value[a, b]:.2f}<br>{m.ci_low[a, b]:.2f}–{m.ci_high[a, b]:.2f}"
                          for b in range(len(names))] for a in range(len(names))])
        zr = (0.0, 1.0) if info.higher_is_similar else (0.0, max(1.0, float(np.nanmax(m.value))))
        col.plotly_chart(cka_heatmap(m.value, names, names, title=info.label, colorbar=info.label.split(" ")[-1],
                                     zrange=zr, reverse=not info.higher_is_similar, text=text, height=340),
                         key=f"cmp_idx_{iname}")
        col.caption(info.summary)
    idx_df = pd.DataFrame([{"index": INDICES[n].label, "A": names[a], "B": names[b], "value": e.value,
                            "CI low": e.ci_low, "CI high": e.ci_high, "baseline": e.baseline, "p": e.p_value,
                            "k": e.k, "images": e.n_images}
                           for n, mm in sims.items() for (a, b), e in mm.estimates.items()])
    st.dataframe(idx_df, hide_index=True, key="cmp_idx_table", column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in ("value", "CI low", "CI high", "baseline", "p")})
    d1, d2, _ = st.columns([1, 1, 4])
    d1.download_button("⬇ Indices (CSV)", _csv(idx_df), "compare_indices.csv", "text/csv", on_click="ignore",
                       key="dl_idx")
    if cmp is not None:
        d2.download_button("⬇ All (JSON)", json.dumps(dataclasses.replace(cmp, cka=M, cka_kind=kind, indices=sims)
                                                       .to_json(), indent=2),
                           "compare.json", "application/json", on_click="ignore", key="dl_cmp_json",
                           help="The CLI's `backbone-lens compare --json` format: one object per backbone with its row "
                                "of the CKA matrix ('cka', in 'cka_order') and of every index.")

    # -- the agreement map: where do two backbones see different neighbourhoods? --
    st.subheader("Agreement map")
    g1, g2, g3 = st.columns(3)
    ag_a = g1.selectbox("Map of backbone A", names, key="cmp_ag_a")
    ag_b = g2.selectbox("coloured by its neighbours shared with B", names, index=1 if names[0] == ag_a else 0,
                        key="cmp_ag_b")
    ag_method = g3.selectbox("Projection", available_methods(), key="cmp_ag_proj", format_func=method_label)
    if ag_a == ag_b:
        st.info("Pick two different backbones.")
    else:
        XA, XB = fsets[names.index(ag_a)]["embedding"], fsets[names.index(ag_b)]["embedding"]
        overlap = _overlap(ag_a, ag_b, sel.dataset_key, k_idx, XA, XB)  # [N]
        coords_a = _project(ag_a, sel.dataset_key, ProjectionParams(ag_method), XA)
        c_map, c_nb = st.columns([3, 2], gap="medium")
        with c_map:
            fig = agreement_scatter(coords_a, overlap, labels, img_names, k=k_idx, other=ag_b, method=ag_method,
                                    chosen=ss["cmp_image"],
                                    title=f"{method_label(ag_method)} of {ag_a}, coloured by neighbours shared with "
                                          f"{ag_b} (k = {k_idx})")
            st.plotly_chart(fig, key="cmp_ag_map", on_select=lambda: _pick_from_chart("cmp_ag_map"),
                            selection_mode="points")
            st.caption(f"Mean overlap {overlap.mean():.0%} (the mutual k-NN index); red images sit among different "
                       f"neighbours in the two spaces. Click a point to open it here and below.")
        with c_nb:
            j = ss["cmp_image"]
            sh = _shared(ag_a, ag_b, sel.dataset_key, k_idx, j, XA, XB)
            st.markdown(f"**{img_names[j]}**{f' ({labels[j]})' if labels[j] else ''}: {len(sh.shared)} of {k_idx} "
                        "neighbours shared")
            for who, rows_, sims_ in ((ag_a, sh.a, sh.sim_a), (ag_b, sh.b, sh.sim_b)):
                thumbs = [captioned_thumb(_thumb(records[r].sha256, records[r]),
                                          [labels[r] or img_names[r].rsplit("/", 1)[-1], f"cos {c:.2f}"],
                                          border=SAME if r in sh.shared else OTHER, side=96, text_size=11)
                          for r, c in zip(rows_, sims_)]
                st.markdown(f"nearest in **{who}** (green: also among the other's)")
                st.image(thumb_grid(thumbs, per_row=5), width="content")

# -- side by side -------------------------------------------------------------------------------------
st.header("Side by side", divider="gray")
c_img, c_ctl = st.columns([1, 2], gap="large")
with c_ctl:
    s1, s2, s3 = st.columns(3)
    i = s1.selectbox("Image (or click a point in a map)", range(len(records)), format_func=lambda j: img_names[j],
                     key="cmp_image")
    method = s2.selectbox("Map", available_methods(), key="cmp_proj",
                          format_func=method_label,
                          help="Each backbone's embeddings, cosine geometry, seed 0; colours are the same classes "
                               "in every column.")
    k_nn = s3.slider("Neighbours", 1, 10, 5, key="cmp_k")
    s4, s5, s6 = st.columns(3)
    auto = s4.toggle("Otsu threshold", value=True, key="cmp_otsu",
                     help="Per backbone, the threshold that best splits its similarity map in two.")
    thr_fixed = s5.slider("Cosine threshold", -1.0, 1.0, 0.5, 0.01, key="cmp_thr", disabled=auto)
    alpha = s6.slider("Opacity", 0.0, 1.0, 0.55, 0.05, key="cmp_alpha")
rec = records[i]
pic = _picture(rec.sha256, rec)
click_key = f"cmp_click_{rec.sha256[:16]}"
prev = ss.get(click_key)
uv = (min(prev["x"] / prev["width"], 1.0), min(prev["y"] / prev["height"], 1.0)) if prev else (0.5, 0.5)
with c_img:
    shown = _mark_point(render.fit(pic, CLICK_SIDE), uv)
    streamlit_image_coordinates(shown, key=click_key, width=shown.width, cursor="crosshair", image_format="JPEG",
                                jpeg_quality=90)
    st.caption(f"**{rec.name}**{f' ({rec.label})' if rec.label else ''}. Click on the picture: every backbone "
               f"segments from the patch under the same point ({uv[0]:.2f}, {uv[1]:.2f}).")

same_pic = [j for j, r in enumerate(records) if r.sha256 == rec.sha256 and j != i]  # copies are not neighbours
panels_for_png = []
cols_ui = st.columns(len(names), gap="medium")
for col, name, b, fs in zip(cols_ui, names, backbones, fsets):
    spec = b.spec
    X = fs["embedding"]
    grid = spec.grid(spec.input_size)
    with col:
        st.subheader(name)
        st.caption(f"{spec.family.upper()} · D = {X.shape[1]} · {spec.input_size} px · {grid[0]}x{grid[1]} "
                   f"{'patches' if spec.family != 'cnn' else 'cells'}")
        nb = neighbours_of_row(X, i, k_nn, also_exclude=same_pic)  # copies of the picture are not neighbours
        nn_idx, nn_sim = nb.indices[0], nb.similarities[0]
        coords = _project(name, sel.dataset_key, ProjectionParams(method), X)
        chart_key = f"cmp_scatter_{name}"
        fig = embedding_scatter(coords, labels, img_names, colours, title=f"{name}: {method_label(method)}",
                                method=method, chosen=i, neighbours=list(nn_idx))
        st.plotly_chart(fig, key=chart_key, on_select=lambda k=chart_key: _pick_from_chart(k), selection_mode="points")
        # saliency: the method this backbone supports
        protos = None
        if not spec.has_attention and not spec.has_classifier:
            if not labelled:
                st.info(f"{name} has neither attention nor a classifier head: its Grad-CAM explains a class "
                        "prototype, which needs class labels.")
            else:
                final = features(base, ("embedding",), backbone=name, layer=-1)
                protos = PrototypeSet.from_embeddings(final["embedding"], final.labels, exclude=[i, *same_pic])
        panels = []
        if spec.has_attention or spec.has_classifier or protos is not None:
            sal = _saliency(name, rec.sha256, sel.dataset_key if protos is not None else "", pic, protos)
            scale = ColorScale(0.0, 1.0, "inferno", f"{sal.method} (min-max)")
            panels.append(render.heat_figure(pic, sal.map, scale, alpha=alpha, max_side=PANEL,
                                             title=f"{sal.method}: {sal.target}"))
        # click-to-segment at the same point
        tokens = _tokens(name, rec.sha256, pic)  # [h, w, D]
        tgrid = tokens.shape[:2]
        q = pixel_to_patch((uv[0] * pic.width, uv[1] * pic.height), pic.size, tgrid)
        click = click_mask(tokens, q, None if auto else thr_fixed)
        thr, mask = click.threshold, click.mask  # float, bool [h, w]
        panels.append(render.mask_panel(pic, mask, alpha=alpha, max_side=PANEL, marker=(q, tgrid),
                                        title=f"click mask: cos >= {thr:.2f}"))
        if len(names) == 2:  # room for the two maps side by side
            st.image(render.row(panels), width="content")
        else:
            for p in panels:
                st.image(p, width="content")
        st.caption(f"Mask: patches of the last block whose cosine to patch {q} (row, column) is at least {thr:.2f}"
                   f"{' (Otsu)' if auto else ''}: {mask.mean():.0%} of the picture.")
        panels_for_png.append(render.titled(render.stack(panels), name, text_size=16))
        # nearest neighbours in this backbone's space
        thumbs = [captioned_thumb(_thumb(records[j].sha256, records[j]),
                                  [labels[j] or records[j].name.rsplit("/", 1)[-1], f"cosine {c:.3f}"],
                                  border=NEUTRAL if not labelled else SAME if labels[j] == rec.label else OTHER)
                  for j, c in zip(nn_idx, nn_sim)]
        st.markdown(f"**{len(thumbs)} nearest neighbours** (cosine similarity)"
                    + (" — green: same class, red: another" if labelled else ""))
        st.image(thumb_grid(thumbs, per_row=max(2, 10 // len(names))), width="content")

st.download_button("⬇ Saliency and masks, side by side (PNG)", lambda: _png(render.row(panels_for_png)),
                   f"compare_{rec.name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}.png", "image/png", on_click="ignore",
                   key="dl_side")

# -- agreement -----------------------------------------------------------------------------------------
st.header("Agreement of the NMC predictions", divider="gray")
if cmp is None:
    st.info("Agreement needs the metrics above (a labelled dataset).")
else:
    n_test = cmp.agreement[0].n_test if cmp.agreement else 0
    st.caption(f"On the {n_test} test images of the split above: the share where two backbones' nearest-mean "
               "predictions agree, how often each is right, and the images where they differ.")
    st.dataframe(pd.DataFrame([{
        "A": p.a, "B": p.b, "agree": p.agree, "both right": p.both_correct, "only A right": p.only_a,
        "only B right": p.only_b, "both wrong": p.both_wrong, "disagree": len(p.disagreements)} for p in cmp.agreement]),
        hide_index=True, column_config={"agree": st.column_config.NumberColumn(format="percent")}, key="cmp_agree")
    pairs = [f"{p.a} vs {p.b}" for p in cmp.agreement]
    pi = st.selectbox("Disagreements of", range(len(pairs)), format_func=lambda j: pairs[j], key="cmp_pair") \
        if len(pairs) > 1 else 0
    p = cmp.agreement[pi]
    if not p.disagreements:
        st.success(f"{p.a} and {p.b} predict the same class for every test image.")
    else:
        shown_d = p.disagreements[:MAX_DISAGREEMENTS]
        thumbs = [captioned_thumb(_thumb(records[d.index].sha256, records[d.index]),
                                  [f"true: {d.true}", f"A: {d.pred_a}", f"B: {d.pred_b}"],
                                  border=SAME if d.pred_a == d.true else OTHER if d.pred_b == d.true else NEUTRAL)
                  for d in shown_d]
        st.markdown(f"**A = {p.a}, B = {p.b}**: {len(p.disagreements)} images" +
                    (f" (first {MAX_DISAGREEMENTS} shown)" if len(p.disagreements) > MAX_DISAGREEMENTS else "") +
                    ". Border: green = A right, red = B right, grey = both wrong.")
        st.image(thumb_grid(thumbs, per_row=6), width="content")
        dis_df = pd.DataFrame([dataclasses.asdict(d) for d in p.disagreements]).rename(
            columns={"pred_a": f"pred_{p.a}", "pred_b": f"pred_{p.b}"})
        st.download_button("⬇ Disagreements (CSV)", _csv(dis_df), f"disagreements_{p.a}_{p.b}.csv".replace("/", "_"),
                           "text/csv", on_click="ignore", key="dl_dis")
