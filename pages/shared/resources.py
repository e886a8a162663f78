"""Shared resources of the server process: loaded backbones (bounded, least recently used evicted),
the feature store, a bounded memo of assembled feature sets, and features with a progress bar."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import NoReturn

import streamlit as st

from core.errors import BackboneLensError
from core.io.images import Dataset
from core.io.imports import MODEL_ONLY_VIEWS
from core.io.store import FeatureStore
from core.models.base import Backbone
from core.models.extract import FeatureSet, cached_count, extract_features
from core.models.layers import Layer
from core.models.registry import create_backbone, list_backbones
from pages.shared import jobs
from pages.shared.selection import Selection
from pages.shared.server import log, one_line, policy, stop_on_cache_error


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


def offline_backbone_names() -> list[str]:
    return [e.name for e in list_backbones() if e.offline and e.is_available()]


@st.cache_resource
def get_store() -> FeatureStore:
    return FeatureStore()


class BoundedMemo(OrderedDict):
    """A dict that keeps its ``limit`` most recently set entries."""

    limit = 32

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@st.cache_resource
def _feature_memo() -> BoundedMemo:
    """Feature sets already assembled in this process (the FeatureStore is the durable cache);
    keyed by the dataset's identity (content, labels *and* names), so no session sees another's
    file names."""
    return BoundedMemo()


def features(sel: Selection, kinds: tuple[str, ...] = ("embedding",), backbone: str | None = None,
             dataset: Dataset | None = None, layer: Layer | int | None = None) -> FeatureSet:
    """Features of the selected dataset, from the in-process memo, else the FeatureStore, else
    extracted with a progress bar (images done / total and an ETA).

    Args:
        backbone: another backbone than the sidebar's (it runs at its own default size).
        dataset: other images than the sidebar's (e.g. uploads).
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
    key = (name, ds.key, tuple(kinds), layer, size)
    memo = _feature_memo()
    if key in memo:
        return memo[key]
    job = ("extract", *key)
    jobs.wait_for_previous_run(job)  # a click during an extraction: its batch is then counted or read back
    if jobs.cancelled(job):
        _show_cancelled(job, b, name, ds, kinds, layer, size)
    with jobs.script_job(job):
        fs = _extract(b, name, ds, kinds, layer, size, job)
    memo[key] = fs
    return fs


def _extract(b: Backbone, name: str, ds: Dataset, kinds: tuple[str, ...], layer: Layer, size: int | None,
             job: tuple) -> FeatureSet:
    """``extract_features`` into the store with a progress bar and a Cancel button."""
    box = st.empty()
    with box.container():
        bar = st.progress(0.0, text=f"{name}: checking the feature cache…")
        button = st.empty()
    t0 = time.perf_counter()
    start: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        if "n0" not in start:
            start["n0"], start["t"] = done, time.perf_counter()
            if done < total:  # something to compute: it can be stopped (a click reruns the page; Streamlit
                # stops this run at its next progress update, after the batch being computed is written)
                with button:
                    jobs.cancel_button(job, help="Stop after the batch being computed: the images done so far "
                                                 "stay in the feature cache and are not computed again.")
        rate = (done - start["n0"]) / max(time.perf_counter() - start["t"], 1e-6)
        eta = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        bar.progress(done / max(total, 1), text=f"{name}: {done} / {total} images{eta}")

    with stop_on_cache_error():
        fs = extract_features(b, ds.records, kinds=kinds, layer=layer, size=size, store=get_store(),
                              progress=progress)
    box.empty()
    if fs.stats.n_computed:
        st.toast(f"{name}: extracted {fs.stats.n_computed} images in {time.perf_counter() - t0:.1f} s")
    return fs


def stop_if_imported(sel: Selection, view: str, title: str) -> None:
    """On an imported set (vectors, no model): the page's title and one sentence on why ``view`` (a key of
    :data:`core.io.imports.MODEL_ONLY_VIEWS`) needs the model, then the page stops."""
    if sel.imported:
        st.title(title)
        st.info(f"**{sel.imported}** is an imported set of embeddings. {MODEL_ONLY_VIEWS[view]} The Embeddings, "
                "Prototypes and Compare pages work on its vectors.", icon=":material/info:")
        st.stop()


def _show_cancelled(job: tuple, b: Backbone, name: str, ds: Dataset, kinds: tuple[str, ...], layer: Layer,
                    size: int | None) -> NoReturn:
    """What a cancelled extraction kept, a Resume button, and the page stops."""
    with stop_on_cache_error():
        n = cached_count(b, ds.records, get_store(), kinds=kinds, layer=layer, size=size)
    total = len(ds.records)
    st.info(f"Cancelled: {n:,} of {total:,} images cached ({name}). Resume computes the other "
            f"{total - n:,}; the cached ones are not computed again.", icon=":material/pause_circle:")
    jobs.resume_button(job, help="Extract the remaining images (the cached ones are read back).")
    st.stop()


def show_failures(fs: FeatureSet) -> None:
    for f in fs.failures:
        st.warning(f"Skipped **{f.name}**: {f.reason}")
