"""Saliency: what in one picture drives a backbone. Every map comes from the one saliency table
(core.explain.methods): attention per block and head and its rollout (ViTs), the Grad-CAM family
(pytorch-grad-cam), prototype maps ("why this class"), a random control; deletion / insertion scores
(core.explain.faithfulness) compare maps by a number, and the report card (core.explain.report) scores
every method on a sample of the dataset."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import render
from core.errors import UnsupportedOperationError
from core.explain.attention import DEFAULT_ROLLOUT, RolloutParams
from core.explain.cam import CAM_METHODS, cam_layer_names
from core.explain.faithfulness import faithfulness
from core.explain.inputs import SaliencyInput
from core.explain.maps import normalize01
from core.explain.methods import (
    ATTENTION,
    PROTOTYPE_A,
    PROTOTYPE_B,
    PROTOTYPE_DIFF,
    RANDOM,
    ROLLOUT,
    available_methods,
    compute_saliency,
)
from core.explain.prototype_maps import PrototypeSet
from core.explain.report import ReportSettings, saliency_report
from core.explain.sanity import mprt
from core.explain.targets import CamTarget, default_target, top_classes
from core.render import ColorScale
from pages.common import (
    PATCH_DEFAULT,
    Selection,
    features,
    get_backbone,
    pick_image,
    sidebar,
)

CMAPS = ["inferno", "viridis", "magma", "turbo", "jet"]
TILE = 104       # px, attention mosaic tiles
PANEL = 300      # px, maps side by side
BIG = 448        # px, one enlarged map


# ---- cached per-image work: keyed by (backbone, image sha256, input size, ...) --------------------
@st.cache_resource(max_entries=4, show_spinner=False)
def _input(name: str, sha: str, size: int, _img) -> SaliencyInput:
    """The picture prepared for the backbone; its attention and tokens are computed once."""
    return SaliencyInput.from_image(get_backbone(name), _img, size)


@st.cache_resource
def _report_memo() -> dict:
    """Report cards of this process (computed with a progress bar, outside any cached function)."""
    return {}


@st.cache_data(max_entries=16, show_spinner="Attention of every block and head…")
def _cls_maps(name: str, sha: str, size: int, _img) -> np.ndarray:
    return _input(name, sha, size, _img).attention().cls_maps  # [L, H, h, w]


@st.cache_data(max_entries=128, show_spinner="Saliency map…")
def _map(name: str, sha: str, size: int, method: str, params_key: str, target_key: str, _img,
         _target: CamTarget | None, _params: dict) -> np.ndarray:
    """The map of one registered method (``[h, w]`` or ``[S, S]``)."""
    return compute_saliency(method, _input(name, sha, size, _img), _target, **_params)


@st.cache_data(max_entries=16, show_spinner=False)
def _top5(name: str, sha: str, size: int, _img):
    return top_classes(get_backbone(name), _input(name, sha, size, _img).x, k=5)


@st.cache_data(max_entries=16, show_spinner="Patch tokens…")
def _tokens(name: str, sha: str, size: int, layer: int, _img) -> tuple[np.ndarray, np.ndarray]:
    return _input(name, sha, size, _img).tokens(layer)  # [h, w, D], [D]


@st.cache_data(max_entries=128, show_spinner="Deletion / insertion…")
def _faith(name: str, sha: str, size: int, map_id: str, target_key: str, steps: int, baseline: str,
           _img, _map: np.ndarray, _target: CamTarget) -> dict:
    return faithfulness(get_backbone(name), _img, _map, _target, size, steps=steps, baseline=baseline)


@st.cache_data(max_entries=8, show_spinner=False)
def _mosaic(name: str, sha: str, size: int, alpha: float, cmap: str, mode: str, _img):
    cls = _cls_maps(name, sha, size, _img)  # [L, H, h, w]
    maps = np.concatenate([cls, cls.mean(1, keepdims=True)], axis=1)  # [L, H+1, h, w], last column = mean of heads
    if mode == "per tile":
        maps = maps / maps.max(axis=(2, 3), keepdims=True)
        scale = ColorScale(0.0, 1.0, cmap, "attention / tile max")
    elif mode == "per block":
        maps = maps / maps.max(axis=(1, 2, 3), keepdims=True)
        scale = ColorScale(0.0, 1.0, cmap, "attention / block max")
    else:
        scale = ColorScale(0.0, float(maps.max()), cmap, "CLS attention weight")
    base = render.fit(_img, TILE)
    tiles = [[render.fast_overlay(base, m, scale, alpha=alpha) for m in row] for row in maps]
    return render.grid(tiles, [f"block {l}" for l in range(maps.shape[0])],
                       [f"head {h}" for h in range(maps.shape[1] - 1)] + ["mean"], scale)


# ---- helpers -----------------------------------------------------------------------------------
def _download(fig, file_name: str, label: str = "PNG", key: str | None = None) -> None:
    st.download_button(f"⬇ {label}", data=lambda: render.png_bytes(fig), file_name=file_name, mime="image/png",
                       on_click="ignore", key=key)


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _exclude(fs, sha: str) -> list[int]:
    """Rows of a feature set holding this very picture (left out of class means)."""
    return [i for i, r in enumerate(fs.records) if r.sha256 == sha]


def _prototypes(sel: Selection, layer: int, sha: str) -> PrototypeSet | None:
    fs = features(sel, kinds=("embedding",), layer=layer)
    try:
        return PrototypeSet.from_embeddings(fs["embedding"], fs.labels, exclude=_exclude(fs, sha))
    except ValueError as e:
        st.info(f"Prototype targets and maps need class labels: {e}")
        return None


def _target_key(t: CamTarget, extra: str = "") -> str:
    return f"class:{t.class_index}" if t.kind == "class" else f"{t.label}:{extra}"


def _default_target(sel: Selection, b, pic, size: int) -> tuple[CamTarget, str] | None:
    """:func:`core.explain.targets.default_target`: the head's top class, else the nearest class prototype."""
    protos = None if b.spec.has_classifier else _prototypes(sel, -1, pic.sha256)
    if protos is None and not b.spec.has_classifier:
        return None
    t = default_target(_input(b.spec.name, pic.sha256, size, pic.image), protos)
    return t, _target_key(t, "" if t.kind == "class" else sel.dataset_key)


def _target_picker(sel: Selection, b, pic, size: int) -> tuple[CamTarget, str] | None:
    """What Grad-CAM (and the faithfulness scores) explain; the choice is remembered for this image."""
    spec = b.spec
    kinds = (["ImageNet class"] if spec.has_classifier else []) + ["Dataset class prototype"] + \
            (["Text prompt"] if spec.has_text else [])
    kind = st.radio("Explain", kinds, horizontal=True, key=f"sal_tkind_{spec.name}",
                    help="A head's class logit; or the cosine similarity of the final embedding to a class mean "
                         "of the dataset (the picture itself left out) or to a CLIP text embedding.")
    target = None
    if kind == "ImageNet class":
        top = _top5(spec.name, pic.sha256, size, pic.image)
        c1, c2 = st.columns([2, 3])
        c1.dataframe({"class": [t.name for t in top], "probability": [round(t.probability, 3) for t in top]},
                     hide_index=True)
        names = b.class_names or []
        idx = c2.selectbox("ImageNet class (default: the top prediction)", range(len(names)),
                           index=top[0].index, format_func=lambda i: f"{names[i]} ({i})",
                           key=f"sal_cls_{spec.name}_{pic.sha256[:12]}")
        target = CamTarget.imagenet_class(b, idx)
        key = _target_key(target)
    elif kind == "Dataset class prototype":
        protos = _prototypes(sel, -1, pic.sha256)
        if protos is None:
            return None
        ranking = protos.ranking(_tokens(spec.name, pic.sha256, size, -1, pic.image)[1])  # nearest first
        c1, c2 = st.columns([2, 3])
        c1.dataframe({"class prototype": [c for c, _ in ranking[:5]],
                      "cosine": [round(v, 3) for _, v in ranking[:5]]}, hide_index=True)
        c = c2.selectbox("Class prototype (default: the nearest)", [c for c, _ in ranking],
                         key=f"sal_proto_{spec.name}_{pic.sha256[:12]}_{sel.dataset_key}")
        target = CamTarget.similarity(f"prototype: {c}", protos.vectors[protos.index(c)])
        key = _target_key(target, sel.dataset_key)
        st.caption(f"Class means of the final embeddings of {sum(protos.counts)} dataset images "
                   f"({len(protos.classes)} classes); the explained picture is left out.")
    else:
        prompt = st.text_input("Text prompt", value="a photo of a bird", key=f"sal_text_{spec.name}")
        ref = b.encode_text([prompt])[0].float().numpy()
        target = CamTarget.similarity(f'text: "{prompt}"', ref)
        key = _target_key(target)
    st.session_state.setdefault("sal_target", {})[(spec.name, pic.sha256, size)] = (target, key)
    return target, key


def _saliency(method: str, target: CamTarget | None = None, target_key: str = "", params_key: str = "",
              **params) -> np.ndarray:
    """One registered method's map of the current picture (cached per method, parameters and target)."""
    return _map(spec.name, pic.sha256, size, method, params_key, target_key, pic.image, target, params)


def _warn_empty(name: str, m: np.ndarray) -> None:
    if float(m.max()) < 1e-6:
        st.warning(f"**{name}** is empty here: every channel's weighted activation is negative after its "
                   "weighting, so the ReLU removes everything (common for Grad-CAM++ on ViT LayerNorm outputs, "
                   "which it was not designed for). Try another method.")


# ---- the page ----------------------------------------------------------------------------------
sel = sidebar(PATCH_DEFAULT)
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
stem = f"{_stem(pic.name)}_{spec.name}_{size}"

tab_names = ["Attention", "Grad-CAM", "Prototype maps", "Faithfulness", "Report card"]
tabs = dict(zip(tab_names, st.tabs(tab_names, key="sal_tab", on_change="rerun",
                                   default="Attention" if spec.has_attention else "Grad-CAM")))

# -- attention -------------------------------------------------------------------------------------
with tabs["Attention"]:
    if tabs["Attention"].open:
        if not spec.has_attention:
            st.info(f"{spec.name} is a {spec.family.upper()}: it has no attention. Use the Grad-CAM or prototype maps.")
        else:
            cls = _cls_maps(spec.name, pic.sha256, size, pic.image)  # [L, H, h, w]
            L, H = cls.shape[:2]
            st.subheader("CLS → patch attention, every block and head")
            mode = st.radio("Colour scale", ["per tile", "per block", "one for all blocks"], horizontal=True,
                            key="sal_mosaic_scale", help="Per tile shows where each head looks; per block and "
                            "one scale for all also compare how strongly.")
            mosaic = _mosaic(spec.name, pic.sha256, size, alpha, cmap, mode, pic.image)
            st.image(mosaic)
            _download(mosaic, f"{stem}_attention_grid.png", key="dl_mosaic")
            left, right = st.columns(2)
            with left:
                st.subheader("Enlarge one")
                f1, f2 = st.columns(2)
                blk = f1.select_slider("Block", list(range(L)), value=L - 1, key="sal_blk")
                head = f2.selectbox("Head", ["mean of heads", *range(H)], key="sal_head")
                hsel = "mean" if head == "mean of heads" else int(head)
                m = _saliency(ATTENTION, params_key=f"{blk}:{hsel}", block=blk, head=hsel)  # [h, w]
                fig = render.heat_figure(pic.image, m, ColorScale(0.0, float(m.max()), cmap, "CLS attention weight"),
                                         alpha=alpha, title=f"block {blk}, {head if isinstance(head, str) else f'head {head}'}",
                                         max_side=BIG)
                st.image(fig)
                _download(fig, f"{stem}_attention_b{blk}_{head}.png", key="dl_att")
            with right:
                st.subheader("Attention rollout")
                f1, f2, f3 = st.columns(3)
                fusions = ["mean", "max", "min"]
                fusion = f1.selectbox("Head fusion", fusions, index=fusions.index(DEFAULT_ROLLOUT.head_fusion),
                                      key="sal_fusion")
                discard = f2.slider("Discard ratio", 0.0, 0.95, DEFAULT_ROLLOUT.discard_ratio, 0.05, key="sal_discard",
                                    help="Fraction of the weakest attention weights of each block set to 0.")
                start = f3.select_slider("Start block", list(range(L)), value=DEFAULT_ROLLOUT.start(L), key="sal_start",
                                         help="Rolling out from block 0 lets the few high-norm 'artifact' tokens of "
                                              "DINOv2 without registers dominate; later starts show the object.")
                rp = RolloutParams(fusion, discard, start)  # type: ignore[arg-type]
                ro = _saliency(ROLLOUT, params_key=repr(rp), params=rp)
                fig = render.heat_figure(pic.image, ro, ColorScale(0.0, 1.0, cmap, "rollout (min-max)"), alpha=alpha,
                                         title=f"rollout: {fusion}, discard {discard:.2f}, from block {start}",
                                         max_side=BIG)
                st.image(fig)
                st.caption("Abnar & Zuidema's rollout is mean fusion, discard 0, from block 0 (set those to "
                           "reproduce the paper); the defaults here (discard 0.9, from the middle block) follow the "
                           "vit-explain heuristic, which keeps DINOv2's artifact tokens out (docs/METHODS.md).")
                _download(fig, f"{stem}_rollout_{fusion}_{discard:.2f}_{start}.png", key="dl_roll")

# -- Grad-CAM family ---------------------------------------------------------------------------------
with tabs["Grad-CAM"]:
    if tabs["Grad-CAM"].open:
        methods = st.multiselect("Methods (pytorch-grad-cam)", list(CAM_METHODS),
                                 default=["Grad-CAM", "LayerCAM", "EigenCAM"], key="sal_methods",
                                 help="\n".join(f"- **{m.name}**: {m.summary}" for m in CAM_METHODS.values()))
        picked = _target_picker(sel, b, pic, size)
        if picked is not None and methods:
            target, tkey = picked
            maps = {m: _saliency(m, target, tkey) for m in methods}
            scale = ColorScale(0.0, 1.0, cmap, "CAM (each scaled to [0, 1])")
            panels = [render.heat_panel(pic.image, v, scale, alpha=alpha, title=k, max_side=PANEL) for k, v in maps.items()]
            st.image(render.row(panels, scale))
            st.caption(f"Target: **{target.label}**; target layer: `{', '.join(cam_layer_names(b))}` "
                       + (f"(patch tokens, prefix tokens dropped, reshaped to the {h}x{w} grid)." if spec.family != "cnn"
                          else f"(the {h}x{w} feature map)."))
            for k, v in maps.items():
                _warn_empty(k, v)
            cols = st.columns(len(maps) + 1)
            for col, (k, v) in zip(cols, maps.items()):
                with col:
                    _download(render.heat_figure(pic.image, v, scale, alpha=alpha, title=f"{k}: {target.label}"),
                              f"{stem}_{k}.png", label=k, key=f"dl_cam_{k}")
            with cols[-1]:
                _download(render.row(panels, scale), f"{stem}_cams.png", label="all", key="dl_cam_all")

# -- prototype maps ----------------------------------------------------------------------------------
with tabs["Prototype maps"]:
    if tabs["Prototype maps"].open:
        layer = b.resolve_layer(sel.layer)
        st.caption(f"Cosine similarity of every patch token of block {layer} (sidebar 'Layer') to the class means "
                   "of the dataset's global embeddings of the same block, for the class the nearest-mean classifier "
                   "picks (A) and the runner-up (B). A − B shows which parts pull the picture towards A. Training-free "
                   "(not ProtoPNet's learned part prototypes); on a ViT the class means are of the CLS token, "
                   "compared with patch tokens, a different token type (docs/METHODS.md).")
        protos = _prototypes(sel, layer, pic.sha256)
        if protos is not None:
            rank = protos.ranking(_tokens(spec.name, pic.sha256, size, layer, pic.image)[1])  # nearest first
            ca, cb = rank[0][0], rank[1][0]
            pkey = f"{layer}:{sel.dataset_key}"
            pm = {k: _saliency(k, params_key=pkey, prototypes=protos, layer=layer)
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
                _download(fig, f"{stem}_prototypes_b{layer}.png", key="dl_proto")

# -- faithfulness ------------------------------------------------------------------------------------
with tabs["Faithfulness"]:
    if tabs["Faithfulness"].open:
        chosen = st.session_state.get("sal_target", {}).get((spec.name, pic.sha256, size)) \
            or _default_target(sel, b, pic, size)
        if chosen is not None:
            target, tkey = chosen
            st.caption(f"Deletion: the most salient pixels of the {size}-px model input are replaced by a blurred "
                       f"copy, step by step; the curve is the target score (**{target.label}**, "
                       f"{'softmax probability' if target.kind == 'class' else 'cosine similarity'}) divided by its "
                       "value on the intact picture. A faithful map makes it fall fast (low AUC). Insertion restores "
                       "the pixels into the blurred picture (high AUC is good). The target is the one chosen on the "
                       "Grad-CAM tab.")
            candidates = [m.name for m in available_methods(spec)]
            default = ([ROLLOUT] if spec.has_attention else []) + ["Grad-CAM", "EigenCAM", RANDOM]
            picks = st.multiselect("Maps to compare", candidates, default=default, key="sal_faith_maps",
                                   help="Every method of the saliency table that runs on this backbone; attention "
                                        "is the mean of heads of the last block, rollout uses the default settings.")
            f1, f2 = st.columns(2)
            steps = f1.slider("Steps", 5, 20, 10, key="sal_faith_steps")
            baseline = f2.radio("Removed pixels become", ["blur", "zero", "mean"], horizontal=True, key="sal_faith_base")

            def get_map(k: str) -> tuple[np.ndarray, str]:
                """The map called ``k`` with its default settings and an id saying everything it depends on."""
                family = next(m.family for m in available_methods(spec) if m.name == k)
                if family == "cam":
                    return _saliency(k, target, tkey), f"{k}:{tkey}"
                if family == "prototype":
                    layer = b.resolve_layer(sel.layer)
                    protos = _prototypes(sel, layer, pic.sha256)
                    if protos is None:
                        st.stop()
                    pkey = f"{layer}:{sel.dataset_key}"
                    return _saliency(k, params_key=pkey, prototypes=protos, layer=layer), f"{k}:{pkey}"
                return _saliency(k), k

            if picks:
                maps = {k: get_map(k) for k in picks}  # name -> (map, id)
                scale = ColorScale(0.0, 1.0, cmap, "saliency (each scaled to [0, 1])")
                norm = {k: normalize01(v) for k, (v, _) in maps.items()}
                panels = [render.heat_panel(pic.image, v, scale, alpha=alpha, title=k, max_side=240) for k, v in norm.items()]
                row = render.row(panels, scale)
                st.image(row)
                _download(row, f"{stem}_compare.png", key="dl_compare")
                if st.toggle("Compute deletion / insertion scores", key="sal_faith_on",
                             help=f"About {2 * (steps + 1)} forward passes per map."):
                    try:
                        res = {k: _faith(spec.name, pic.sha256, size, maps[k][1], tkey, steps, baseline, pic.image, v, target)
                               for k, v in norm.items()}
                    except (ValueError, UnsupportedOperationError) as e:
                        st.error(f"Cannot score these maps: {e}")
                        st.stop()
                    st.dataframe({"map": list(res),
                                  "deletion AUC (lower is better)": [round(r["deletion_auc"], 3) for r in res.values()],
                                  "insertion AUC (higher is better)": [round(r["insertion_auc"], 3) for r in res.values()]},
                                 hide_index=True)
                    c1, c2 = st.columns(2)
                    for col, curve in ((c1, "deletion"), (c2, "insertion")):
                        fig = go.Figure([go.Scatter(x=r["fractions"], y=r[f"{curve}_curve"], mode="lines+markers", name=k)
                                         for k, r in res.items()])
                        fig.update_layout(title=f"{curve.capitalize()} curves", height=340,
                                          xaxis_title=f"fraction of pixels {'removed' if curve == 'deletion' else 'restored'}",
                                          yaxis_title="target score / intact score", margin=dict(t=40, b=40))
                        col.plotly_chart(fig, key=f"faith_{curve}")

# -- report card: sanity checks, faithfulness and localisation of every method -------------------------
with tabs["Report card"]:
    if tabs["Report card"].open:
        st.subheader("Does the map depend on the model? (model-parameter randomisation, this picture)")
        st.caption("The model is re-initialised from the top, one unit at a time (head, last block, …, stem), on a "
                   "copy; each map on the randomised copy is compared with the map on the trained model. A map that "
                   "explains the model loses its similarity as more of the model is randomised; the random control "
                   "keeps a correlation of 1 by construction (Adebayo et al. 2018).")
        runnable = [m.name for m in available_methods(spec) if m.family != "prototype"]
        default_sanity = ([ROLLOUT] if spec.has_attention else []) + ["Grad-CAM", RANDOM]
        sanity_methods = st.multiselect("Methods", runnable, default=default_sanity, key="sal_sanity_methods")
        chosen = st.session_state.get("sal_target", {}).get((spec.name, pic.sha256, size)) \
            or _default_target(sel, b, pic, size)
        if sanity_methods and chosen is not None and st.button("Run the cascade on this picture", key="sal_sanity_go"):
            target, tkey = chosen
            bar = st.progress(0.0, text="Randomising the model, one unit at a time…")
            curves = mprt([_input(spec.name, pic.sha256, size, pic.image)], sanity_methods, [target],
                          progress=lambda d, t: bar.progress(d / t, text=f"Randomised {d} of {t} units"))
            bar.empty()
            st.session_state["sal_sanity"] = ((spec.name, pic.sha256, size, tkey), curves)
        held = st.session_state.get("sal_sanity")
        if held is not None and held[0][:3] == (spec.name, pic.sha256, size):
            curves = held[1]
            c1, c2 = st.columns(2)
            for col, what in ((c1, "spearman"), (c2, "ssim")):
                fig = go.Figure([go.Scatter(x=c.depths, y=getattr(c, what), mode="lines+markers", name=k)
                                 for k, c in curves.items()])
                fig.update_layout(title=f"{'Spearman rank correlation' if what == 'spearman' else 'SSIM'} with the "
                                        "trained model's map", height=360, yaxis_title=what,
                                  xaxis_title="randomised down to (cumulative, from the top)", margin=dict(t=40, b=40))
                col.plotly_chart(fig, key=f"sanity_{what}")

        st.subheader(f"Report card: {spec.name}")
        st.caption("Every method of the saliency table on a small sample of the dataset (round robin over the "
                   "classes), each score as mean ± standard deviation over the images. mprt_spearman / mprt_ssim: "
                   "similarity to the map of the fully re-initialised model (lower is better); road (remove and "
                   "debias, higher is better); deletion AUC (lower is better) / insertion AUC (higher is better); "
                   "pointing game and relevance mass against the alpha channel (higher is better; images without "
                   "one are left out of those two). The same numbers as `backbone-lens saliency-report`.")
        n_sample = st.slider("Images in the sample", 1, 8, 1, key="sal_report_n",
                             help="About a minute per image on two CPU cores (ROAD's imputation and 22 forward passes "
                                  "per method).")
        report_key = (spec.name, sel.dataset_key, size, n_sample)
        memo = _report_memo()
        if report_key not in memo and st.button(f"Compute the report card on {n_sample} image(s)", key="sal_report_go"):
            bar = st.progress(0.0, text="Scoring every method…")
            try:
                memo[report_key] = saliency_report(
                    b, sel.dataset.records, settings=ReportSettings(size=size, limit=n_sample),
                    progress=lambda d, t, msg: bar.progress(d / t, text=f"{d} / {t}: {msg}"))
            except (ValueError, UnsupportedOperationError) as e:
                st.error(f"Cannot compute the report card: {e}")
                st.stop()
            bar.empty()
        card = memo.get(report_key)
        if card is not None:
            table = card.table()
            st.dataframe(table, hide_index=True, key="sal_report_table",
                         height=36 * (len(table["method"]) + 1) + 4)  # every method without scrolling
            st.caption(f"{len(card.images)} image(s) ({card.n_masks} with an object mask) at {card.size} px, "
                       f"{card.seconds:.0f} s: {', '.join(card.images)}. ROAD percentiles "
                       f"{list(card.settings.road_percentiles)}, deletion / insertion in {card.settings.deletion_steps} "
                       f"steps to a {card.settings.baseline} baseline."
                       + "".join(f" Skipped {m}: {why}." for m, why in card.skipped.items()))
            st.download_button("⬇ JSON", card.to_json(), f"saliency_report_{spec.name}_{size}.json", "application/json",
                               on_click="ignore", key="dl_report")
