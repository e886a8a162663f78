"""Semi-supervised k-means (SS-k-means), the clustering of generalized category discovery.

Vaze et al., "Generalized Category Discovery", CVPR 2022 (section 3.2), checked against the authors'
code ``sgvaze/generalized-category-discovery``, ``methods/clustering/faster_mix_k_means_pytorch.py``
(``K_Means.fit_mix_once`` / ``kpp``). As there:

- features are L2-normalised;
- the first ``K_L`` centres are the means of the labelled classes; the ``k_new`` others are seeded by
  k-means++ (D^2 sampling) from the unlabelled features, the class means counting as centres already
  chosen;
- each Lloyd iteration assigns every unlabelled feature to its nearest centre, known or new, while every
  labelled feature stays in its own class; every centre, known ones included, is then recomputed from all
  features in its cluster, labelled and unlabelled;
- it stops when ``(sum of the centres' shifts)^2 < tol`` (1e-4) or after ``max_iter`` iterations; of
  ``n_init`` (10) seedings the one with the least inertia is kept.

Where this differs, and why:

- ``metric="cosine"`` (default): a centre is the unit-length direction of its cluster's mean and the
  distance ``2 - 2 cos`` (spherical k-means). The authors keep the plain mean (``metric="euclidean"``),
  whose norm shrinks as its cluster spreads, so a known class's mean, nearer the origin than any single
  feature, starts nearer every feature than a new centre seeded on one feature: on the bundled stamps
  (3 hidden classes, 20 splits) the new centres then kept few images (New accuracy 0.54 / 0.55 / 0.63
  Euclidean against 0.66 / 0.71 / 0.63 cosine for MobileNetV2 / EfficientNet-Lite0 / the ViT);
- the seeding is scikit-learn's greedy k-means++ (``2 + ln K`` candidates per step, the one that lowers
  the summed D^2 most kept; ``trials=1`` is the authors' single draw). Plain k-means (:func:`kmeans`,
  the ``kmeans_all`` baseline and the k-means of the ``k`` search) is scikit-learn's ``KMeans`` in the
  authors' code, greedy too; one seeding rule for both keeps the comparison about the labels alone;
- a new cluster that loses every member keeps its centre (the authors' mean of nothing is NaN);
- above ``max_fit`` unlabelled rows the centres are fitted on a uniform sample of them, each sampled row
  weighing ``N_u / n_fit`` so the labelled images keep their share of every known centre, and then all
  unlabelled rows are assigned to the fitted centres (one pass);
- ``max_iter`` is the class's default 100 (the authors' script passes 10).

Random draws, in order, from ``np.random.default_rng(seed)``: the sample (only when sampling), then per
seeding the first centre (``integers``, only without labelled rows) and ``random(trials)`` per further
centre, each candidate being the first row whose cumulative D^2 reaches ``random() * sum(D^2)``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from threadpoolctl import threadpool_limits

from core.cancel import CancelLike, raise_if_cancelled
from core.geometry.vectors import ROW_BLOCK, as_features, as_labels, l2_normalize

MAX_FIT = 20_000  # unlabelled rows the centres are fitted on; more are assigned to the fitted centres
N_INIT, MAX_ITER, TOL = 10, 100, 1e-4  # the authors' K_Means defaults (their script: max_iter 10)
# fits on at most this many feature values run BLAS on one thread: their products are so small that handing
# each one to a second thread costs more than it gives (a 2,000 x 64 by 64 x 30 product took 20 ms on two
# threads of a busy 2-core machine, 0.6 ms on one; the k search makes thousands of them)
ONE_THREAD_MAX = 4_000_000


@dataclass(frozen=True)
class KMeansFit:
    """A fitted (semi-supervised) k-means.

    Attributes:
        classes: ``[K_L]`` the labelled classes, sorted; cluster ``j < K_L`` is ``classes[j]``.
        labels: ``[N_u]`` the cluster of each unlabelled row, ``0..K_L + k_new - 1``.
        centres: ``[K_L + k_new, D]`` float64 centres in the L2-normalised feature space.
        inertia: sum of squared distances to the centres (labelled rows plus the fitted unlabelled rows,
            weighted when sampled) of the kept seeding.
        n_iter: Lloyd iterations of the kept seeding.
        n_fit: unlabelled rows the centres were fitted on (``N_u`` unless sampled).
    """

    classes: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    inertia: float
    n_iter: int
    n_fit: int

    @property
    def n_known(self) -> int:
        return len(self.classes)

    @property
    def k_new(self) -> int:
        return len(self.centres) - len(self.classes)


def _sq_dists(U: np.ndarray, uu: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``[n, K]`` squared distances of rows ``U [n, D]`` (squared norms ``uu [n]``) to centres ``C [K, D]``,
    the product in U's dtype."""
    C = np.asarray(C)
    cc = (C * C).sum(1)  # [K]
    return np.maximum(uu[:, None] + cc[None, :] - 2.0 * (U @ C.T.astype(U.dtype)), 0.0)


def _nearest(U: np.ndarray, uu: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels [n], squared distance to that centre [n] float64)``, in row blocks."""
    lab = np.empty(len(U), dtype=np.int64)
    md = np.empty(len(U))
    for s in range(0, len(U), ROW_BLOCK):
        d2 = _sq_dists(U[s:s + ROW_BLOCK], uu[s:s + ROW_BLOCK], C)  # [b, K]
        lab[s:s + ROW_BLOCK] = d2.argmin(1)
        md[s:s + ROW_BLOCK] = d2[np.arange(len(d2)), lab[s:s + ROW_BLOCK]]
    return lab, md


def _cluster_sums(U: np.ndarray, lab: np.ndarray, k: int) -> np.ndarray:
    """``[k, D]`` float64 sum of the rows of ``U [n, D]`` in each cluster: a sparse one-hot ``[k, n]``
    product (ten times a dense one-hot matmul at 5,000 x 1,280, and no ``[k, n]`` dense matrix)."""
    onehot = sparse.csr_matrix((np.ones(len(lab), dtype=U.dtype), (lab, np.arange(len(lab)))), shape=(k, len(lab)))
    return np.asarray(onehot @ U, dtype=np.float64)


def _kpp(U: np.ndarray, uu: np.ndarray, pre: np.ndarray, k_total: int, rng: np.random.Generator,
         trials: int = 1) -> np.ndarray:
    """k-means++ centres ``[k_total, D]``: ``pre [K_L, D]`` first, then D^2 draws from ``U``; with
    ``trials > 1`` each step draws that many candidates and keeps the one that lowers the summed D^2 most
    (scikit-learn's greedy k-means++)."""
    C = [c for c in np.asarray(pre, dtype=np.float64)]
    if not C:
        C.append(U[rng.integers(len(U))].astype(np.float64))
    d2 = _sq_dists(U, uu, np.stack(C)).min(1).astype(np.float64)  # [n] to the nearest chosen centre
    while len(C) < k_total:
        cum = np.cumsum(d2)
        r = rng.random(trials)
        # every row already on a centre (duplicates): no D^2 mass left, draw uniformly
        idx = np.searchsorted(cum, r * cum[-1]) if cum[-1] > 0 else (r * len(U)).astype(np.int64)
        cand = U[np.minimum(idx, len(U) - 1)].astype(np.float64)  # [trials, D]
        dc = np.minimum(d2[:, None], _sq_dists(U, uu, cand))  # [n, trials]
        best = int(np.argmin(dc.sum(0))) if trials > 1 else 0
        C.append(cand[best])
        d2 = dc[:, best]
    return np.stack(C)


def _lloyd(U, uu, w, S, n, q, C, max_iter, tol, spherical):
    """Lloyd iterations from centres ``C [K, D]``: unlabelled rows ``U`` (weight ``w`` each) move, the
    labelled ones enter through their per-class sums ``S [K_L, D]``, counts ``n [K_L]`` and squared norms
    ``q`` (sum over all labelled rows). Returns ``(labels, centres, inertia, iterations)``."""
    K, KL = len(C), len(S)
    for it in range(1, max_iter + 1):
        lab, md = _nearest(U, uu, C)
        Ck = C[:KL]
        inertia = w * md.sum() + q - 2.0 * (Ck * S).sum() + (n * (Ck * Ck).sum(1)).sum()
        sums = w * _cluster_sums(U, lab, K)  # [K, D]
        counts = w * np.bincount(lab, minlength=K).astype(np.float64)
        sums[:KL] += S
        counts[:KL] += n
        new = C.copy()
        full = counts > 0  # a new cluster left empty keeps its centre
        new[full] = l2_normalize(sums[full]) if spherical else sums[full] / counts[full, None]
        shift = np.linalg.norm(new - C, axis=1).sum()
        C = new
        if shift ** 2 < tol:
            return lab, C, float(inertia), it
    return lab, C, float(inertia), max_iter


def semi_supervised_kmeans(
    X_u: ArrayLike,
    k_new: int,
    X_l: ArrayLike | None = None,
    y_l: ArrayLike | None = None,
    *,
    n_init: int = N_INIT,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    seed: int = 0,
    max_fit: int = MAX_FIT,
    trials: int | None = None,
    metric: str = "cosine",
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelLike | None = None,
) -> KMeansFit:
    """Cluster unlabelled features into the labelled classes plus ``k_new`` new clusters.

    Args:
        X_u: ``[N_u, D]`` unlabelled features (raw; L2-normalised here).
        k_new: number of new clusters, ``0..N_u``.
        X_l: ``[N_l, D]`` labelled features, or None (plain k-means with ``k_new`` clusters).
        y_l: ``[N_l]`` their classes.
        n_init: seedings tried (the least inertia is kept).
        max_iter / tol: Lloyd stopping rule (``(sum of centre shifts)^2 < tol``).
        seed: seed of every random draw (see the module docstring for their order).
        max_fit: above this many unlabelled rows the centres are fitted on a sample of that many.
        trials: candidates per k-means++ step; None: scikit-learn's ``2 + ln K`` (``K = K_L + k_new``);
            1: plain D^2 sampling, as the authors' SS-k-means.
        metric: ``"cosine"`` (unit centres, spherical k-means) or ``"euclidean"`` (plain means, as the
            authors).
        progress: called as ``progress(done, total)`` after each seeding.
        cancel: asked before each seeding (:mod:`core.cancel`); raises :class:`~core.errors.Cancelled`.

    Returns:
        :class:`KMeansFit`.
    """
    Xu = as_features(X_u, "X_u")
    dt = np.float32 if Xu.dtype == np.float32 else np.float64
    if X_l is None or len(np.asarray(X_l)) == 0:
        classes = np.array([], dtype=object)
        S, n, q = np.zeros((0, Xu.shape[1])), np.zeros(0), 0.0
    else:
        Xl = as_features(X_l, "X_l")
        if y_l is None:
            raise ValueError("labelled features need their classes y_l")
        if Xl.shape[1] != Xu.shape[1]:
            raise ValueError(f"labelled features have D={Xl.shape[1]}, unlabelled D={Xu.shape[1]}")
        yl = as_labels(y_l, len(Xl), "y_l")
        classes, codes = np.unique(yl, return_inverse=True)
        L = l2_normalize(Xl, dtype=dt)
        S = _cluster_sums(L, codes, len(classes))  # [K_L, D]
        n = np.bincount(codes, minlength=len(classes)).astype(np.float64)
        q = float(np.einsum("ij,ij->", L, L, dtype=np.float64))
    if isinstance(k_new, bool) or not isinstance(k_new, int | np.integer) or not 0 <= k_new <= len(Xu):
        raise ValueError(f"k_new must be a whole number in 0..{len(Xu)} (the unlabelled images), got {k_new!r}")
    if len(classes) + k_new == 0:
        raise ValueError("k-means needs at least one cluster: no labelled class and k_new = 0")
    trials = 2 + int(np.log(len(classes) + k_new)) if trials is None else trials
    for name, v in (("n_init", n_init), ("max_iter", max_iter), ("max_fit", max_fit), ("trials", trials)):
        if v < 1:
            raise ValueError(f"{name} must be 1 or more, got {v}")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    rng = np.random.default_rng(seed)
    U_all = l2_normalize(Xu, dtype=dt)  # [N_u, D]
    uu_all = np.einsum("ij,ij->i", U_all, U_all, dtype=np.float64)  # [N_u] (1, or 0 for a zero row)
    if len(U_all) > max_fit:
        idx = np.sort(rng.choice(len(U_all), size=max_fit, replace=False))
        U, uu, w = U_all[idx], uu_all[idx], len(U_all) / max_fit
    else:
        U, uu, w = U_all, uu_all, 1.0
    spherical = metric == "cosine"
    pre = S / np.maximum(n, 1.0)[:, None]  # [K_L, D] labelled class means
    if spherical:
        pre = l2_normalize(pre)

    best = None
    with threadpool_limits(limits=1 if U.size <= ONE_THREAD_MAX else None):
        runs = n_init if k_new else 1  # no new centre: nothing random, one run
        for r in range(runs):
            raise_if_cancelled(cancel, f"k-means cancelled after {r} of {runs} seedings")
            C0 = _kpp(U, uu, pre, len(classes) + k_new, rng, trials)
            run = _lloyd(U, uu, w, S, n, q, C0, max_iter, tol, spherical)
            if best is None or run[2] < best[2]:
                best = run
            if progress is not None:
                progress(r + 1, runs)
    assert best is not None
    lab, C, inertia, it = best
    if U is not U_all:
        lab = _nearest(U_all, uu_all, C)[0]
    return KMeansFit(classes=classes, labels=lab, centres=C, inertia=inertia, n_iter=it, n_fit=len(U))


def kmeans(X: ArrayLike, k: int, **kw) -> KMeansFit:
    """Plain k-means on L2-normalised features (``kmeans_all``, and the k-means of the ``k`` search):
    :func:`semi_supervised_kmeans` with no labelled rows (``kw`` as there)."""
    return semi_supervised_kmeans(X, k, **kw)
