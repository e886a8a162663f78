"""Vectors and distances shared by every numeric view: input checks for feature matrices, L2
normalisation and pairwise distances (cosine / Euclidean)."""
from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

Metric = Literal["cosine", "euclidean"]
METRICS: tuple[str, ...] = ("cosine", "euclidean")


ROW_BLOCK = 8_192  # rows per block where a float64 copy of [N, D] would be gigabytes


def l2_normalize(x: ArrayLike, eps: float = 1e-12, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Unit-normalise the last axis; rows of norm below ``eps`` stay ~0.

    Args:
        x: ``[..., D]``.
        eps: floor of the norm.
        dtype: the precision of the computation and the result (float64 by default: stable cosines;
            float32 where a caller keeps float32 features, e.g. the projections).
    """
    a = np.asarray(x, dtype=dtype)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), eps)


# ---- input checks ----------------------------------------------------------------------------------
def as_features(X: ArrayLike, name: str = "X") -> np.ndarray:
    """Validate a feature matrix ``[N, D]`` (finite, numeric, non-empty)."""
    a = np.asarray(X)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D feature array [N, D], got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); it needs at least one row and one feature")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if not all_finite(a):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def all_finite(a: np.ndarray) -> bool:
    """No NaN or inf in ``a``, checked :data:`ROW_BLOCK` rows at a time (a memory-mapped ``[N, D]`` set
    never gets an ``[N, D]`` mask)."""
    if a.ndim < 2 or len(a) <= ROW_BLOCK:
        return bool(np.all(np.isfinite(a)))
    return all(bool(np.all(np.isfinite(a[s:s + ROW_BLOCK]))) for s in range(0, len(a), ROW_BLOCK))


def as_labels(y: ArrayLike, n: int, name: str = "y") -> np.ndarray:
    """Validate labels ``[N]`` matching ``n`` feature rows."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D label array [N], got shape {a.shape}")
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} labels but the features have {n} rows")
    return a


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")


# ---- prototypes and distances -----------------------------------------------------------------------
def distances(A: ArrayLike, B: ArrayLike, metric: Metric = "cosine") -> np.ndarray:
    """Pairwise distances between rows, computed in float64.

    Args:
        A: ``[N, D]``.
        B: ``[K, D]`` (e.g. prototypes).
        metric: ``"cosine"`` (``1 - cos``, in ``[0, 2]``) or ``"euclidean"``.

    Returns:
        ``[N, K]`` float64 distances.
    """
    check_metric(metric)
    A, B = as_features(A, "A"), as_features(B, "B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"feature dims differ: A has D={A.shape[1]}, B has D={B.shape[1]}")
    out = np.empty((len(A), len(B)))  # [N, K]
    if metric == "cosine":
        Bn = l2_normalize(B)
        for s in range(0, len(A), ROW_BLOCK):  # float64 copies of one block of rows at a time
            out[s:s + ROW_BLOCK] = 1.0 - l2_normalize(A[s:s + ROW_BLOCK]) @ Bn.T
        return out
    B64 = B.astype(np.float64)
    bb = (B64 * B64).sum(1)[None, :]  # [1, K]
    for s in range(0, len(A), ROW_BLOCK):
        a = A[s:s + ROW_BLOCK].astype(np.float64)
        sq = (a * a).sum(1)[:, None] + bb - 2.0 * (a @ B64.T)  # [n, K]
        out[s:s + ROW_BLOCK] = np.sqrt(np.maximum(sq, 0.0))
    return out


def work_dtype(*arrays: np.ndarray) -> np.dtype:
    """The precision of a product over dataset-sized features: float32 when every operand is float32 or
    float16 (embeddings as stored, or an imported set's float16 memory map, whose values and pairwise
    products float32 holds exactly: twice the speed, half the memory; callers accumulate each row
    block's result in float64), else float64."""
    return np.dtype(np.float32 if all(a.dtype in (np.float32, np.float16) for a in arrays) else np.float64)


def centred_product(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``(A - mean A)^T (B - mean B)`` ``[D1, D2]`` for ``A [N, D1]``, ``B [N, D2]`` (the same N rows):
    each block of :data:`ROW_BLOCK` rows is centred and multiplied in :func:`work_dtype` and summed in
    float64, so no centred or float64 copy of the whole set is made. ``B is A`` gives the symmetric
    ``A_c^T A_c`` (one product per block)."""
    dt = work_dtype(A, B)
    ma, mb = A.mean(axis=0, dtype=np.float64), B.mean(axis=0, dtype=np.float64)
    out = np.zeros((A.shape[1], B.shape[1]))
    for s in range(0, len(A), ROW_BLOCK):
        a = (A[s:s + ROW_BLOCK] - ma).astype(dt)
        out += a.T @ (a if B is A else (B[s:s + ROW_BLOCK] - mb).astype(dt))
    return out


def class_sums(X: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """``[k, D]`` float64 sum of the rows of ``X [N, D]`` of each class code ``0..k-1`` (``codes [N]``):
    a one-hot ``[k, n]`` product per block of rows (``np.add.at`` takes minutes at 100,000 x 1280)."""
    sums = np.zeros((k, X.shape[1]))
    for s in range(0, len(X), ROW_BLOCK):
        c = codes[s:s + ROW_BLOCK]
        onehot = np.zeros((k, len(c)))
        onehot[c, np.arange(len(c))] = 1.0
        sums += onehot @ X[s:s + ROW_BLOCK].astype(np.float64)
    return sums
