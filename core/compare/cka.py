"""Centered kernel alignment (Kornblith et al., 2019) between representations of the same N inputs.

A representation is ``[N, D]`` (one row per image, same image order everywhere); pool or flatten
patch tokens before calling. Inputs may be numpy arrays or CPU torch tensors. Linear CKA in feature
space sums ``[D1, D2]`` products over row blocks in float64, each block multiplied in float32 when
both representations are float32 (embeddings as stored; :func:`core.geometry.vectors.centred_product`);
every other computation (Grams, RBF kernels, minibatches) runs in float64.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from core.geometry.vectors import all_finite, centred_product

Kind = Literal["linear", "rbf"]
_EPS = 1e-12
RBF_MAX_N = 3_000        # RBF CKA builds [n, n] Grams: above this many inputs it uses a seeded sample of n
LAYER_FULL_MAX_N = 2_048  # layer-by-layer CKA above this: the minibatch estimator (Nguyen et al., 2021)
MINIBATCH = 1_024        # inputs per minibatch
MAX_MINIBATCHES = 16     # minibatches averaged (16 x 1,024 = 16,384 inputs)


def rbf_sample_size(n: int) -> int:
    """How many of ``n`` inputs RBF CKA uses (state it in a caption)."""
    return min(n, RBF_MAX_N)


def layer_cka_sample_size(n: int) -> int:
    """How many of ``n`` inputs layer-by-layer CKA uses (all up to LAYER_FULL_MAX_N, else the minibatches')."""
    return n if n <= LAYER_FULL_MAX_N else min(n - n % MINIBATCH, MINIBATCH * MAX_MINIBATCHES)


def _sample(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted rows of a seeded sample of ``size`` of ``n`` inputs (all when ``size >= n``); the same
    rows for every representation, so CKA still compares the same inputs."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _as_features(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """``x`` as a checked float64 ``[N, D]`` array."""
    return _checked(x, name).astype(np.float64, copy=False)


def _checked(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """``x`` as a checked ``[N, D]`` array, float32 and float16 kept as they are (no copy: an imported
    set's memory map is read block by block), anything else float64."""
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float16):
        a = a.astype(np.float64, copy=False)
    if a.ndim != 2:
        raise ValueError(f"{name} must be [N, D] (pool or flatten tokens first), got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 examples for CKA, got {a.shape[0]}")
    if not all_finite(a):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _check_same_n(X: np.ndarray, Y: np.ndarray) -> None:
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} examples but Y has {Y.shape[0]}; CKA compares the same inputs")


def linear_cka(X: np.ndarray | torch.Tensor, Y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA: ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred features.

    Args:
        X: ``[N, D1]``.
        Y: ``[N, D2]``.

    Returns:
        similarity in ``[0, 1]``; invariant to orthogonal transforms and isotropic scaling.
    """
    X, Y = _checked(X, "X"), _checked(Y, "Y")
    _check_same_n(X, Y)
    if X.shape[0] < max(X.shape[1], Y.shape[1]):
        # Gram form is cheaper when N < D: ||Y^T X||_F^2 = <X X^T, Y Y^T>_F
        return _cka_from_centered_grams(_centered_gram(X.astype(np.float64), "linear", 0.0),
                                        _centered_gram(Y.astype(np.float64), "linear", 0.0))
    return _linear_cka_from(_self_norm(X), _self_norm(Y), float(np.sum(centred_product(Y, X) ** 2)))


def _self_norm(X: np.ndarray) -> float:
    """``||X_c^T X_c||_F`` of the column-centred ``X``."""
    return float(np.linalg.norm(centred_product(X, X)))


def _linear_cka_from(nx: float, ny: float, hsic: float) -> float:
    """``hsic / (nx ny)``: ``||Y_c^T X_c||_F^2`` over the two self norms (:func:`_self_norm`)."""
    if nx < _EPS or ny < _EPS:
        raise ValueError("CKA is undefined for a constant representation (all rows equal)")
    return float(hsic / (nx * ny))


def _center_gram(K: np.ndarray) -> np.ndarray:
    """``H K H`` with ``H = I - 11^T / N``."""
    return K - K.mean(axis=0, keepdims=True) - K.mean(axis=1, keepdims=True) + K.mean()


def _rbf_gram(X: np.ndarray, sigma_frac: float) -> np.ndarray:
    """RBF Gram ``[N, N]`` with ``sigma = sigma_frac * median`` of the off-diagonal pairwise distances."""
    sq = np.sum(X * X, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (X @ X.T), 0.0)  # [N, N] squared distances
    iu = np.triu_indices(X.shape[0], k=1)
    med = np.median(np.sqrt(d2[iu]))
    if med < _EPS:
        raise ValueError("RBF CKA is undefined when most examples coincide (median pairwise distance 0)")
    sigma = sigma_frac * med
    return np.exp(-d2 / (2.0 * sigma * sigma))


def _cka_from_centered_grams(Kc: np.ndarray, Lc: np.ndarray) -> float:
    """``<Kc, Lc>_F / (||Kc||_F ||Lc||_F)`` for already centred Grams (the HSIC ratio)."""
    nk, nl = np.linalg.norm(Kc), np.linalg.norm(Lc)
    if nk < _EPS or nl < _EPS:
        raise ValueError("CKA is undefined for a constant representation (all rows equal)")
    return float(np.sum(Kc * Lc) / (nk * nl))


def _centered_gram(X: np.ndarray, kind: Kind, sigma_frac: float) -> np.ndarray:
    if kind == "linear":
        Xc = X - X.mean(axis=0, keepdims=True)
        return Xc @ Xc.T  # already centred: H X X^T H = Xc Xc^T
    if kind == "rbf":
        return _center_gram(_rbf_gram(X, sigma_frac))
    raise ValueError(f"unknown CKA kind {kind!r}; use 'linear' or 'rbf'")


def rbf_cka(X: np.ndarray | torch.Tensor, Y: np.ndarray | torch.Tensor, sigma_frac: float = 0.5) -> float:
    """CKA with RBF kernels: ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` (biased HSIC).

    Each kernel's bandwidth is ``sigma_frac`` times the median pairwise Euclidean distance of its
    own representation (Kornblith et al. take the median of squared distances including the zero
    diagonal; the off-diagonal median used here does not depend on N's diagonal share).

    Args:
        X: ``[N, D1]``.
        Y: ``[N, D2]``.
        sigma_frac: bandwidth as a fraction of the median distance (> 0).

    Returns:
        similarity in ``[0, 1]``.
    """
    if sigma_frac <= 0:
        raise ValueError(f"sigma_frac must be > 0, got {sigma_frac}")
    X, Y = _as_features(X, "X"), _as_features(Y, "Y")
    _check_same_n(X, Y)
    return _cka_from_centered_grams(_centered_gram(X, "rbf", sigma_frac), _centered_gram(Y, "rbf", sigma_frac))


def _grams(feats: Sequence[np.ndarray | torch.Tensor], kind: Kind, sigma_frac: float, name: str) -> list[np.ndarray]:
    if len(feats) == 0:
        raise ValueError(f"{name} is empty")
    arrs = [_as_features(f, f"{name}[{i}]") for i, f in enumerate(feats)]
    ns = {a.shape[0] for a in arrs}
    if len(ns) != 1:
        raise ValueError(f"all representations in {name} must cover the same N inputs, got N in {sorted(ns)}")
    if sigma_frac <= 0:
        raise ValueError(f"sigma_frac must be > 0, got {sigma_frac}")
    return [_centered_gram(a, kind, sigma_frac) for a in arrs]  # each [N, N]


def cka_matrix(
    feats: Sequence[np.ndarray | torch.Tensor], kind: Kind = "linear", sigma_frac: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Pairwise CKA between ``B`` representations of the same inputs (e.g. several backbones).

    Args:
        feats: ``B`` arrays ``[N, D_b]``.
        kind: ``"linear"`` or ``"rbf"``.
        sigma_frac: RBF bandwidth, see :func:`rbf_cka`.
        progress: ``progress(done, total)`` after each representation's own product / Gram and each pair.

    Returns:
        symmetric ``[B, B]`` matrix with ones on the diagonal.

    Linear CKA uses all N inputs in feature space (``[D1, D2]`` cross-covariances, never an
    ``[N, N]`` Gram when N >= D); RBF CKA uses :func:`rbf_sample_size` inputs (a seeded sample).
    """
    if kind == "linear" and len(feats) and min(np.shape(f)[0] for f in feats) >= max(np.shape(f)[1] for f in feats):
        arrs = [_checked(f, f"feats[{i}]") for i, f in enumerate(feats)]
        if len({a.shape[0] for a in arrs}) != 1:
            raise ValueError(f"all representations in feats must cover the same N inputs, got N in "
                             f"{sorted({a.shape[0] for a in arrs})}")
        b = len(arrs)
        total = b + b * (b - 1) // 2
        norms = []
        for a in arrs:  # each representation's own product once
            norms.append(_self_norm(a))
            if progress is not None:
                progress(len(norms), total)
        return _symmetric(b, lambda i, j: _linear_cka_from(
            norms[i], norms[j], float(np.sum(centred_product(arrs[j], arrs[i]) ** 2))), progress, done=b, total=total)
    if kind == "rbf" and len(feats):
        rows = _sample(np.shape(feats[0])[0], RBF_MAX_N)
        feats = [np.asarray(f)[rows] for f in feats]
    grams = _grams(feats, kind, sigma_frac, "feats")
    return _symmetric(len(grams), lambda i, j: _cka_from_centered_grams(grams[i], grams[j]), progress)


def _symmetric(n: int, sim: Callable[[int, int], float], progress: Callable[[int, int], None] | None = None,
               done: int = 0, total: int | None = None) -> np.ndarray:
    """``[n, n]`` with ones on the diagonal and ``sim(i, j)`` in both triangles; ``progress(done, total)``
    after each pair (``done`` counts on from the given start)."""
    out = np.eye(n)
    total = done + n * (n - 1) // 2 if total is None else total
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = sim(i, j)
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def layer_cka(
    feats_a: Sequence[np.ndarray | torch.Tensor],
    feats_b: Sequence[np.ndarray | torch.Tensor],
    kind: Kind = "linear",
    sigma_frac: float = 0.5,
) -> np.ndarray:
    """CKA between every layer of model A and every layer of model B (Kornblith et al., Fig. 4).

    Args:
        feats_a: ``LA`` arrays ``[N, D]`` (one per layer of A).
        feats_b: ``LB`` arrays ``[N, D']`` (one per layer of B), same inputs in the same order.
        kind: ``"linear"`` or ``"rbf"``.
        sigma_frac: RBF bandwidth, see :func:`rbf_cka`.

    Returns:
        ``[LA, LB]`` matrix.

    Up to ``LAYER_FULL_MAX_N`` inputs this is the exact CKA; above, :func:`minibatch_cka` (every
    layer's ``[N, N]`` Gram of 100,000 inputs would be 80 GB).
    """
    n = np.shape(feats_a[0])[0] if len(feats_a) else 0
    if n > LAYER_FULL_MAX_N:
        return minibatch_cka(feats_a, feats_b, kind=kind, sigma_frac=sigma_frac, batch_size=MINIBATCH,
                             max_batches=MAX_MINIBATCHES)
    ga = _grams(feats_a, kind, sigma_frac, "feats_a")
    gb = _grams(feats_b, kind, sigma_frac, "feats_b")
    if ga[0].shape != gb[0].shape:
        raise ValueError(f"feats_a has N={ga[0].shape[0]} inputs but feats_b has N={gb[0].shape[0]}")
    out = np.empty((len(ga), len(gb)))
    for i, ka in enumerate(ga):
        for j, kb in enumerate(gb):
            out[i, j] = _cka_from_centered_grams(ka, kb)
    return out


def _gram(X: np.ndarray, kind: Kind, sigma_frac: float) -> np.ndarray:
    """Uncentred kernel ``[m, m]`` of one minibatch."""
    if kind == "linear":
        return X @ X.T
    if kind == "rbf":
        return _rbf_gram(X, sigma_frac)
    raise ValueError(f"unknown CKA kind {kind!r}; use 'linear' or 'rbf'")


def unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC (Song et al., 2012) of two ``[m, m]`` kernels, m >= 4:
    ``[tr(K~L~) + 1'K~1 1'L~1 / ((m-1)(m-2)) - 2/(m-2) 1'K~L~1] / (m(m-3))`` with zeroed diagonals."""
    m = K.shape[0]
    if m < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 inputs per minibatch, got {m}")
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one_k, one_l = K.sum(axis=0), L.sum(axis=0)  # [m] column sums (1'K~ and 1'L~)
    t = np.sum(K * L) + one_k.sum() * one_l.sum() / ((m - 1) * (m - 2)) - 2.0 / (m - 2) * float(one_k @ one_l)
    return float(t / (m * (m - 3)))


def minibatch_cka(
    feats_a: Sequence[np.ndarray | torch.Tensor],
    feats_b: Sequence[np.ndarray | torch.Tensor],
    kind: Kind = "linear",
    sigma_frac: float = 0.5,
    batch_size: int = MINIBATCH,
    max_batches: int = MAX_MINIBATCHES,
    seed: int = 0,
) -> np.ndarray:
    """Layer-by-layer CKA from minibatches (Nguyen, Raghu & Kornblith, 2021):
    ``CKA = mean_k HSIC_1(K_k, L_k) / sqrt(mean_k HSIC_1(K_k, K_k) * mean_k HSIC_1(L_k, L_k))`` with
    the unbiased HSIC_1 of each minibatch's kernels, so memory is ``[batch, batch]`` per layer.

    The inputs are shuffled once (``seed``) and cut into ``min(N // batch_size, max_batches)``
    minibatches (the same inputs for every layer of both models).

    Returns:
        ``[LA, LB]`` matrix.
    """
    if len(feats_a) == 0 or len(feats_b) == 0:
        raise ValueError("feats_a and feats_b need at least one layer each")
    n = np.shape(feats_a[0])[0]
    if any(np.shape(f)[0] != n for f in (*feats_a, *feats_b)):
        raise ValueError("every layer of both models must cover the same N inputs")
    batches = min(n // batch_size, max_batches)
    if batches < 1:
        raise ValueError(f"{n} inputs make no minibatch of {batch_size}; use layer_cka (exact) instead")
    order = np.random.default_rng(seed).permutation(n)[: batches * batch_size].reshape(batches, batch_size)
    la, lb = len(feats_a), len(feats_b)
    cross = np.zeros((la, lb))
    self_a, self_b = np.zeros(la), np.zeros(lb)
    for rows in order:
        rows = np.sort(rows)
        ka = [_gram(_as_features(np.asarray(f)[rows], "feats_a"), kind, sigma_frac) for f in feats_a]
        kb = [_gram(_as_features(np.asarray(f)[rows], "feats_b"), kind, sigma_frac) for f in feats_b]
        for i, K in enumerate(ka):
            self_a[i] += unbiased_hsic(K, K)
            for j, L in enumerate(kb):
                cross[i, j] += unbiased_hsic(K, L)
        for j, L in enumerate(kb):
            self_b[j] += unbiased_hsic(L, L)
    denom = np.sqrt(np.maximum(self_a[:, None] * self_b[None, :], _EPS))
    return cross / denom  # the 1/batches factors cancel
