"""Gaussian naive Bayes on frozen features, in two variants.

* :class:`SharedVarianceNB` (``nb``): the naive Bayes of Zheng et al., "Revisiting Discriminative vs.
  Generative Classifiers: Theory and Implications" (ICML 2023), as in the authors' code
  (ML-GSAI/Revisiting-Dis-vs-Gen-Classifiers, ``models/gaussnb.py``). Every class has its own mean
  and its own (population) variance per feature plus ``epsilon``; prediction uses one diagonal
  variance shared by all classes, the prior-weighted average ``sigma^2 = sum_c pi_c var_c``, so the
  log-likelihood terms ``log(2 pi sigma^2)`` cancel and the decision rule is linear in ``x``: the
  generative twin of logistic regression that the paper studies.
* :class:`PerClassVarianceNB` (``nb_per_class``): scikit-learn's ``GaussianNB``: a variance per class
  and feature, smoothed by ``var_smoothing * max_j var(X[:, j])``; quadratic decision rule.

Both update their statistics class by class (Chan et al.'s pairwise rule for more images of a known
class, as both reference implementations do), so they slot into class-incremental runs.
"""
from __future__ import annotations

import numpy as np

from core.classify.base import IncrementalClassifier


class _GaussianStats(IncrementalClassifier):
    """Per-class counts, means ``theta_ [K, D]`` and variances ``var_ [K, D]`` (with the smoothing added)."""

    merges_seen_classes = True
    _eps_in_merge = True  # the authors merge the smoothed variances; GaussianNB removes epsilon first

    def _reset(self) -> None:
        for a in ("theta_", "var_", "epsilon_"):
            self.__dict__.pop(a, None)

    def _epsilon(self, X: np.ndarray) -> float:
        raise NotImplementedError

    def _update(self, X: np.ndarray, y: np.ndarray) -> None:
        if not hasattr(self, "theta_"):
            self.epsilon_ = self._epsilon(X)
            self.theta_ = np.zeros((0, X.shape[1]))
            self.var_ = np.zeros((0, X.shape[1]))
        K_old = len(self.theta_)
        self.theta_ = np.vstack([self.theta_, np.zeros((len(self._new), X.shape[1]))])
        self.var_ = np.vstack([self.var_, np.zeros((len(self._new), X.shape[1]))])
        idx = self._index(y)  # [n] column of each image's class
        for k in np.unique(idx):
            Xc = X[idx == k]
            n_new, mu_new, var_new = len(Xc), Xc.mean(axis=0), Xc.var(axis=0) + self.epsilon_
            if k >= K_old:  # a new class
                self.theta_[k], self.var_[k] = mu_new, var_new
                continue
            n_old = self.class_count_[k] - n_new  # class_count_ already includes this batch
            n = n_old + n_new
            e = 0.0 if self._eps_in_merge else self.epsilon_
            var_old, var_new = self.var_[k] - e, var_new - e
            # pooled sum of squared deviations of the two parts (Chan, Golub & LeVeque)
            ssd = n_old * var_old + n_new * var_new + n_old * n_new / n * (self.theta_[k] - mu_new) ** 2
            self.theta_[k] = (n_old * self.theta_[k] + n_new * mu_new) / n
            self.var_[k] = ssd / n + e

    @property
    def class_prior_(self) -> np.ndarray:
        """``[K]`` class frequencies of the training images."""
        return self.class_count_ / self.class_count_.sum()


class SharedVarianceNB(_GaussianStats):
    """Naive Bayes with one diagonal variance shared by all classes (Zheng et al. 2023; ``nb``).

    ``var_`` holds the per-class variances ``var_c + epsilon`` (as the authors store them);
    ``shared_var_`` is ``sum_c pi_c var_[c]`` with ``pi_c`` the class frequencies, recomputed when
    classes are added. Scores (the authors' ``predict``)::

        s_c(x) = log pi_c - 1/2 sum_j (x_j - theta_cj)^2 / shared_var_j

    Args:
        epsilon: added to every per-class variance (the authors' ``val_epsilon``, default 1e-9).
    """

    def __init__(self, epsilon: float = 1e-9):
        self.epsilon = epsilon

    def _epsilon(self, X: np.ndarray) -> float:
        if not self.epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {self.epsilon}")
        return float(self.epsilon)

    @property
    def shared_var_(self) -> np.ndarray:
        """``[D]`` prior-weighted average of the per-class variances."""
        self._check_fitted()
        return self.class_prior_ @ self.var_

    def _scores(self, X: np.ndarray) -> np.ndarray:
        inv = 1.0 / self.shared_var_  # [D]
        # sum_j (x_j - t_cj)^2 / v_j = x^2.inv - 2 x.(t_c inv) + t_c^2.inv, for all classes at once
        quad = (X ** 2) @ inv[:, None] - 2.0 * X @ (self.theta_ * inv).T + ((self.theta_ ** 2) @ inv)[None, :]  # [N, K]
        return np.log(self.class_prior_)[None, :] - 0.5 * quad


class PerClassVarianceNB(_GaussianStats):
    """Naive Bayes with a variance per class and feature: scikit-learn's ``GaussianNB`` (``nb_per_class``).

    ``epsilon_ = var_smoothing * max_j var(X[:, j])`` over the images of the first call (as
    ``GaussianNB.partial_fit``), added to every per-class variance. Scores are the joint
    log-likelihoods (``GaussianNB.predict_joint_log_proba``)::

        s_c(x) = log pi_c - 1/2 sum_j [log(2 pi var_cj) + (x_j - theta_cj)^2 / var_cj]

    Args:
        var_smoothing: as ``GaussianNB`` (default 1e-9).
    """

    _eps_in_merge = False

    def __init__(self, var_smoothing: float = 1e-9):
        self.var_smoothing = var_smoothing

    def _epsilon(self, X: np.ndarray) -> float:
        if not self.var_smoothing >= 0:
            raise ValueError(f"var_smoothing must be >= 0, got {self.var_smoothing}")
        return float(self.var_smoothing * np.var(X, axis=0).max())

    def _scores(self, X: np.ndarray) -> np.ndarray:
        inv = 1.0 / self.var_  # [K, D]
        quad = (X ** 2) @ inv.T - 2.0 * X @ (self.theta_ * inv).T + np.sum(self.theta_ ** 2 * inv, axis=1)[None, :]
        log_det = np.sum(np.log(2.0 * np.pi * self.var_), axis=1)  # [K]
        return np.log(self.class_prior_)[None, :] - 0.5 * (log_det[None, :] + quad)
