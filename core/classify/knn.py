"""k-nearest-neighbour vote in cosine similarity, as scikit-learn's
``KNeighborsClassifier(metric="cosine")`` decides (uniform weights; a tie between labels goes to the
one that sorts first), computed for dataset-sized sets: unit rows are kept in float32 and each block of
queries is one matrix product with the training set and a top-k, so 10,000 queries against
20,000 training images take seconds and never hold more than a ``[block, N]`` similarity matrix.
"""
from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin

from core.geometry.vectors import as_features, as_labels, l2_normalize

QUERY_BLOCK = 1_024  # queries per [block, N] float32 similarity matrix (80 MB at N = 20,000)


class CosineKNN(ClassifierMixin, BaseEstimator):
    """Majority label of the ``n_neighbors`` most cosine-similar training images.

    Attributes (after fit):
        classes_: ``[K]`` sorted labels.
        n_features_in_: ``D``.
    """

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def fit(self, X: ArrayLike, y: ArrayLike) -> "CosineKNN":
        X = as_features(X)
        y = as_labels(y, len(X))
        if self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {self.n_neighbors}")
        if self.n_neighbors > len(X):
            raise ValueError(f"n_neighbors={self.n_neighbors} but only {len(X)} training images")
        self.classes_, self._codes = np.unique(y, return_inverse=True)  # [K], [N]
        self._ref = l2_normalize(X, dtype=np.float32)  # [N, D] unit rows
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """``[M]`` the majority label of each query's neighbours."""
        if not hasattr(self, "_ref"):
            raise ValueError("CosineKNN is not fitted; call fit(X, y) first")
        Q = as_features(X)
        if Q.shape[1] != self.n_features_in_:
            raise ValueError(f"X has D={Q.shape[1]} features but CosineKNN was fitted with D={self.n_features_in_}")
        k, K = self.n_neighbors, len(self.classes_)
        out = np.empty(len(Q), dtype=np.int64)
        for s in range(0, len(Q), QUERY_BLOCK):
            S = l2_normalize(Q[s:s + QUERY_BLOCK], dtype=np.float32) @ self._ref.T  # [m, N] cosines
            # [m, k] the k most similar, unordered (torch's top-k: many times numpy's argpartition here)
            top = torch.from_numpy(S).topk(k, dim=1, sorted=False).indices.numpy()
            votes = np.zeros((len(S), K), dtype=np.int64)  # [m, K]
            rows = np.arange(len(S))
            for j in range(top.shape[1]):  # one neighbour rank at a time: no (row, label) repeats within it
                votes[rows, self._codes[top[:, j]]] += 1
            out[s:s + len(S)] = np.argmax(votes, axis=1)  # the first (sorted) label among the most voted
        return self.classes_[out]
