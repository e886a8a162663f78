"""What every page shares: the sidebar (dataset, backbone, input size, layer), cached models,
the feature store, and feature extraction with a progress bar. The only Streamlit glue module.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.errors import BackboneLensError, ImageDecodeError
from core.io.images import (
    Dataset,
    Failure,
    ImageRecord,
    TooManyFilesError,
    folder_signature,
    load_folder,
    load_uploads,
)
from core.io.imports import imported_root, list_imported
from core.io.policy import PolicyError, ServerPolicy
from core.io.store import FeatureStore
from core.models.base import Backbone
from core.models.extract import FeatureSet, extract_features
from core.models.layers import Layer
from core.models.registry import create_backbone, list_backbones

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_STAMPS = ROOT / "sample_data" / "stamps"
CLASS_DEFAULT = "mobilenetv2"        # default for class views (embeddings, prototypes)
PATCH_DEFAULT = "vits14_saliency"    # default for attention and patch views
log = logging.getLogger("backbone_lens")


def policy() -> ServerPolicy:
    """This server's rules (data roots, weights folders, limits), from the environment and the
    address it listens on; a setting that cannot be parsed stops the page with one line."""
    try:
        return ServerPolicy.from_env(server_address=st.get_option("server.address"))
    except PolicyError as e:
        st.error(f"Server setting: {e}")
        st.stop()


def one_line(e: BaseException) -> str:
    """An exception's message on one line (what the browser is shown; details go to the log)."""
    return " ".join(str(e).split()) or type(e).__name__


# ---- cached resources ----------------------------------------------------------------------------
class _ModelCache:
    """Loaded backbones, at most ``max_models`` (least recently used evicted); one load per name
    at a time, other names load in parallel."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.models: OrderedDict[str, Backbone] = OrderedDict()
        self.loading: dict[str, threading.Lock] = {}

    def get(self, name: str, max_models: int) -> Backbone:
        with self.lock:
            if name in self.models:
                self.models.move_to_end(name)
                return self.models[name]
            name_lock = self.loading.setdefault(name, threading.Lock())
        with name_lock:
            with self.lock:
                if name in self.models:
                    return self.models[name]
            with st.spinner(f"Loading the backbone {name}…"):
                b = create_backbone(name)
            with self.lock:
                self.models[name] = b
                while len(self.models) > max_models:
                    old, _ = self.models.popitem(last=False)
                    log.info("backbone %s unloaded (more than %d loaded)", old, max_models)
                self.loading.pop(name, None)
            return b


@st.cache_resource
def _models() -> _ModelCache:
    return _ModelCache()


def get_backbone(name: str) -> Backbone:
    """A loaded backbone, if this server's policy allows ``name`` (a checkpoint file only from the
    weights folders, hub and random-init models only where allowed).

    Raises:
        PolicyError: not allowed here.
        BackboneLensError: cannot be loaded.
    """
    pol = policy()
    registered = {e.name for e in list_backbones()}
    return _models().get(pol.check_backbone_name(name, registered), pol.limits.max_models)


@st.cache_resource
def get_store() -> FeatureStore:
    return FeatureStore()


class _BoundedMemo(OrderedDict):
    """A dict that keeps its ``limit`` most recently set entries."""

    limit = 32

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@st.cache_resource
def _feature_memo() -> dict:
    """Feature sets already assembled in this process (the FeatureStore is the durable cache);
    keyed by image content, labels *and* names, so no session sees another's file names."""
    return _BoundedMemo()


@st.cache_data(show_spinner="Reading the image folder…", max_entries=8)
def _load_folder_cached(path: str, signature: tuple[int, int], roots: tuple[str, ...], max_pixels: int,
                        max_file_bytes: int, max_files: int) -> Dataset:
    """The folder's dataset; ``signature`` (:func:`core.io.images.folder_signature`) is part of the
    key, so a file or class folder added while the server runs is seen on the next rerun."""
    pol = ServerPolicy(data_roots=tuple(Path(r) for r in roots))
    return load_folder(path, max_pixels=max_pixels, max_file_bytes=max_file_bytes, max_files=max_files,
                       within=pol.is_within_data_roots)


def load_data_folder(folder: Path, pol: ServerPolicy) -> Dataset:
    """A folder under the data roots as a dataset, with the server's limits."""
    lim = pol.limits
    return _load_folder_cached(str(folder), folder_signature(folder), tuple(map(str, pol.data_roots)),
                               lim.max_pixels, lim.max_file_bytes, lim.max_files)


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


_DATASET_KEYS = ("ds_source", "ds_pick", "ds_path")
SOURCES = ["Sample stamps", "Folder on server", "Uploads"]


def _restore_dataset_choice() -> None:
    """Streamlit resets a widget when another page runs without it (or with it under another id),
    so the dataset widgets' values live in plain keys (``_kept_<key>``, set by their on_change
    callbacks) and are put back before the widgets are drawn: the choice survives page changes."""
    ss = st.session_state
    for k in _DATASET_KEYS:
        if f"_kept_{k}" in ss:
            ss[k] = ss[f"_kept_{k}"]


def _keep(key: str) -> None:
    st.session_state[f"_kept_{key}"] = st.session_state.get(key)


def _remember_dataset_choice() -> None:
    """First run: the widgets' initial values become the kept ones."""
    ss = st.session_state
    for k in _DATASET_KEYS:
        if k in ss and f"_kept_{k}" not in ss:
            ss[f"_kept_{k}"] = ss[k]


def _add_uploads(files, label: str, pol: ServerPolicy) -> str | None:
    """Validate new uploads once (by content hash, per session) and add them; an error message
    when the batch would pass the file-count limit."""
    ss = st.session_state
    if len(ss.uploads) + len(files) > pol.limits.max_files:
        return (f"{len(ss.uploads) + len(files):,} images would pass this server's limit of {pol.limits.max_files:,} "
                "uploaded images (BACKBONE_LENS_MAX_FILES); clear some first.")
    for f in files:
        data = f.getvalue()
        sha, _ = _check_once(f.name, data, pol)
        ss.uploads.append((f.name, data, label, sha))
    return None


def _check_once(name: str, data: bytes, pol: ServerPolicy) -> tuple[str, str | None]:
    """``(sha256, failure reason or None)`` of uploaded bytes, decoded once per session and content."""
    checked: dict[str, str | None] = st.session_state.setdefault("_upload_checked", {})
    sha = hashlib.sha256(data).hexdigest()
    if sha not in checked:
        ds = load_uploads([(name, data)], max_pixels=pol.limits.max_pixels, max_file_bytes=pol.limits.max_file_bytes)
        checked[sha] = ds.failures[0].reason if ds.failures else None
    return sha, checked[sha]


def checked_uploads(files, label: str = "") -> Dataset:
    """Uploaded files (Streamlit ``UploadedFile``) as a dataset, each validated once per session
    (keyed by content hash, not decoded again on later reruns), with the server's limits.

    More files than the server allows stop the page with one line.
    """
    pol = policy()
    if len(files) > pol.limits.max_files:
        st.error(f"{len(files):,} files uploaded; the limit on this server is {pol.limits.max_files:,} "
                 "(BACKBONE_LENS_MAX_FILES): remove some.")
        st.stop()
    records, failures = [], []
    for f in files:
        data = f.getvalue()
        sha, reason = _check_once(f.name, data, pol)
        if reason is None:
            records.append(ImageRecord(sha256=sha, name=f.name, label=label, path=None, data=data))
        else:
            failures.append(Failure(f.name, reason))
    return Dataset(records, failures)


def _uploads_dataset() -> Dataset:
    """The session's uploads as a dataset, from the checks made when they were added (no decode)."""
    ss = st.session_state
    checked = ss.get("_upload_checked", {})
    records, failures = [], []
    for name, data, label, sha in ss.uploads:
        reason = checked.get(sha)
        if reason is None:
            records.append(ImageRecord(sha256=sha, name=name, label=label, path=None, data=data))
        else:
            failures.append(Failure(name, reason))
    return Dataset(records, failures)


def _folder_sidebar(pol: ServerPolicy) -> tuple[Dataset, str] | None:
    ss = st.session_state
    listed = pol.data_folders()
    folders = [str(f) for f in listed]
    short = {str(f): pol.display_name(f) for f in listed}
    if ss.get("ds_pick") not in (None, *folders):
        ss["ds_pick"] = ss["_kept_ds_pick"] = None  # the folder is gone
    pick = st.sidebar.selectbox("Folder", folders, index=None, key="ds_pick", format_func=lambda f: short.get(f, f),
                                on_change=_keep, args=("ds_pick",),
                                placeholder="Choose a folder under the data roots",
                                help="Folders under this server's data roots (root/<class>/<image>, or a flat folder).")
    typed = st.sidebar.text_input("…or type a path under the data roots", key="ds_path", on_change=_keep, args=("ds_path",),
                                  placeholder=str(pol.data_roots[-1]))
    text = (typed or "").strip() or pick
    if not text:
        st.sidebar.info("Choose a folder; showing the sample stamps meanwhile.")
        return None
    try:
        folder = pol.resolve_data_folder(text)
        return load_data_folder(folder, pol), str(folder)
    except (PolicyError, TooManyFilesError) as e:
        st.sidebar.error(one_line(e))
    except OSError as e:  # removed or unreadable since it was listed
        log.warning("cannot read the folder %s", text, exc_info=True)
        st.sidebar.error(f"Cannot read {text}: {e.strerror or one_line(e)}")
    return None


# ---- imported embedding sets and deep links (hooks) -----------------------------------------------
IMPORTED = "imported:"  # dataset radio value (and Selection.dataset_label) prefix of an imported set


@st.cache_data(max_entries=8, show_spinner=False)
def _imported_sets_in(root: str, mtime_ns: int) -> dict[str, int]:
    """Imported set name -> number of points under the imported-sets folder ``root``; ``mtime_ns``
    (the folder's) is part of the key: an import renames its set into place, so a set added, replaced
    or deleted while the app runs is listed on the next rerun."""
    return {s.name: s.n for s in list_imported(Path(root).parent)}


def _imported_sets() -> dict[str, int]:
    root = imported_root()
    return _imported_sets_in(str(root), root.stat().st_mtime_ns)


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
    for k in _DATASET_KEYS:  # what the link chose is the kept choice (see _restore_dataset_choice)
        if k in ss:
            ss[f"_kept_{k}"] = ss[k]
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
    ss.setdefault("uploads", [])  # list of (name, bytes, label, sha256)
    pol = policy()
    _restore_dataset_choice()
    sets = _imported_sets()
    options = SOURCES + [IMPORTED + name for name in sets]
    if ss.get("ds_source") not in options:
        ss.pop("ds_source", None)  # e.g. an imported set deleted meanwhile
    source = st.sidebar.radio(
        "Dataset", options, key="ds_source", on_change=_keep, args=("ds_source",),
        format_func=lambda o: f"{o[len(IMPORTED):]} · {sets.get(o[len(IMPORTED):], 0):,} imported points"
        if o.startswith(IMPORTED) else o,
        help="Sample stamps: 48 photos in 8 classes bundled with the app. Imported sets come from "
             "`backbone-lens import FILE` (embeddings made by any tool; shown on the Embeddings page).")
    if source.startswith(IMPORTED):
        _remember_dataset_choice()
        return Dataset(), source
    try:
        if source == "Folder on server":
            got = _folder_sidebar(pol)
            if got is not None:
                return got
        if source == "Uploads":
            with st.sidebar.form("upload_form", clear_on_submit=True):
                files = st.file_uploader("Images", accept_multiple_files=True, key="ds_files")
                label = st.text_input("Class name for this batch (optional)")
                if st.form_submit_button("Add to dataset") and files:
                    err = _add_uploads(files, label.strip(), pol)
                    if err:
                        st.sidebar.error(err)
            if ss.uploads:
                st.sidebar.caption(f"{len(ss.uploads)} uploaded images")
                if st.sidebar.button("Clear uploads"):
                    ss.uploads = []
                    st.rerun()
                return _uploads_dataset(), "uploads"
            st.sidebar.info("Upload images above; showing the sample stamps meanwhile.")
        return load_data_folder(SAMPLE_STAMPS.resolve(), pol), "sample stamps"
    finally:
        _remember_dataset_choice()


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
    pol = policy()
    with st.sidebar.expander("Other backbone (timm / open_clip / local file)"):
        if not pol.allow_any_model and not pol.weights_dirs:
            st.caption("This server loads only its built-in backbones.")
        else:
            st.text_input("Name", key="custom_name",
                          placeholder="timm/<arch>@<file in a weights folder>" if not pol.allow_any_model
                          else "timm/vit_base_patch16_224.augreg_in21k")
            st.button("Use it", on_click=_use_custom_backbone, args=(key,))
            if ss.get("_custom_error"):
                st.error(ss["_custom_error"])
    return name


def _use_custom_backbone(key: str) -> None:
    ss = st.session_state
    ss["_custom_error"] = None
    name = (ss.get("custom_name") or "").strip()
    if not name:
        return
    try:
        name = policy().check_backbone_name(name, {e.name for e in list_backbones()})
    except PolicyError as e:
        ss["_custom_error"] = one_line(e)
        return
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
    sizes = [spec.input_size] if spec.fixed_size else sorted(
        {spec.input_size, *(s for s in (224, 256, 320, 448) if s % spec.size_multiple == 0)})
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
    """The backbone, or one line in the page (details in the server log) and the page stops."""
    try:
        return get_backbone(name)
    except BackboneLensError as e:
        log.warning("cannot load backbone %s", name, exc_info=True)
        st.error(f"Cannot load backbone **{name}**: {one_line(e)}")
        st.stop()
    except Exception as e:  # a third-party loader's error (a checkpoint that does not fit, ...)
        log.exception("cannot load backbone %s", name)
        st.error(f"Cannot load backbone **{name}**: {type(e).__name__} (details in the server log)")
        st.stop()


# ---- features with a progress bar ---------------------------------------------------------------
def features(sel: Selection, kinds=("embedding",), backbone: str | None = None, dataset: Dataset | None = None,
             layer: Layer | int | None = None) -> FeatureSet:
    """Features of the selected dataset, from the in-process memo, else the FeatureStore, else
    extracted with a progress bar (images done / total and an ETA).

    Args:
        layer: the block (``Layer.DEFAULT``: each output's default block, ``Layer(i)`` or ``i``:
            block i, negative from the end); None = the sidebar's layer choice.
    """
    if sel.imported and dataset is None:
        st.info(f"**{sel.imported}** is an imported set of embeddings (no backbone to run): it is shown on "
                "the Embeddings page. Pick a dataset of images in the sidebar for this page.")
        st.stop()
    name = backbone or sel.backbone
    ds = dataset or sel.dataset
    layer = Layer.of(sel.layer) if layer is None else Layer.of(layer)
    b = load_backbone_or_stop(name)
    size = sel.size if name == sel.backbone else None
    key = (name, tuple(r.sha256 for r in ds.records), tuple(r.label for r in ds.records),
           tuple(r.name for r in ds.records), tuple(kinds), layer, size)
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
    image: Image.Image
    index: int | None


_DECODED_PER_SESSION = 4  # decoded pictures kept per session (an upload is decoded once, not per rerun)


def _decode_once(sha256: str, name: str, data_fn) -> Image.Image:
    """Decode ``data_fn()`` once per session and content hash (a small per-session LRU), with the
    server's pixel limit.

    Raises:
        ImageDecodeError / OSError: as :func:`core.io.images.decode_image` / reading the file.
    """
    from core.io.images import decode_image

    cache: OrderedDict = st.session_state.setdefault("_decoded", OrderedDict())
    if sha256 in cache:
        cache.move_to_end(sha256)
        return cache[sha256]
    img = decode_image(data_fn(), name, max_pixels=policy().limits.max_pixels)
    cache[sha256] = img
    while len(cache) > _DECODED_PER_SESSION:
        cache.popitem(last=False)
    return img


def pick_image(sel: Selection, key: str) -> PickedImage:
    """A dataset image (selectbox) or an uploaded one (its own uploader; the upload wins while present).
    Uploads are validated with :func:`core.io.images.decode_image`; a bad file stops the page with the
    file name and the reason."""
    from core.io.images import sha256_hex

    ds = sel.dataset
    c1, c2 = st.columns(2)
    up = c2.file_uploader("Upload an image", key=f"{key}_upload",
                          help="Any PNG, JPEG, BMP, GIF, TIFF, WebP or PPM picture; it replaces the dataset image while present.")
    if up is not None:
        data = up.getvalue()
        sha = sha256_hex(data)
        try:
            img = _decode_once(sha, up.name, lambda: data)
        except ImageDecodeError as e:
            st.error(f"Cannot use the uploaded file **{e.name}**: {e.reason}. Remove it to go back to the dataset images.")
            st.stop()
        c1.caption(f"Showing the upload **{up.name}** ({img.width}x{img.height}); remove it to pick a dataset image.")
        return PickedImage(up.name, sha, img, None)
    if not ds.records:
        st.info("The dataset is empty: pick another dataset in the sidebar or upload an image.")
        st.stop()
    names = [r.name for r in ds.records]
    i = c1.selectbox("Dataset image", range(len(names)), format_func=lambda i: names[i], key=f"{key}_pick")
    rec = ds.records[i]
    try:
        img = _decode_once(rec.sha256, rec.name, lambda: rec.read_bytes(policy().limits.max_file_bytes))
    except ImageDecodeError as e:
        st.error(f"Cannot read **{rec.name}**: {e.reason}")
        st.stop()
    except OSError as e:  # changed or removed since the dataset was listed
        st.error(f"Cannot read **{rec.name}**: {e.strerror or one_line(e)}")
        st.stop()
    return PickedImage(rec.name, rec.sha256, img, i)
