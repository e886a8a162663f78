"""Maps of very large sets: fit the projection on a sample, place every row with ``transform``.

PCA fitted on 50,000 random rows of a million gives the same axes as on all of them (to sampling
error), and UMAP of a million rows takes far longer than a page should wait; fitting on a sample
and transforming the rest in blocks keeps memory at one block and reports progress per block.
The result can be cached as one ``[N, c]`` float32 ``.npy`` file.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.projection.projectors import ProjectionParams, make_projector

SAMPLE = {"pca": 50_000, "umap": 20_000, "tsne": 5_000}  # default fit-sample size per method
CHUNK = 65_536  # rows transformed per block
ProgressFn = Callable[[int, int], None]  # (rows placed, rows total)


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n, size)`` distinct rows, drawn with ``seed``."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def project_sampled(X: np.ndarray, params: ProjectionParams, *, sample: int | None = None, chunk: int = CHUNK,
                    progress: ProgressFn | None = None) -> np.ndarray:
    """``[N, c]`` map of ``X [N, D]`` (any float dtype, e.g. a float16 memory map).

    The projector is fitted on ``sample`` rows (default :data:`SAMPLE` for the method; all rows when
    N is not larger) and the other rows are placed with its ``transform``, ``chunk`` rows at a time.
    """
    n = X.shape[0]
    size = SAMPLE[params.method] if sample is None else sample
    idx = sample_rows(n, size, params.seed)
    proj = make_projector(params).fit(np.asarray(X[idx], dtype=np.float32))
    if len(idx) == n:
        if progress:
            progress(n, n)
        return proj.embedding_
    out = np.empty((n, params.n_components), np.float32)
    out[idx] = proj.embedding_
    rest = np.ones(n, bool)
    rest[idx] = False
    done = len(idx)
    for s in range(0, n, chunk):
        rows = np.flatnonzero(rest[s:s + chunk]) + s
        if len(rows):
            out[rows] = proj.transform(np.asarray(X[rows], dtype=np.float32))
            done += len(rows)
        if progress:
            progress(done, n)
    return out


def cached_projection(path: Path, X: np.ndarray, params: ProjectionParams, *, sample: int | None = None,
                      progress: ProgressFn | None = None) -> np.ndarray:
    """:func:`project_sampled` read from ``path`` when present, else computed and saved there
    (written under a temporary name and renamed, so readers never see half a file)."""
    if path.is_file():
        return np.load(path)
    out = project_sampled(X, params, sample=sample, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out
