""""Far from every class": the one out-of-distribution rule every page applies to a new image (an upload).

The rule, calibrated on the labelled dataset:

1. **Score**: the distance of an image to its nearest class, either the cosine distance ``1 - cos`` to the
   nearest class mean (``score="cosine"``, the default: the NMC / SimpleCIL prototypes the pages classify
   with), or the Mahalanobis distance (not squared: :mod:`core.classify.ood`'s convention) under the shared
   shrunk covariance of :class:`ShrunkLDA` (``score="mahalanobis"``). Cosine is the default because it is
   the better rule on the sample stamps (``tests/test_ood_rule.py``): with a few images per class in
   384-1280 dimensions the shrunk covariance is mostly shrinkage, and on EfficientNet-Lite0 features the
   Mahalanobis rule calls only one of the four scikit-image photos far, cosine all four.
2. **Reference**: every dataset image scored by statistics that never saw it (stratified ``folds``-fold
   cross-fitting; at most :data:`MAX_REFERENCE` images, a stratified sample). Cross-fitting, not one
   hold-out split, because the reference must be large enough for a 95th percentile to mean anything:
   a 30 % split of the 48 sample stamps holds 16 images, with which no image can ever lie beyond 95 %
   of them with a p-value under 0.05.
3. **Verdict**: the new image is scored by each fold's statistics; it is **far from every class** when
   its conformal p-value ``p = (1 + #{i : ref_i >= s_fold(i)}) / (N + 1)`` is at most ``1 - level``
   (``level = 0.95``: fewer than about 5 % of the dataset's own held-out images lie as far from their
   nearest class). Each reference image is compared with the new image's score under the fold that held
   it out (cross-conformal, "CV+"), so both are out-of-sample distances of the same statistics. If the
   dataset's images are exchangeable with the new one, a new in-distribution image is called far with
   probability at most about ``1 - level``.

The percentile reported is ``100 * #{i : ref_i < s_fold(i)} / N``; the distance shown is the mean of
the new image's fold distances, and its nearest class the class nearest on average over the folds.
Nothing here imports Streamlit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from core.classify.evaluation import stratified_cap
from core.classify.lda import ShrunkLDA
from core.classify.prototypes import class_prototypes
from core.geometry.vectors import as_features, as_labels, distances

__all__ = ["OODScore", "SCORE_LABELS", "MAX_REFERENCE", "OODVerdict", "OODReference", "calibrate_ood"]

OODScore = Literal["mahalanobis", "cosine"]
SCORE_LABELS: dict[str, str] = {"mahalanobis": "Mahalanobis distance", "cosine": "cosine distance"}
MAX_REFERENCE = 10_000  # dataset images scored as the reference (a stratified sample above)
IN_DISTRIBUTION = "in-distribution"
FAR = "far from every class"


@dataclass(frozen=True)
class OODVerdict:
    """The rule's answer for one new image.

    Attributes:
        name: the image's name.
        verdict: ``"in-distribution"`` or ``"far from every class"``.
        far: ``verdict == "far from every class"``.
        score: its distance to the nearest class (mean over the folds; the rule's ``score`` kind).
        percentile: share (0-100) of the dataset's held-out images that lie closer to their nearest class.
        p_value: the conformal p-value; far when ``p_value <= 1 - level``.
        nearest: the nearest class.
        threshold: the ``level`` quantile of the reference scores (the line drawn on the histogram).
        level: the rule's level (0.95).
        score_label: "Mahalanobis distance" or "cosine distance".
        sentence: one sentence for the page, the verdict first.
    """

    name: str
    verdict: str
    far: bool
    score: float
    percentile: float
    p_value: float
    nearest: str
    threshold: float
    level: float
    score_label: str
    sentence: str


@dataclass(frozen=True)
class OODReference:
    """The rule calibrated on a dataset (from :func:`calibrate_ood`; pass new images to :meth:`judge`).

    Attributes:
        score: ``"mahalanobis"`` or ``"cosine"``.
        level: the verdict's level.
        classes: ``[K]`` class labels.
        reference: ``[N]`` each reference image's distance to its nearest class, out of sample.
        reference_rows: ``[N]`` their rows in the ``X`` given to :func:`calibrate_ood`.
        fold_of: ``[N]`` the fold that held each one out.
        threshold: the conformal ``level`` quantile of ``reference`` (the ``ceil((N + 1) level)``-th smallest).
        fits: each fold's statistics (a fitted :class:`ShrunkLDA`, or the ``[K, D]`` class means).
    """

    score: str
    level: float
    classes: np.ndarray
    reference: np.ndarray
    reference_rows: np.ndarray
    fold_of: np.ndarray
    threshold: float
    fits: tuple[ShrunkLDA | np.ndarray, ...] = field(repr=False)  # each fold's statistics (a model, or [K, D] means)

    @property
    def score_label(self) -> str:
        return SCORE_LABELS[self.score]

    @property
    def n_reference(self) -> int:
        return len(self.reference)

    def class_distances(self, U: ArrayLike) -> np.ndarray:
        """``[F, M, K]`` distance of each new image ``U [M, D]`` to each class, by each fold's statistics."""
        Z = as_features(U, "U")
        return np.stack([_distances(fit, Z, self.score) for fit in self.fits])

    def judge(self, U: ArrayLike, names: list[str] | None = None) -> list[OODVerdict]:
        """The verdict for each new image ``U [M, D]`` (features of the same backbone and layer as the
        dataset's), named ``names`` (default ``image 1``, ``image 2``, ...)."""
        Dk = self.class_distances(U)  # [F, M, K]
        s = Dk.min(axis=2)  # [F, M] each fold's nearest-class distance
        mean_d = Dk.mean(axis=0)  # [M, K]
        names = names if names is not None else [f"image {j + 1}" for j in range(s.shape[1])]
        if len(names) != s.shape[1]:
            raise ValueError(f"{len(names)} names for {s.shape[1]} images")
        at = s[self.fold_of]  # [N, M] the new image's score under the fold that held each reference image out
        below = (self.reference[:, None] < at).sum(axis=0)  # [M]
        as_far = len(self.reference) - below  # [M] reference images at least as far
        out = []
        for j, name in enumerate(names):
            p = (1.0 + as_far[j]) / (len(self.reference) + 1.0)
            far = p <= 1.0 - self.level + 1e-12
            out.append(self._verdict(name, far, float(s[:, j].mean()), 100.0 * below[j] / len(self.reference), p,
                                     str(self.classes[int(np.argmin(mean_d[j]))])))
        return out

    def _verdict(self, name: str, far: bool, score: float, pct: float, p: float, nearest: str) -> OODVerdict:
        lab, lvl = self.score_label, f"{100 * self.level:g}th percentile"
        if far:
            sentence = (f"{name} is far from every class: its {lab} to the nearest class ({nearest}), {score:.3g}, is "
                        f"beyond {pct:.0f} % of the dataset's own images (each measured by statistics that never saw "
                        f"it; the line is their {lvl}, {self.threshold:.3g}). Treat \u201c{nearest}\u201d as a guess: "
                        "the picture may show none of these classes.")
        else:
            sentence = (f"{name} lies among the dataset's classes: nearest class {nearest}, {lab} {score:.3g}, within "
                        f"the {lvl} of the dataset's own held-out images ({self.threshold:.3g}; {pct:.0f} % of them "
                        "lie closer to their nearest class).")
        return OODVerdict(name, FAR if far else IN_DISTRIBUTION, far, score, pct, p, nearest, self.threshold,
                          self.level, lab, sentence)


def _distances(fit: ShrunkLDA | np.ndarray, Z: np.ndarray, score: str) -> np.ndarray:
    """``[M, K]`` distances of ``Z`` to every class under one fold's statistics."""
    if score == "mahalanobis":
        assert isinstance(fit, ShrunkLDA)
        return np.sqrt(fit.mahalanobis_sq(Z))
    assert isinstance(fit, np.ndarray)
    return distances(Z, fit, "cosine")  # [M, K] 1 - cos


def _folds(y_idx: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``[N]`` fold of each row: each class dealt round-robin over the folds after a shuffle (stratified)."""
    fold = np.empty(len(y_idx), dtype=np.int64)
    start = 0
    for c in np.unique(y_idx):
        rows = rng.permutation(np.flatnonzero(y_idx == c))
        fold[rows] = (start + np.arange(len(rows))) % k  # a class smaller than k starts where the last one stopped
        start += len(rows)
    return fold


def calibrate_ood(X: ArrayLike, y: ArrayLike, *, score: OODScore = "cosine", level: float = 0.95,
                  folds: int = 5, seed: int = 0) -> OODReference:
    """Calibrate the "far from every class" rule on a labelled dataset (module docstring).

    Args:
        X: ``[N, D]`` the dataset's features (the same backbone and layer as the new images').
        y: ``[N]`` labels (at least 2 classes; cosine needs 2 images per class, Mahalanobis 3).
        score: ``"cosine"`` (class means) or ``"mahalanobis"`` (shared shrunk covariance).
        level: in ``(0, 1)``; far when fewer than about ``1 - level`` of the dataset lie as far.
        folds: cross-fitting folds (at least 2; fewer when the smallest class is smaller).
        seed: seeds the folds and the sample above :data:`MAX_REFERENCE`.

    Raises:
        ValueError: bad arguments, fewer than 2 classes, or a class too small to be held out.
    """
    if score not in SCORE_LABELS:
        raise ValueError(f"unknown OOD score {score!r}; choose one of {list(SCORE_LABELS)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    X = as_features(X)
    y = as_labels(y, len(X))
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"the rule needs at least 2 classes, got {len(classes)}")
    rng = np.random.default_rng(seed)
    rows = stratified_cap(np.arange(len(y)), y_idx, MAX_REFERENCE, rng)  # [N'] sorted
    counts = np.bincount(y_idx[rows], minlength=len(classes))
    need = 3 if score == "mahalanobis" else 2  # every training fold keeps 2 images (a covariance) or 1 (a mean)
    if counts.min() < need:
        small = classes[int(np.argmin(counts))]
        raise ValueError(f"class {str(small)!r} has {counts.min()} image(s); the {SCORE_LABELS[score]} rule needs "
                         f"{need} per class to score every image out of sample")
    n, need_n = len(rows), math.ceil(round(1.0 / (1.0 - level), 9)) - 1
    if n < need_n:  # the smallest p-value, 1 / (n + 1), could never reach 1 - level
        raise ValueError(f"a {100 * level:g}th-percentile rule needs at least {need_n} images to compare with; this "
                         f"dataset has {n}: use a lower level (e.g. 0.95)")
    k = int(min(folds, counts.min()))
    fold = _folds(y_idx[rows], k, rng)  # [N']
    fits, ref = [], np.empty(len(rows))
    for f in range(k):
        tr, te = rows[fold != f], rows[fold == f]
        if score == "mahalanobis":
            fit: ShrunkLDA | np.ndarray = ShrunkLDA().fit(X[tr], y[tr])
        else:
            fit = class_prototypes(X[tr], y[tr])[1]  # [K, D] in sorted class order
        fits.append(fit)
        ref[fold == f] = _distances(fit, X[te], score).min(axis=1)
    rank = min(n, math.ceil((n + 1) * level))  # the conformal quantile: the rank-th smallest
    threshold = float(np.sort(ref)[rank - 1])
    return OODReference(score, float(level), classes, ref, rows, fold, threshold, tuple(fits))
