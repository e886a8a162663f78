"""How many new clusters: the labelled images as a probe (Vaze et al., CVPR 2022, section 3.3).

The authors' code (``methods/estimate_k/estimate_k.py``, ``test_kmeans_for_scipy``) runs scikit-learn's
``KMeans(n_clusters=k, random_state=0)`` on ALL the L2-normalised features, labelled and unlabelled
together (the labels are not given to k-means, so every labelled image is in effect held out from the
clustering), scores the clustering accuracy (Hungarian matching) on the labelled images only, and
searches ``k`` in ``[K_L, max_classes]`` with Brent's method (``minimize_scalar(..., method="bounded")``).
The score rises while k-means splits fewer labelled classes and falls once it starts merging them, so its
maximum estimates the total number of classes.

What is implemented here, and how it differs:

- the same criterion: k-means on all L2-normalised features, labels unused,
  :func:`~core.discover.metrics.cluster_accuracy` on the labelled images;
- a grid over ``k_new = k - K_L`` in ``0..k_max`` instead of Brent's search, so the whole curve can be
  drawn (above 21 values: every ``step``-th value first, then every value within one step of the best);
- each point is the mean over ``runs`` k-means runs (seeds ``seed .. seed + runs - 1``, one seeding
  each): a single run's labelled accuracy is flat wherever k-means happens to split or merge only
  classes without labelled images, and the mean is a smoother estimate of the same criterion;
- above ``max_fit`` images the runs cluster a uniform sample of that many (labelled and unlabelled in
  their proportions) and score the labelled images of the sample;
- ties go to the largest ``k_new``: the labelled images see a missing cluster only when it merges two
  labelled classes, but an extra one whenever it splits a labelled class, so the score is flatter below
  the true number than above it;
- k-means is :func:`core.discover.ssk.kmeans` (the one ``kmeans_all`` uses: k-means++ D^2 seeding,
  Lloyd, one seeding per run) rather than scikit-learn's, whose OpenMP threads took 50 s for one
  5,000 x 1,280 fit with k = 60 on a busy 2-core machine (this one: 1.5 s).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from core.cancel import CancelLike, raise_if_cancelled
from core.discover.metrics import cluster_accuracy
from core.discover.ssk import kmeans
from core.geometry.vectors import as_features, as_labels, l2_normalize

MAX_FIT = 3_000  # images clustered per run when estimating k
RUNS = 5
GRID = 21  # candidates evaluated one by one up to this many; a coarse grid then a refinement above


@dataclass(frozen=True)
class KCurve:
    """The score of each candidate number of new clusters.

    Attributes:
        k_new: ``[M]`` candidates, ascending.
        score: ``[M]`` mean clustering accuracy on the labelled images (Hungarian matching).
        best: the chosen ``k_new`` (highest score; ties to the largest).
        n_known: labelled classes ``K_L`` (each run used ``K_L + k_new`` clusters).
        runs: k-means runs averaged per candidate.
        n_fit: images clustered per run (all, or the sample).
    """

    k_new: np.ndarray
    score: np.ndarray
    best: int
    n_known: int
    runs: int
    n_fit: int

    def points(self) -> list[tuple[int, float]]:
        """``[(k_new, score), ...]`` for a plot or JSON."""
        return [(int(k), round(float(s), 6)) for k, s in zip(self.k_new, self.score)]


def default_k_max(n_known: int, n_unlabelled: int) -> int:
    """``max(2 K_L, 10)`` new clusters at most, and no more than there are unlabelled images."""
    return min(max(2 * n_known, 10), n_unlabelled)


def _candidates(k_max: int, step: int) -> list[int]:
    return sorted(set(range(0, k_max + 1, step)) | {k_max})


def estimate_k(
    X_l: ArrayLike,
    y_l: ArrayLike,
    X_u: ArrayLike,
    *,
    k_max: int | None = None,
    runs: int = RUNS,
    seed: int = 0,
    max_fit: int = MAX_FIT,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelLike | None = None,
) -> KCurve:
    """Choose the number of new clusters by the clustering accuracy on the labelled images.

    Args:
        X_l: ``[N_l, D]`` labelled features.
        y_l: ``[N_l]`` their classes.
        X_u: ``[N_u, D]`` unlabelled features.
        k_max: largest number of new clusters tried (default :func:`default_k_max`).
        runs: k-means runs averaged per candidate.
        seed: the first run's seed (and the sample's).
        max_fit: images clustered per run at most (a uniform sample above).
        progress: called as ``progress(done, total)`` after each candidate (``total`` grows by the
            refinement's candidates once the coarse grid is done).
        cancel: asked before each candidate (:mod:`core.cancel`); raises :class:`~core.errors.Cancelled`.

    Returns:
        :class:`KCurve`.
    """
    Xl, Xu = as_features(X_l, "X_l"), as_features(X_u, "X_u")
    if Xl.shape[1] != Xu.shape[1]:
        raise ValueError(f"labelled features have D={Xl.shape[1]}, unlabelled D={Xu.shape[1]}")
    yl = as_labels(y_l, len(Xl), "y_l")
    n_known = len(np.unique(yl))
    k_max = default_k_max(n_known, len(Xu)) if k_max is None else k_max
    if not 0 <= k_max <= len(Xu):
        raise ValueError(f"k_max must be in 0..{len(Xu)} (the unlabelled images), got {k_max}")
    if runs < 1 or max_fit < 2:
        raise ValueError(f"runs must be 1 or more and max_fit 2 or more, got {runs} and {max_fit}")

    rng = np.random.default_rng(seed)
    n = len(Xl) + len(Xu)
    if n > max_fit:  # the same share of each part
        nl = max(1, round(max_fit * len(Xl) / n))
        il = np.sort(rng.choice(len(Xl), size=min(nl, len(Xl)), replace=False))
        iu = np.sort(rng.choice(len(Xu), size=min(max_fit - len(il), len(Xu)), replace=False))
        Xl, yl, Xu = Xl[il], yl[il], Xu[iu]
    dt = np.float32 if Xl.dtype == np.float32 and Xu.dtype == np.float32 else np.float64
    Z = np.concatenate([l2_normalize(Xl, dtype=dt), l2_normalize(Xu, dtype=dt)])  # [n_fit, D] unit rows
    k_max = min(k_max, len(Z) - n_known)

    scores: dict[int, float] = {}

    def score(k: int) -> float:
        if k not in scores:
            accs = [cluster_accuracy(yl, kmeans(Z, n_known + k, n_init=1, seed=seed + r, max_fit=len(Z)).labels[:len(Xl)])
                    for r in range(runs)]
            scores[k] = float(np.mean(accs))
        return scores[k]

    def run(ks: list[int], before: int, total: int) -> None:
        for i, k in enumerate(ks):
            raise_if_cancelled(cancel, f"the k search was cancelled after {before + i} of {total} candidates")
            score(k)
            if progress is not None:
                progress(before + i + 1, total)

    step = max(1, math.ceil(k_max / (GRID - 1))) if k_max + 1 > GRID else 1
    coarse = _candidates(k_max, step)
    run(coarse, 0, len(coarse))
    if step > 1:  # refine around the coarse best
        top = max(scores, key=lambda k: (scores[k], k))
        fine = [k for k in range(max(0, top - step + 1), min(k_max, top + step - 1) + 1) if k not in scores]
        run(fine, len(coarse), len(coarse) + len(fine))
    ks = np.array(sorted(scores))
    ss = np.array([scores[k] for k in ks])
    best = int(ks[np.flatnonzero(ss >= ss.max() - 1e-12)[-1]])
    return KCurve(k_new=ks, score=ss, best=best, n_known=n_known, runs=runs, n_fit=len(Z))
