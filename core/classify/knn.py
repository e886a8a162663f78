"""k-nearest-neighbour vote in cosine similarity, as scikit-learn's
``KNeighborsClassifier(metric="cosine")`` decides (uniform weights; a tie between labels goes to the
one that sorts first), computed for dataset-sized sets by the chunked neighbour search of
:func:`core.geometry.neighbours.cosine_neighbours` (float32 products for float32 features, torch's
top-k), so 10,000 queries against 20,000 training images take seconds and never hold more than one
``[chunk, N]`` similarity block.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin

from core.geometry.neighbours import cosine_neighbours, majority_vote
from core.geometry.vectors import as_features, as_labels, l2_normalize, work_dtype


class CosineKNN(ClassifierMixin, BaseEstimator):
    """Majority label of the ``n_neighbors`` most cosine-similar training images.

    Attributes (after fit):
        classes_: ``[K]`` sorted labels.
        n_features_in_: ``D``.
    """

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def fit(self, X: ArrayLike, y: ArrayLike) -> CosineKNN:
        X = as_features(X)
        y = as_labels(y, len(X))
        if self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {self.n_neighbors}")
        if self.n_neighbors > len(X):
            raise ValueError(f"n_neighbors={self.n_neighbors} but only {len(X)} training images")
        self.classes_, self._codes = np.unique(y, return_inverse=True)  # [K], [N]
        self._ref = l2_normalize(X, dtype=work_dtype(X))  # [N, D] unit rows, in the features' precision
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """``[M]`` the majority label of each query's neighbours."""
        if not hasattr(self, "_ref"):
            raise ValueError("CosineKNN is not fitted; call fit(X, y) first")
        Q = as_features(X)
        if Q.shape[1] != self.n_features_in_:
            raise ValueError(f"X has D={Q.shape[1]} features but CosineKNN was fitted with D={self.n_features_in_}")
        top = cosine_neighbours(Q, self._ref, k=self.n_neighbors).indices  # [M, k]
        return self.classes_[majority_vote(self._codes[top], len(self.classes_))]
