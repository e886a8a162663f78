"""Class prototypes on frozen features: class means, the nearest-mean classifier (NMC / SimpleCIL)
and per-image margins.

Features are ``X [N, D]`` (one row per image) and labels ``y [N]`` (strings or ints). Class order is
always ``np.unique(y)`` (sorted) unless stated otherwise.

References: Janson et al., "A Simple Baseline that Questions the Use of Pretrained-Models in
Continual Learning" (2022); Zhou et al., "Revisiting Class-Incremental Learning with Pre-Trained
Models: Generalizability and Adaptivity are All You Need" (SimpleCIL, 2023)."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin

from core.geometry.vectors import Metric, as_features, as_labels, check_metric, class_sums, distances


def class_prototypes(X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Class means of the features.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.

    Returns:
        ``(classes [K], P [K, D])``: sorted unique labels and the mean feature of each (float64
        accumulation, returned in ``X``'s float dtype, at least float32: an imported set's float16
        rows give float32 means, not means rounded to half precision).
    """
    X = as_features(X)
    y = as_labels(y, len(X))
    classes, y_idx = np.unique(y, return_inverse=True)  # [K], [N]
    counts = np.bincount(y_idx, minlength=len(classes))  # [K]
    sums = class_sums(X, y_idx, len(classes))  # [K, D] float64
    out_dtype = np.promote_types(X.dtype, np.float32) if np.issubdtype(X.dtype, np.floating) else np.float32
    return classes, (sums / counts[:, None]).astype(out_dtype)


# ---- classifiers ------------------------------------------------------------------------------------
class NearestMeanClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class mean (NMC) / SimpleCIL prototype classifier.

    Each class is its mean feature; an image goes to the nearest prototype. ``partial_fit`` adds
    prototypes for new classes without touching the old ones, which is exemplar-free
    class-incremental learning on a frozen backbone (NMC, SimpleCIL).

    Attributes (after fit):
        classes_: ``[K]`` labels, in the order prototypes were added (sorted within each call).
        prototypes_: ``[K, D]`` class means.
        class_counts_: ``[K]`` number of training images behind each prototype.
    """

    fixed_class_scores = True  # a prototype never changes once added (see IncrementalClassifier)

    def __init__(self, metric: Metric = "cosine"):
        self.metric = metric

    def fit(self, X: ArrayLike, y: ArrayLike) -> NearestMeanClassifier:
        """Build one prototype per class from scratch (forgets earlier calls)."""
        check_metric(self.metric)
        X = as_features(X)
        y = as_labels(y, len(X))
        self.classes_, self.prototypes_ = class_prototypes(X, y)
        self.class_counts_ = np.unique(y, return_counts=True)[1]
        self.n_features_in_ = X.shape[1]
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> NearestMeanClassifier:
        """Add prototypes for the (new) classes in ``y``; existing prototypes are not changed.

        Raises:
            ValueError: if a class in ``y`` already has a prototype (no class is revisited in
                class-incremental learning; call ``fit`` to rebuild everything instead).
        """
        if not hasattr(self, "prototypes_"):
            return self.fit(X, y)
        X = as_features(X)
        y = as_labels(y, len(X))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has D={X.shape[1]} features but the classifier was fitted with "
                             f"D={self.n_features_in_}")
        if (y.dtype.kind in "USO") != (self.classes_.dtype.kind in "USO"):
            raise ValueError(f"label type {y.dtype} does not match the fitted labels ({self.classes_.dtype})")
        new = np.unique(y)
        seen = new[np.isin(new, self.classes_)]
        if len(seen):
            raise ValueError(f"partial_fit only adds new classes, but {seen.tolist()} already have a prototype; "
                             "use fit() to rebuild all prototypes")
        classes, P = class_prototypes(X, y)
        self.classes_ = np.concatenate([self.classes_, classes])
        self.prototypes_ = np.concatenate([self.prototypes_, P.astype(self.prototypes_.dtype)])
        self.class_counts_ = np.concatenate([self.class_counts_, np.unique(y, return_counts=True)[1]])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "prototypes_"):
            raise ValueError("NearestMeanClassifier is not fitted; call fit(X, y) first")

    def distances(self, X: ArrayLike) -> np.ndarray:
        """Distances to every prototype ``[N, K]``."""
        self._check_fitted()
        return distances(X, self.prototypes_, self.metric)

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Scores ``[N, K]``: negative distance to each prototype (higher is better)."""
        return -self.distances(X)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Label of the nearest prototype ``[N]``."""
        return self.classes_[np.argmin(self.distances(X), axis=1)]


def per_class_margin(D_img_proto: ArrayLike, y_idx: ArrayLike) -> np.ndarray:
    """Margin of each image: distance to the nearest wrong prototype minus distance to its own.

    Args:
        D_img_proto: ``[N, K]`` image-to-prototype distances (e.g. :func:`distances`).
        y_idx: ``[N]`` index of each image's true class in ``0..K-1``.

    Returns:
        ``[N]`` margins; positive = correctly classified by NMC with that much room.
    """
    Dm = as_features(D_img_proto, "D_img_proto").astype(np.float64)
    yi = np.asarray(y_idx)
    if yi.shape != (len(Dm),) or not np.issubdtype(yi.dtype, np.integer):
        raise ValueError(f"y_idx must be an integer array of shape ({len(Dm)},), got {yi.dtype} {yi.shape}")
    if Dm.shape[1] < 2:
        raise ValueError("a margin needs at least 2 prototypes")
    if yi.min() < 0 or yi.max() >= Dm.shape[1]:
        raise ValueError(f"y_idx values must be in [0, {Dm.shape[1] - 1}]")
    rows = np.arange(len(Dm))
    own = Dm[rows, yi]  # [N]
    others = Dm.copy()
    others[rows, yi] = np.inf
    return others.min(axis=1) - own
