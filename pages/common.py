"""What every page shares: the sidebar (dataset, backbone, input size, layer), cached models,
the feature store, and feature extraction with a progress bar. The only Streamlit glue module.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.backbones.base import Backbone
from core.backbones.registry import create_backbone, list_backbones
from core.errors import BackboneLensError
from core.extract import FeatureSet, extract_features
from core.images import Dataset, load_folder, load_uploads
from core.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_STAMPS = ROOT / "sample_data" / "stamps"
CLASS_DEFAULT = "mobilenetv2"        # default for class views (embeddings, prototypes)
PATCH_DEFAULT = "vits14_saliency"    # default for attention and patch views


# ---- cached resources ----------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the backbone…")
def get_backbone(name: str) -> Backbone:
    """Models load once per server process."""
    return create_backbone(name)


@st.cache_resource
def get_store() -> FeatureStore:
    return FeatureStore()


@st.cache_resource
def _feature_memo() -> dict:
    """Feature sets already assembled in this process (the FeatureStore is the durable cache)."""
    return {}


@st.cache_data(show_spinner="Reading the image folder…", max_entries=8)
def _load_folder_cached(path: str, _mtime: float) -> Dataset:
    return load_folder(path)


def offline_backbone_names() -> list[str]:
    return [e.name for e in list_backbones() if e.offline and e.is_available()]


# ---- the sidebar ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    dataset: Dataset
    dataset_label: str
    backbone: str
    size: int | None
    layer: int | None

    @property
    def dataset_key(self) -> str:
        h = hashlib.sha256()
        for r in self.dataset.records:
            h.update(f"{r.sha256}|{r.label}|{r.name}\n".encode())
        return h.hexdigest()[:16]


def _dataset_sidebar() -> tuple[Dataset, str]:
    ss = st.session_state
    ss.setdefault("uploads", [])  # list of (name, bytes, label)
    source = st.sidebar.radio("Dataset", ["Sample stamps", "Folder on server", "Uploads"], key="ds_source",
                              help="Sample stamps: 48 photos in 8 classes bundled with the app.")
    if source == "Folder on server":
        path = st.sidebar.text_input("Folder path", key="ds_path", placeholder="/data/my_images (root/<class>/<image>)")
        if not path:
            st.sidebar.info("Type a folder path; showing the sample stamps meanwhile.")
        else:
            p = Path(path).expanduser()
            if not p.is_dir():
                st.sidebar.error(f"Not a folder: {p}")
            else:
                ds = _load_folder_cached(str(p), p.stat().st_mtime)
                return ds, str(p)
    if source == "Uploads":
        with st.sidebar.form("upload_form", clear_on_submit=True):
            files = st.file_uploader("Images", accept_multiple_files=True, key="ds_files")
            label = st.text_input("Class name for this batch (optional)")
            if st.form_submit_button("Add to dataset") and files:
                ss.uploads.extend((f.name, f.getvalue(), label.strip()) for f in files)
        if ss.uploads:
            st.sidebar.caption(f"{len(ss.uploads)} uploaded images")
            if st.sidebar.button("Clear uploads"):
                ss.uploads = []
                st.rerun()
            by_label: dict[str, list] = {}
            for name, data, label in ss.uploads:
                by_label.setdefault(label, []).append((name, data))
            parts = [load_uploads(files, label) for label, files in by_label.items()]
            ds = Dataset([r for p in parts for r in p.records], [f for p in parts for f in p.failures])
            return ds, "uploads"
        st.sidebar.info("Upload images above; showing the sample stamps meanwhile.")
    ds = _load_folder_cached(str(SAMPLE_STAMPS), SAMPLE_STAMPS.stat().st_mtime)
    return ds, "sample stamps"


def backbone_picker(page_default: str, *, key: str = "backbone") -> str:
    """A backbone selectbox whose choice survives page changes; before any choice, the page's
    own default is shown (MobileNetV2 for class views, the ViT for attention/patch views)."""
    ss = st.session_state
    names = offline_backbone_names()
    extra = [n for n in ss.get("custom_backbones", []) if n not in names]
    options = names + extra
    current = ss.get(f"chosen_{key}") or page_default
    if current not in options:
        options.append(current)

    def remember():
        ss[f"chosen_{key}"] = ss[f"_w_{key}_{page_default}"]

    name = st.sidebar.selectbox("Backbone", options, index=options.index(current), key=f"_w_{key}_{page_default}",
                                on_change=remember, help="Built-in offline backbones; add a timm/open_clip name below.")
    with st.sidebar.expander("Other backbone (timm / open_clip / local file)"):
        custom = st.text_input("Name", key="custom_name", placeholder="timm/vit_base_patch16_224.augreg_in21k")
        if st.button("Use it") and custom:
            ss.setdefault("custom_backbones", []).append(custom.strip())
            ss[f"chosen_{key}"] = custom.strip()
            st.rerun()
    return name


def sidebar(page_default: str) -> Selection:
    """Render the shared sidebar and return what is selected."""
    st.sidebar.header("Backbone Lens")
    ds, label = _dataset_sidebar()
    name = backbone_picker(page_default)
    backbone = load_backbone_or_stop(name)
    spec = backbone.spec
    sizes = [spec.input_size] if spec.fixed_size else sorted({spec.input_size, *(s for s in (224, 256, 320, 448) if s % spec.size_multiple == 0)})
    size = st.sidebar.selectbox("Input size (px)", sizes, index=sizes.index(spec.input_size), key=f"size_{name}",
                                help="Larger inputs give a finer patch grid (448 on the ViT: 32x32 patches).")
    layer_opts = ["default"] + list(range(spec.num_layers))
    layer = st.sidebar.selectbox("Layer", layer_opts, key=f"layer_{name}",
                                 help=f"Block for embeddings / patch tokens. Default: embedding from block "
                                      f"{backbone.resolve_layer(None)}, patch tokens from the last block.")
    if ds.failures:
        with st.sidebar.expander(f"⚠ {len(ds.failures)} files skipped"):
            for f in ds.failures:
                st.write(f"**{f.name}**: {f.reason}")
    return Selection(ds, label, name, size, None if layer == "default" else int(layer))


def load_backbone_or_stop(name: str) -> Backbone:
    try:
        return get_backbone(name)
    except BackboneLensError as e:
        st.error(f"Cannot load backbone **{name}**: {e}")
        st.stop()


# ---- features with a progress bar ---------------------------------------------------------------
def features(sel: Selection, kinds=("embedding",), backbone: str | None = None, dataset: Dataset | None = None,
             layer: int | None | str = "sel") -> FeatureSet:
    """Features of the selected dataset, from the in-process memo, else the FeatureStore, else
    extracted with a progress bar (images done / total and an ETA)."""
    name = backbone or sel.backbone
    ds = dataset or sel.dataset
    layer = sel.layer if layer == "sel" else layer
    b = load_backbone_or_stop(name)
    size = sel.size if name == sel.backbone else None
    key = (name, tuple(r.sha256 for r in ds.records), tuple(r.label for r in ds.records), tuple(kinds), layer, size)
    memo = _feature_memo()
    if key in memo:
        return memo[key]
    bar = st.progress(0.0, text=f"{name}: checking the feature cache…")
    t0 = time.perf_counter()
    start = {}

    def progress(done: int, total: int) -> None:
        if "n0" not in start:
            start["n0"], start["t"] = done, time.perf_counter()
        rate = (done - start["n0"]) / max(time.perf_counter() - start["t"], 1e-6)
        eta = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        bar.progress(done / max(total, 1), text=f"{name}: {done} / {total} images{eta}")

    fs = extract_features(b, ds.records, kinds=kinds, layer=layer, size=size, store=get_store(), progress=progress)
    bar.empty()
    if fs.stats.n_computed:
        st.toast(f"{name}: extracted {fs.stats.n_computed} images in {time.perf_counter() - t0:.1f} s")
    memo[key] = fs
    return fs


def show_failures(fs: FeatureSet) -> None:
    for f in fs.failures:
        st.warning(f"Skipped **{f.name}**: {f.reason}")
