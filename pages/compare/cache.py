"""Cached work of the Compare page, keyed by the backbones' names and the dataset's identity
(``Dataset.key``); the arrays themselves are not hashed."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import streamlit as st

from core.compare.agreement import shared_neighbours
from core.compare.cka import Kind
from core.compare.comparison import Comparison, build_comparison, cka_between, default_saliency, similarity_indices
from core.compare.indices import mutual_knn_overlap
from core.compare.layers import Pool, layer_features
from core.compare.speed import Speed, measure_speed
from core.explain.inputs import image_tokens
from core.io.images import thumbnail
from core.projection.projectors import ProjectionParams, project
from pages.shared.progress import reporter
from pages.shared.resources import get_backbone


@st.cache_resource
def process_memo() -> dict:
    """Per-process results that need a progress bar or a timer outside any cached function."""
    return {"speed": {}, "layers": OrderedDict()}


def speed(name: str, fs) -> Speed:
    """Speed from the extraction stats, else a short timed forward (once per backbone and size)."""
    memo = process_memo()["speed"]
    key = (name, fs.size)
    if key not in memo or (memo[key].source == "timed forward" and fs.stats.n_computed >= 8):
        with st.spinner(f"{name}: timing a forward pass…"):
            memo[key] = measure_speed(get_backbone(name), fs)
    return memo[key]


@st.cache_data(max_entries=8, show_spinner="Accuracies, few-shot draws, silhouettes, CKA…")
def comparison(names: tuple[str, ...], dataset_key: str, speeds_key: tuple, _fsets, _speeds) -> Comparison:
    return build_comparison([get_backbone(n) for n in names], _fsets, _speeds)


@st.cache_data(max_entries=16, show_spinner=False)
def cka(names: tuple[str, ...], dataset_key: str, kind: Kind, sigma: float, _fsets) -> np.ndarray:
    return cka_between(_fsets, kind, sigma)  # [B, B]


@st.cache_data(max_entries=8, show_spinner="Similarity indices: bootstrap and permutations…")
def indices(names: tuple[str, ...], dataset_key: str, k: int, _fsets) -> dict:
    return similarity_indices(_fsets, k=k)  # {index: IndexMatrix}


@st.cache_data(max_entries=16, show_spinner=False)
def overlap(a: str, b: str, dataset_key: str, k: int, _XA: np.ndarray, _XB: np.ndarray) -> np.ndarray:
    return mutual_knn_overlap(_XA, _XB, k)  # [N]


@st.cache_data(max_entries=64, show_spinner=False)
def shared(a: str, b: str, dataset_key: str, k: int, i: int, _XA: np.ndarray, _XB: np.ndarray):
    return shared_neighbours(_XA, _XB, i, k)


@st.cache_data(max_entries=16, show_spinner="Projecting…")
def projection(name: str, dataset_key: str, params: ProjectionParams, _X: np.ndarray) -> np.ndarray:
    return project(_X, params)  # [N, 2]


@st.cache_data(max_entries=32, show_spinner="Saliency…")
def saliency(name: str, sha: str, dataset_key: str, _img, _protos):
    return default_saliency(get_backbone(name), _img, prototypes=_protos)


@st.cache_data(max_entries=32, show_spinner="Patch tokens…")
def tokens(name: str, sha: str, _img) -> np.ndarray:
    b = get_backbone(name)
    return image_tokens(b, b.preprocess([_img]), -1)[0]  # [h, w, D] of the last block


@st.cache_data(max_entries=8, show_spinner=False)
def picture(sha: str, _record):
    return _record.decode()  # full resolution: the models see it as they saw the dataset


@st.cache_data(max_entries=512, show_spinner=False)
def thumb(sha: str, _record):
    return thumbnail(_record.decode(), 224)


def layers(sel, name: str, pool: Pool):
    """Every block of ``name`` on the dataset, with a progress bar; kept for the process (8 entries)."""
    memo = process_memo()["layers"]
    key = (name, sel.dataset_key, pool)
    if key not in memo:
        bar = st.progress(0.0, text=f"{name}: every block, one forward pass…")
        memo[key] = layer_features(get_backbone(name), sel.dataset.records, pool=pool,
                                   progress=reporter(bar, lambda d, t: f"{name}: every block, {d} / {t} images"))
        bar.empty()
        while len(memo) > 8:
            memo.popitem(last=False)
    memo.move_to_end(key)
    return memo[key]
