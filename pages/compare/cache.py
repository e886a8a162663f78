"""Cached work of the Compare page, keyed by the comparison's identity (``CmpContext.key``: each source's
vectors) and the parameters; the arrays themselves are not hashed. The long computations (metrics, CKA,
indices, every block of a backbone) run outside ``st.cache_*`` in a bounded per-process memo, so that
they can draw a progress bar with an ETA while they run."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from core.compare.agreement import AgreementMap, SharedNeighbours, agreement_map
from core.compare.cka import Kind, cka_matrix
from core.compare.comparison import Comparison, compare_sources, default_saliency
from core.compare.indices import IndexMatrix, index_matrices, index_names
from core.compare.layers import Pool, layer_features
from core.compare.sources import AlignedSources, EmbeddingSource, align_sources, imported_source
from core.compare.speed import Speed, measure_speed
from core.explain.inputs import image_tokens
from core.io.imports import ImportedSet
from core.projection.projectors import ProjectionParams, project
from pages.compare.context import CmpContext
from pages.shared.progress import eta_reporter
from pages.shared.resources import get_backbone

MEMO_ENTRIES = 8  # per kind of result in the process memo


@st.cache_resource
def process_memo() -> dict[str, Any]:
    """Per-process results that need a progress bar or a timer outside any cached function."""
    return {"speed": {}, "layers": OrderedDict(), "comparison": OrderedDict(), "cka": OrderedDict(),
            "indices": OrderedDict()}


def _with_progress(kind: str, key: tuple, compute: Callable[[Callable[..., None]], Any], text: Callable[..., str]):
    """``compute(progress)`` once per ``key`` in the process memo, with a progress bar (and an ETA) while it runs."""
    memo = process_memo()[kind]
    if key not in memo:
        bar = st.progress(0.0, text=text(0, 1, "starting"))
        memo[key] = compute(eta_reporter(bar, text))
        bar.empty()
        while len(memo) > MEMO_ENTRIES:
            memo.popitem(last=False)
    memo.move_to_end(key)
    return memo[key]


def comparison_key(sources: list[EmbeddingSource]) -> str:
    """The identity of a comparison: each source's vectors (a backbone's ``FeatureSet.key``, an imported set's
    version), in order."""
    ids = [s.features.key if s.features is not None else s.imported.fid if s.imported is not None else s.name
           for s in sources]
    return hashlib.blake2b("|".join(ids).encode(), digest_size=8).hexdigest()


# ---- sources --------------------------------------------------------------------------------------
def speed(name: str, fs) -> Speed:
    """Speed from the extraction stats, else a short timed forward (once per backbone and size)."""
    memo = process_memo()["speed"]
    key = (name, fs.size)
    if key not in memo or (memo[key].source == "timed forward" and fs.stats.n_computed >= 8):
        with st.spinner(f"{name}: timing a forward pass…"):
            memo[key] = measure_speed(get_backbone(name), fs)
    return memo[key]


@st.cache_resource(max_entries=8, show_spinner="Opening the imported set (its paths and digests)…")
def imported(fid: str, _s: ImportedSet) -> EmbeddingSource:
    """An imported set as a source (vectors memory-mapped; paths and sha256 read once per version of the set)."""
    return imported_source(_s)


@st.cache_resource(max_entries=8, show_spinner="Matching the sources' images…")
def aligned(key: str, min_shared: int, _sources: tuple[EmbeddingSource, ...]) -> AlignedSources:
    """The images every source holds (:func:`core.compare.sources.align_sources`; raises ValueError in one line)."""
    return align_sources(_sources, min_shared=min_shared)


# ---- the numbers ----------------------------------------------------------------------------------
def comparison(ctx: CmpContext) -> Comparison:
    """Metrics rows (accuracies, few-shot, silhouette), linear CKA and NMC agreement of every source on the
    shared images, with a progress bar naming the source being measured."""
    return _with_progress("comparison", (ctx.key,), lambda p: compare_sources(ctx.aligned, indices=(), progress=p),
                          lambda d, t, what: f"Metrics: {what} ({min(d + 1, t)} of {t} steps: NMC, k-NN and "
                                             "linear-probe accuracy, few-shot draws, silhouette)")


def cka(ctx: CmpContext, kind: Kind, sigma: float) -> np.ndarray:
    """``[B, B]`` CKA between the sources' vectors of the shared images."""
    return _with_progress("cka", (ctx.key, kind, sigma),
                          lambda p: cka_matrix(ctx.features, kind=kind, sigma_frac=sigma, progress=p),
                          lambda d, t, *_: f"{kind} CKA: {d} of {t} products")


def indices(ctx: CmpContext, k: int) -> dict[str, IndexMatrix]:
    """Every similarity index between every pair, with its bootstrap interval and permutation baseline."""
    names = index_names()
    return _with_progress("indices", (ctx.key, k),
                          lambda p: index_matrices(names, ctx.features, list(ctx.names), progress=p, k=k),
                          lambda d, t, *_: f"Similarity indices, bootstrap and permutations: {d} of {t} "
                                           f"(pair, index) estimates")


def layers(ctx: CmpContext, name: str, pool: Pool):
    """Every block of the backbone ``name`` on the shared images, with a progress bar."""
    records = ctx.records
    if records is None:
        raise ValueError("every source is an imported set: no images to run a model on")
    return _with_progress("layers", (name, ctx.key, pool),
                          lambda p: layer_features(get_backbone(name), records, pool=pool, progress=p),
                          lambda d, t, *_: f"{name}: every block, {d} / {t} images")


@st.cache_data(max_entries=16, show_spinner="Neighbours in both spaces…")
def agreement(key: str, a: str, b: str, k: int, _XA: np.ndarray, _XB: np.ndarray) -> AgreementMap:
    return agreement_map(_XA, _XB, k)


@st.cache_data(max_entries=64, show_spinner=False)
def shared(key: str, a: str, b: str, k: int, j: int, _am: AgreementMap, _XA: np.ndarray, _XB: np.ndarray) -> SharedNeighbours:
    return _am.neighbours(_XA, _XB, j)


@st.cache_data(max_entries=16, show_spinner="Projecting…")
def projection(key: str, name: str, n: int, params: ProjectionParams, _X: np.ndarray,
               _rows: np.ndarray | None = None) -> np.ndarray:
    """``[n, 2]`` map of the source ``name``'s vectors ``_X [M, D]`` of the shared images: all of them, or the
    ``n`` rows ``_rows`` (the agreement map's sample; taken here, so a cache hit copies nothing)."""
    X = _X if _rows is None else _X[_rows]
    return project(np.asarray(X, dtype=np.float32), params)


# ---- one picture through one backbone -------------------------------------------------------------
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
