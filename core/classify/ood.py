"""Out-of-distribution scores from the class statistics of the shared-covariance Gaussian model (LDA):
how far an image lies from every class, and how well that separates a held-out "unknown" class.

* Mahalanobis score (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
  Samples and Adversarial Attacks", NeurIPS 2018): ``min_c (x - mu_c)^T Sigma^-1 (x - mu_c)`` with
  the class means and the shared covariance (here the Ledoit-Wolf shrunk one of :mod:`lda`).
* Energy score (Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020):
  ``E(x) = -T logsumexp_c(l_c(x) / T)``, ``T = 1``, over the class log-joints of the same Gaussian
  model, ``l_c(x) = log pi_c - 1/2 (x - mu_c)^T Sigma^-1 (x - mu_c)``, so that ``E(x) = -log p(x)`` up
  to a constant (the density of the class mixture). The LDA's linear scores would not do: they
  drop ``-1/2 x^T Sigma^-1 x``, the same for every class but not for every image.

Both are "higher = more unusual". AUROC treats the unknown class as the positive class.

**One Mahalanobis convention everywhere**: a bare "Mahalanobis" (``distance``, ``mahalanobis``, what a page
shows) is the *distance* ``sqrt((x - mu)^T Sigma^-1 (x - mu))``, in units of standard deviations along
the shared covariance; every squared quantity says so in its name (``distance_sq``, ``mahalanobis_sq``,
``ShrunkLDA.mahalanobis_sq``). Ranks, AUROC and percentiles are the same under either; only the numbers
shown differ (96 rather than 9,205), so a page never has to take a square root itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp
from scipy.stats import rankdata

from core.classify.classifiers import classifier_info
from core.classify.evaluation import _stratified_split, stratified_cap
from core.classify.lda import ShrunkLDA
from core.geometry.vectors import as_features, as_labels

OOD_SCORES: tuple[str, ...] = ("mahalanobis", "energy")


@dataclass(frozen=True)
class OODScores:
    """Scores of ``N`` images against a fitted :class:`ShrunkLDA` (Mahalanobis: the distance, not squared).

    Attributes:
        classes: ``[K]`` class order of ``distance``.
        distance: ``[N, K]`` Mahalanobis distance (not squared) to every class.
        distance_sq: ``[N, K]`` its square, ``(x - mu_c)^T Sigma^-1 (x - mu_c)``.
        mahalanobis: ``[N]`` distance to the nearest class (not squared): the OOD score.
        mahalanobis_sq: ``[N]`` its square (Lee et al.'s score as written in the paper).
        energy: ``[N]`` ``-T logsumexp(l / T)`` of the class log-joints ``l [N, K]``.
        nearest: ``[N]`` label of the nearest class (Mahalanobis).
    """

    classes: np.ndarray
    distance: np.ndarray
    distance_sq: np.ndarray
    mahalanobis: np.ndarray
    mahalanobis_sq: np.ndarray
    energy: np.ndarray
    nearest: np.ndarray

    def score(self, kind: str) -> np.ndarray:
        """``[N]`` the score named ``kind`` (one of :data:`OOD_SCORES`; ``"mahalanobis"``: the distance, not squared)."""
        if kind not in OOD_SCORES:
            raise ValueError(f"unknown OOD score {kind!r}; choose one of {list(OOD_SCORES)}")
        return getattr(self, kind)


def ood_scores(model: ShrunkLDA, X: ArrayLike, temperature: float = 1.0) -> OODScores:
    """Mahalanobis (distance and squared, both named) and energy scores of ``X [N, D]`` under a fitted
    :class:`ShrunkLDA`."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    D2 = model.mahalanobis_sq(as_features(X))  # [N, K] squared
    logits = np.log(model.class_count_ / model.class_count_.sum())[None, :] - 0.5 * D2  # [N, K] log-joints + const
    energy = -temperature * logsumexp(logits / temperature, axis=1)
    D = np.sqrt(D2)  # [N, K]
    return OODScores(model.classes_, D, D2, D.min(axis=1), D2.min(axis=1), energy, model.classes_[np.argmin(D2, axis=1)])


def auroc(scores: ArrayLike, is_positive: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a positive scores above a negative (ties count 1/2),
    by the Mann-Whitney rank sum.

    Args:
        scores: ``[N]`` higher = more likely positive.
        is_positive: ``[N]`` booleans; both groups must be non-empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if s.shape != pos.shape or s.ndim != 1:
        raise ValueError(f"scores and is_positive must be 1-D of the same length, got {s.shape} and {pos.shape}")
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positive and negative items, got {n_pos} and {n_neg}")
    r = rankdata(s)  # average ranks for ties
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class UnknownClassResult:
    """Outcome of :func:`unknown_class_ood`.

    Attributes:
        unknown: the labels held out as unknown.
        test_indices: ``[T]`` rows of ``X`` scored: the test split of the known classes, then every
            image of the unknown classes.
        is_unknown: ``[T]`` whether each scored image is of an unknown class.
        scores: the :class:`OODScores` of the ``T`` images.
        auroc: ``{"mahalanobis": a, "energy": b}``; empty when no class is held out.
        n_train: known-class training images the statistics come from.
        model: the :class:`ShrunkLDA` fitted on them (to score further images, e.g. an upload, on the
            same footing as the held-out ones).
    """

    unknown: np.ndarray
    test_indices: np.ndarray
    is_unknown: np.ndarray
    scores: OODScores
    auroc: dict[str, float]
    n_train: int
    model: ShrunkLDA


def unknown_class_ood(X: ArrayLike, y: ArrayLike, unknown: Any = (), *, test_size: float = 0.3,
                      seed: int = 0) -> UnknownClassResult:
    """Hold classes out as unknown: fit the statistics on the training split of the other classes,
    score their test split and every unknown image, and measure the separation (AUROC). With no
    unknown class, every image of the test split is scored by statistics that never saw it.

    The split is the stratified split of :func:`core.classify.evaluation.evaluate` (same
    ``test_size`` and ``seed``), restricted to the known classes; the statistics are fitted on at
    most LDA's ``max_train`` training images (a stratified sample), as its classifier-table row.

    Args:
        X: ``[N, D]``; y: ``[N]``.
        unknown: one label or a list of labels treated as never seen (may be empty).
    """
    X = as_features(X)
    y = as_labels(y, len(X))
    classes = np.unique(y)
    unk = np.unique(np.atleast_1d(np.asarray(unknown, dtype=classes.dtype)))  # [U], U may be 0
    missing = unk[~np.isin(unk, classes)]
    if len(missing):
        raise ValueError(f"unknown classes {missing.tolist()} do not occur in y")
    known = classes[~np.isin(classes, unk)]
    if len(known) < 2:
        raise ValueError(f"need at least 2 known classes besides the unknown ones, got {len(known)}")
    rows = np.flatnonzero(np.isin(y, known))
    codes, rng = np.searchsorted(known, y[rows]), np.random.default_rng(seed)
    tr, te = _stratified_split(codes, test_size, rng)
    tr = stratified_cap(tr, codes, classifier_info("lda").max_train, rng)  # LDA's fit cap (a stated sample)
    model = ShrunkLDA().fit(X[rows[tr]], y[rows[tr]])
    scored = np.concatenate([rows[te], np.flatnonzero(np.isin(y, unk))])
    is_unknown = np.isin(y[scored], unk)
    sc = ood_scores(model, X[scored])
    aurocs = {k: auroc(sc.score(k), is_unknown) for k in OOD_SCORES} if len(unk) else {}
    return UnknownClassResult(unk, scored, is_unknown, sc, aurocs, len(tr), model)
