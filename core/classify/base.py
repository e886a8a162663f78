"""Template for classifiers built from per-class statistics of frozen features, updatable class by class.

A subclass keeps sufficient statistics (means, variances, covariances, Gram matrices ...) and
implements two steps: ``_update(X, y)`` folds a batch into them (without keeping the images) and
``_scores(X)`` returns ``[N, K]`` class scores (higher is better, column order ``classes_``).
``fit`` forgets everything and makes one update; ``partial_fit`` adds classes, which is exemplar-free
class-incremental learning on a frozen backbone. Whether a class seen before may receive more
images is a property of the method (``merges_seen_classes``).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin

from core.geometry.vectors import as_features, as_labels


class IncrementalClassifier(ClassifierMixin, BaseEstimator):
    """Base class: label bookkeeping, input checks, ``predict`` from ``decision_function``.

    Attributes (after fit):
        classes_: ``[K]`` labels, in the order they were first seen (sorted within each call).
        class_count_: ``[K]`` training images behind each class.
        n_features_in_: ``D``.
    """

    classes_: np.ndarray
    class_count_: np.ndarray
    n_features_in_: int
    merges_seen_classes: bool = False  # may partial_fit give more images of a known class?
    # does a class's score column stay the same when later classes are added (per-class statistics
    # only, no shared term)? Then a class-incremental run can score its test images once at the end.
    fixed_class_scores: bool = False
    min_per_class: int = 1  # fewest training images per class the statistics need

    # ---- to implement ------------------------------------------------------------------------------
    def _reset(self) -> None:
        """Drop every fitted statistic (called by ``fit``)."""

    def _update(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fold ``X [n, D]`` (float64) with labels ``y [n]`` into the statistics. ``classes_`` and
        ``class_count_`` are already updated when this runs; ``self._new`` holds the new classes."""
        raise NotImplementedError

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """``[N, K]`` class scores of ``X`` (as :meth:`embed` returns it: ``[N, D]`` float64 by default),
        higher is better."""
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike) -> IncrementalClassifier:
        """Estimate the statistics from scratch (forgets earlier calls)."""
        for a in ("classes_", "class_count_", "n_features_in_"):
            self.__dict__.pop(a, None)
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> IncrementalClassifier:
        """Add the classes in ``y`` (and, where the method allows it, more images of known classes).

        Raises:
            ValueError: a class has fewer than ``min_per_class`` images, ``D`` or the label type
                differs from the earlier calls, or a known class is given again to a method whose
                statistics cannot be merged (call ``fit`` to rebuild everything instead).
        """
        X = as_features(X).astype(np.float64)
        y = as_labels(y, len(X))
        new, counts = np.unique(y, return_counts=True)
        name = type(self).__name__
        if counts.min() < self.min_per_class:
            raise ValueError(f"{name} needs at least {self.min_per_class} images per class, but class "
                             f"{new[counts.argmin()]!r} has {counts.min()}")
        if hasattr(self, "classes_"):
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has D={X.shape[1]} features but {name} was fitted with D={self.n_features_in_}")
            if (y.dtype.kind in "USO") != (self.classes_.dtype.kind in "USO"):
                raise ValueError(f"label type {y.dtype} does not match the fitted labels ({self.classes_.dtype})")
            seen = np.isin(new, self.classes_)
            if seen.any() and not self.merges_seen_classes:
                raise ValueError(f"{name}.partial_fit only adds new classes, but {new[seen].tolist()} were seen "
                                 "before; use fit() to rebuild the statistics")
            pos = {c: i for i, c in enumerate(self.classes_.tolist())}
            for c, n in zip(new[seen].tolist(), counts[seen]):
                self.class_count_[pos[c]] += n
            self._new = new[~seen]
            self.classes_ = np.concatenate([self.classes_, self._new])
            self.class_count_ = np.concatenate([self.class_count_, counts[~seen]])
        else:
            self.n_features_in_ = X.shape[1]
            self._new = new
            self.classes_ = new
            self.class_count_ = counts.astype(np.int64)
        self._update(X, y)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(X, y) first")

    def _features(self, X: ArrayLike) -> np.ndarray:
        self._check_fitted()
        X = as_features(X).astype(np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has D={X.shape[1]} features but {type(self).__name__} was fitted with "
                             f"D={self.n_features_in_}")
        return X

    def embed(self, X: ArrayLike) -> np.ndarray:
        """``[N, E]`` the images as ``_scores`` reads them, through a map no update changes (default: the
        features as float64; RanPAC: its random projection). A caller that scores the same images after
        several updates (a class-incremental run) embeds them once and calls :meth:`scores_of`."""
        return self._features(X)

    def scores_of(self, Z: np.ndarray) -> np.ndarray:
        """Class scores ``[N, K]`` of images already passed through :meth:`embed`."""
        self._check_fitted()
        return self._scores(Z)

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Class scores ``[N, K]`` (columns in ``classes_`` order, higher is better)."""
        return self._scores(self.embed(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Label of the highest score ``[N]``."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def _index(self, y: np.ndarray) -> np.ndarray:
        """Column of each label of ``y`` in ``classes_``."""
        pos = {c: i for i, c in enumerate(self.classes_.tolist())}
        return np.array([pos[c] for c in y.tolist()], dtype=np.int64)
