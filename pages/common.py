"""What every page shares: the sidebar (dataset, backbone, input size, layer), cached models,
the feature store, and feature extraction with a progress bar. The only Streamlit glue module.
"""
from __future__ import annotations

import hashlib
import inspect
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.models.base import Backbone
from core.models.registry import create_backbone, list_backbones
from core.errors import BackboneLensError
from core.models.extract import FeatureSet, extract_features
from core.io.images import Dataset, load_folder, load_uploads
from core.io.imports import list_imported
from core.io.store import FeatureStore

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
    def imported(self) -> str | None:
        """The name of the imported embedding set shown, or None for a dataset of images."""
        return self.dataset_label[len(IMPORTED):] if self.dataset_label.startswith(IMPORTED) else None

    @property
    def dataset_key(self) -> str:
        h = hashlib.sha256()
        for r in self.dataset.records:
            h.update(f"{r.sha256}|{r.label}|{r.name}\n".encode())
        return h.hexdigest()[:16]


# ---- imported embedding sets and deep links (hooks) -----------------------------------------------
IMPORTED = "imported:"  # dataset radio value (and Selection.dataset_label) prefix of an imported set
_SOURCES = ["Sample stamps", "Folder on server", "Uploads"]


@st.cache_data(ttl=5, show_spinner=False)
def _imported_sets() -> dict[str, int]:
    """Imported set name -> number of points (re-listed every few seconds: `backbone-lens import`
    may add one while the app runs)."""
    return {s.name: s.n for s in list_imported()}


def _apply_link() -> None:
    """Once per session: a shared link's ``?dataset=NAME&backbone=NAME`` selects that dataset
    (``stamps``, ``uploads``, a folder path or an imported set's name) and backbone."""
    ss = st.session_state
    if ss.get("_link_applied"):
        return
    ss["_link_applied"] = True
    q = ss.pop("_link_params", None) or st.query_params.to_dict()
    ss["_link"] = q
    ds = q.get("dataset")
    if ds:
        if ds == "stamps":
            ss["ds_source"] = "Sample stamps"
        elif ds == "uploads":
            ss["ds_source"] = "Uploads"
        elif ds.startswith("/") or ds.startswith("~"):
            ss["ds_source"], ss["ds_path"] = "Folder on server", ds
        elif ds in _imported_sets():
            ss["ds_source"] = IMPORTED + ds
        else:
            ss["_link_problem"] = f"The link's dataset **{ds}** is not here (no such imported set or folder)."
    if q.get("backbone") and not (ds and ss.get("ds_source", "").startswith(IMPORTED)):
        choose_backbone(q["backbone"])


def link_param(name: str) -> str | None:
    """A parameter of the link this session was opened with (pages use it for their own
    main parameters, e.g. ``?method=umap`` on Embeddings), or None."""
    return st.session_state.get("_link", {}).get(name)


def _write_link(dataset_label: str, backbone: str | None) -> None:
    """Keep ``?dataset=...&backbone=...`` in the address bar in step with the sidebar."""
    ds = {"sample stamps": "stamps", "uploads": "uploads"}.get(dataset_label, dataset_label)
    ds = ds[len(IMPORTED):] if ds.startswith(IMPORTED) else ds
    want = {"dataset": ds, **({"backbone": backbone} if backbone else {})}
    if any(st.query_params.get(k) != v for k, v in want.items()):
        st.query_params.update(want)
    if not backbone and "backbone" in st.query_params:
        del st.query_params["backbone"]


def _dataset_sidebar() -> tuple[Dataset, str]:
    ss = st.session_state
    ss.setdefault("uploads", [])  # list of (name, bytes, label)
    sets = _imported_sets()
    options = _SOURCES + [IMPORTED + name for name in sets]
    if ss.get("ds_source") not in options:
        ss.pop("ds_source", None)  # e.g. an imported set deleted meanwhile
    source = st.sidebar.radio(
        "Dataset", options, key="ds_source",
        format_func=lambda o: f"{o[len(IMPORTED):]} · {sets.get(o[len(IMPORTED):], 0):,} imported points"
        if o.startswith(IMPORTED) else o,
        help="Sample stamps: 48 photos in 8 classes bundled with the app. Imported sets come from "
             "`backbone-lens import FILE` (embeddings made by any tool; shown on the Embeddings page).")
    if source.startswith(IMPORTED):
        return Dataset(), source
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
        st.text_input("Name", key="custom_name", placeholder="timm/vit_base_patch16_224.augreg_in21k")
        st.button("Use it", on_click=_use_custom_backbone, args=(key,))
    return name


def _use_custom_backbone(key: str) -> None:
    name = (st.session_state.get("custom_name") or "").strip()
    if name:
        choose_backbone(name, key=key)


def choose_backbone(name: str, *, key: str = "backbone") -> None:
    """Make ``name`` the sidebar's backbone (added to the list if needed).

    Use it as a widget callback (``st.button(..., on_click=choose_backbone, args=(name,))``): it
    sets the backbone selectboxes' own state, which Streamlit allows only before they are drawn;
    setting ``index=`` alone would leave the browser showing the previous backbone."""
    ss = st.session_state
    if name not in ss.setdefault("custom_backbones", []):
        ss["custom_backbones"].append(name)
    ss[f"chosen_{key}"] = name
    for k in [k for k in ss if str(k).startswith(f"_w_{key}_")]:
        ss[k] = name


def _ensure_app_shell() -> None:
    """Route a deep link through app.py on a fresh server.

    Until app.py has called ``st.navigation`` once in a server process, Streamlit treats a
    folder named ``pages/`` as an old-style multipage app and runs ``/embeddings`` straight from
    ``pages/embeddings.py``, without the shell (wrong page list, narrow layout). Then we remember
    the page, start from app.py, and app.py switches back to it.
    """
    ctx = get_script_run_ctx()
    if ctx is None or Path(ctx.main_script_path).name != "app.py" or st.session_state.get("_shell"):
        return
    page_file = Path(inspect.stack()[2].filename).resolve()
    st.session_state["_deep_link"] = page_file.relative_to(ROOT).as_posix()
    st.session_state["_link_params"] = st.query_params.to_dict()  # switch_page drops them
    st.switch_page("app.py")


def sidebar(page_default: str) -> Selection:
    """Render the shared sidebar and return what is selected."""
    _ensure_app_shell()
    _apply_link()
    st.sidebar.header("Backbone Lens")
    if st.session_state.get("_link_problem"):
        st.sidebar.warning(st.session_state["_link_problem"])
    ds, label = _dataset_sidebar()
    if label.startswith(IMPORTED):  # embeddings made elsewhere: no backbone to pick or load
        st.sidebar.caption("Imported embeddings: the vectors were made by another tool, so the backbone, "
                           "input size and layer are fixed by that file.")
        _write_link(label, None)
        return Selection(ds, label, "imported", None, None)
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
        n = len(ds.failures)
        with st.sidebar.expander(f"{n} file{'' if n == 1 else 's'} skipped", icon=":material/warning:"):
            for f in ds.failures:
                st.write(f"**{f.name}**: {f.reason}")
    _write_link(label, name)
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
    if sel.imported and dataset is None:
        st.info(f"**{sel.imported}** is an imported set of embeddings (no backbone to run): it is shown on "
                "the Embeddings page. Pick a dataset of images in the sidebar for this page.")
        st.stop()
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


# ---- one image to explain: from the dataset or uploaded ------------------------------------------
@dataclass(frozen=True)
class PickedImage:
    """The image a page explains.

    Attributes:
        name: file name (dataset path or upload name).
        sha256: of the file's bytes (cache key).
        image: decoded RGB picture.
        index: position in the selected dataset, or None for an upload (so class means can leave it out).
    """

    name: str
    sha256: str
    image: "Image.Image"
    index: int | None


@st.cache_data(max_entries=16, show_spinner=False)
def _decode_cached(sha256: str, name: str, _data: bytes):
    from core.io.images import decode_image

    return decode_image(_data, name)


def pick_image(sel: Selection, key: str) -> PickedImage:
    """A dataset image (selectbox) or an uploaded one (its own uploader; the upload wins while present).
    Uploads are validated with :func:`core.io.images.decode_image`; a bad file stops the page with the
    file name and the reason."""
    from core.errors import ImageDecodeError
    from core.io.images import sha256_hex

    ds = sel.dataset
    c1, c2 = st.columns(2)
    up = c2.file_uploader("Upload an image", key=f"{key}_upload",
                          help="Any PNG, JPEG, BMP, GIF, TIFF, WebP or PPM picture; it replaces the dataset image while present.")
    if up is not None:
        data = up.getvalue()
        try:
            img = _decode_cached(sha256_hex(data), up.name, data)
        except ImageDecodeError as e:
            st.error(f"Cannot use the uploaded file **{e.name}**: {e.reason}. Remove it to go back to the dataset images.")
            st.stop()
        c1.caption(f"Showing the upload **{up.name}** ({img.width}x{img.height}); remove it to pick a dataset image.")
        return PickedImage(up.name, sha256_hex(data), img, None)
    if not ds.records:
        st.info("The dataset is empty: pick another dataset in the sidebar or upload an image.")
        st.stop()
    names = [r.name for r in ds.records]
    i = c1.selectbox("Dataset image", range(len(names)), format_func=lambda i: names[i], key=f"{key}_pick")
    rec = ds.records[i]
    try:
        img = _decode_cached(rec.sha256, rec.name, rec.read_bytes())
    except (ImageDecodeError, OSError) as e:  # changed or removed since the dataset was listed
        st.error(f"Cannot read **{rec.name}**: {getattr(e, 'reason', e)}")
        st.stop()
    return PickedImage(rec.name, rec.sha256, img, i)
