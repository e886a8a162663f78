"""Linear discriminant analysis with one shared, shrunk covariance (``lda``), updatable class by class,
and the Mahalanobis distances it defines (also the out-of-distribution score of Lee et al. 2018).

The estimate is scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``:
each class covariance is a Ledoit-Wolf estimate on the class's standardised features, rescaled
(``sklearn.discriminant_analysis._cov``); the shared covariance is their prior-weighted average
``Sigma = sum_c pi_c Sigma_c`` with ``pi_c`` the class frequencies. Because it is a weighted sum of
per-class terms, a new class only adds ``n_c Sigma_c`` to a running sum: no old image is needed.
Scores: ``s_c(x) = x . Sigma^-1 mu_c - 1/2 mu_c . Sigma^-1 mu_c + log pi_c``, with ``Sigma^-1 mu_c`` the
least-squares solution as in the reference (by Cholesky when ``Sigma`` is positive definite; by the
pseudo-inverse when it is singular, e.g. with two images per class, where the Ledoit-Wolf shrinkage
of each class is 0).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.covariance import ledoit_wolf

from core.classify.base import IncrementalClassifier


def ledoit_wolf_class_cov(Xc: np.ndarray) -> np.ndarray:
    """``[D, D]`` Ledoit-Wolf covariance of one class on standardised features, scaled back.

    Zero-variance features keep scale 1 (as ``StandardScaler``). Needs at least 2 images: with one,
    the centred data are zero and so is the estimate.
    """
    mu = Xc.mean(axis=0)
    sd = Xc.std(axis=0)
    sd = np.where(sd == 0.0, 1.0, sd)  # StandardScaler's rule for constant features
    S = ledoit_wolf((Xc - mu) / sd)[0]  # [D, D]
    return sd[:, None] * S * sd[None, :]


class ShrunkLDA(IncrementalClassifier):
    """Shared-covariance Gaussian classifier (LDA, Ledoit-Wolf shrinkage), class-incremental.

    Attributes (after fit):
        means_: ``[K, D]`` class means.
        covariance_: ``[D, D]`` shared covariance ``sum_c pi_c Sigma_c``.
        coef_ / intercept_: ``[K, D]`` / ``[K]`` the linear scores (recomputed after each update).
    """

    min_per_class = 2

    def _reset(self) -> None:
        for a in ("means_", "_cov_sum", "coef_", "intercept_", "_chol", "_pinv"):
            self.__dict__.pop(a, None)

    def _update(self, X: np.ndarray, y: np.ndarray) -> None:
        D = X.shape[1]
        if not hasattr(self, "means_"):
            self.means_ = np.zeros((0, D))
            self._cov_sum = np.zeros((D, D))  # sum_c n_c Sigma_c
        means = []
        for c in self._new:
            Xc = X[y == c]
            means.append(Xc.mean(axis=0))
            self._cov_sum += len(Xc) * ledoit_wolf_class_cov(Xc)
        self.means_ = np.vstack([self.means_, np.asarray(means).reshape(-1, D)])
        self.covariance_ = self._cov_sum / self.class_count_.sum()
        try:  # positive definite (the usual case after shrinkage): Cholesky
            self._chol: np.ndarray | None = np.linalg.cholesky(self.covariance_)
            self._pinv: np.ndarray | None = None
        except np.linalg.LinAlgError:
            # singular, e.g. two images per class, where Ledoit-Wolf's shrinkage is 0: the minimum-norm
            # least-squares solution, which is what the reference's lstsq returns
            self._chol, self._pinv = None, np.linalg.pinv(self.covariance_, hermitian=True)
        self.coef_ = self._solve(self.means_.T).T  # [K, D] = (Sigma^-1 mu_c)^T
        prior = self.class_count_ / self.class_count_.sum()
        self.intercept_ = -0.5 * np.sum(self.means_ * self.coef_, axis=1) + np.log(prior)

    def _solve(self, B: np.ndarray) -> np.ndarray:
        """``Sigma^-1 B`` for ``B [D, m]`` (``Sigma^+ B`` when the covariance is singular)."""
        if self._chol is None:
            return self._pinv @ B
        z = solve_triangular(self._chol, B, lower=True)  # O(D^2 m): np.linalg.solve would factor again, O(D^3)
        return solve_triangular(self._chol.T, z, lower=False)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef_.T + self.intercept_[None, :]

    def mahalanobis_sq(self, X: np.ndarray) -> np.ndarray:
        """*Squared* Mahalanobis distance of every image to every class mean under the shared covariance
        (``_sq``: the convention of :mod:`core.classify.ood`, where a bare "Mahalanobis" is the distance).

        Args:
            X: ``[N, D]``.

        Returns:
            ``[N, K]`` ``(x - mu_c)^T Sigma^-1 (x - mu_c)``.
        """
        X = self._features(X)
        xx = np.sum(X * self._solve(X.T).T, axis=1)  # [N] x^T Sigma^-1 x
        mm = np.sum(self.means_ * self.coef_, axis=1)  # [K]
        return np.maximum(xx[:, None] - 2.0 * X @ self.coef_.T + mm[None, :], 0.0)
