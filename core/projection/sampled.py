"""Maps of very large sets: fit the projection on a sample, place every row with ``transform``.

PCA fitted on 50,000 random rows of a million gives the same axes as on all of them (to sampling
error), and UMAP of a million rows takes far longer than a page should wait; fitting on a sample
and placing the rest in blocks keeps memory at one block and reports progress per block.
The result can be cached as one ``[N, c]`` float32 ``.npy`` file.

Placing the rest of a UMAP: umap-learn's ``transform`` refines every new point with tens of
epochs of stochastic gradient descent (measured here: 450 points/s on a loaded 2-core machine, so
about 50 minutes for a million). ``place="neighbours"`` keeps only its first step: each new point
lands at the inverse-distance-weighted mean of the map positions of its ``k`` nearest sample points,
found exactly (one matrix product and a top-k per block) in the space the projector fitted in.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.cancel import CancelLike, raise_if_cancelled
from core.io.heal import move_aside, npy_header
from core.projection.projectors import ProjectionParams, make_projector

SAMPLE = {"pca": 50_000, "umap": 20_000, "tsne": 5_000}  # default fit-sample size per method
CHUNK = 65_536  # rows transformed per block
_PLACE_ROWS = 2_048  # new rows per [rows, sample] distance block in neighbour placement (160 MB at 20k)
ProgressFn = Callable[[int, int], None]  # (rows placed, rows total)


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n, size)`` distinct rows, drawn with ``seed``."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def project_sampled(X: np.ndarray, params: ProjectionParams, *, sample: int | None = None, chunk: int = CHUNK,
                    progress: ProgressFn | None = None, place: str = "transform", k: int = 10,
                    cancel: CancelLike | None = None) -> np.ndarray:
    """``[N, c]`` map of ``X [N, D]`` (any float dtype, e.g. a float16 memory map).

    The projector is fitted on ``sample`` rows (default :data:`SAMPLE` for the method; all rows when
    N is not larger) and the other rows are placed ``chunk`` rows at a time, with the projector's
    ``transform`` (``place="transform"``) or at the weighted mean of their ``k`` nearest sample
    points' positions (``place="neighbours"``, see the module docstring).

    ``cancel`` (:mod:`core.cancel`) is asked before the fit and before each block placed; the fit
    itself runs to its end (umap-learn and scikit-learn offer no way to stop one mid-call).

    Raises:
        Cancelled: ``cancel`` said stop.
    """
    raise_if_cancelled(cancel, f"{params.method} map cancelled before its fit")
    if place not in ("transform", "neighbours"):
        raise ValueError(f"place must be 'transform' or 'neighbours', got {place!r}")
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
    place_fn = proj.transform if place == "transform" else _neighbour_placer(proj, np.asarray(X[idx], np.float32), k,
                                                                             params.seed)
    for s in range(0, n, chunk):
        raise_if_cancelled(cancel, f"{params.method} map cancelled after placing {done:,} of {n:,} rows")
        rows = np.flatnonzero(rest[s:s + chunk]) + s
        if len(rows):
            out[rows] = place_fn(np.asarray(X[rows], dtype=np.float32))
            done += len(rows)
        if progress:
            progress(done, n)
    return out


def _neighbour_placer(proj, X_sample: np.ndarray, k: int, seed: int):
    """``f(X_new [m, D]) -> [m, c]``: inverse-distance-weighted mean of the fitted map positions of
    the ``k`` nearest sample rows, exact Euclidean distances in the projector's prepared space (for
    UMAP: unit rows reduced to 50 PCA dimensions), ``_PLACE_ROWS`` new rows at a time."""
    import torch

    S = torch.from_numpy(np.ascontiguousarray(proj._prepare(X_sample, fit=False), np.float32))  # [S, D']
    s2 = (S * S).sum(1)  # [S]
    Y = torch.from_numpy(proj.embedding_.astype(np.float64))  # [S, c]
    kk = min(k, len(S))

    def place(X_new: np.ndarray) -> np.ndarray:
        Z = torch.from_numpy(np.ascontiguousarray(proj._prepare(X_new, fit=False), np.float32))  # [m, D']
        out = np.empty((len(Z), Y.shape[1]), np.float32)
        for a in range(0, len(Z), _PLACE_ROWS):
            z = Z[a:a + _PLACE_ROWS]
            d2 = ((z * z).sum(1, keepdim=True) + s2[None, :] - 2.0 * (z @ S.T)).clamp_min_(0.0)  # [b, S]
            d2, nn = torch.topk(d2, kk, dim=1, largest=False)  # [b, k] nearest sample rows
            w = 1.0 / d2.double().sqrt().clamp_min(1e-12)
            w /= w.sum(1, keepdim=True)
            out[a:a + len(z)] = torch.einsum("bk,bkc->bc", w, Y[nn]).numpy()
        return out

    return place


def cached_projection(path: Path, X: np.ndarray, params: ProjectionParams, *, sample: int | None = None,
                      progress: ProgressFn | None = None, place: str = "transform",
                      cancel: CancelLike | None = None) -> np.ndarray:
    """:func:`project_sampled` read from ``path`` when present, else computed and saved there
    (written under a temporary name and renamed, so readers never see half a file). A cached file
    that is not the ``[N, c]`` float32 map of ``X`` (truncated, garbage, another shape, a folder) is
    moved aside with a warning and computed again. ``cancel``: as for :func:`project_sampled`
    (nothing is written then)."""
    if path.exists() or path.is_symlink():
        why = _map_problem(path, (X.shape[0], params.n_components))
        if why is None:
            return np.load(path)
        move_aside(path, "cached projection", why)
    out = project_sampled(X, params, sample=sample, progress=progress, place=place, cancel=cancel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out


def _map_problem(path: Path, shape: tuple[int, int]) -> str | None:
    """Why the cached map at ``path`` is not a ``shape`` float32 ``.npy``, or None."""
    if not path.is_file():
        return "not a regular file"
    try:
        got, dtype = npy_header(path)
    except (OSError, ValueError) as e:
        return f"not a whole .npy file ({e})"
    if got != shape or dtype != np.float32:
        return f"{dtype} {got} where the map is float32 {shape}"
    return None
