"""FeCAM: per-class Mahalanobis distance with covariance shrinkage and a Tukey power transform
(Goswami et al., "FeCAM: Exploiting the Heterogeneity of Class Distributions in Exemplar-Free
Continual Learning", NeurIPS 2023; reference code dipamgoswami/FeCAM, ``models/base.py``,
``models/fecam.py``, ``utils/maha_utils.py`` and ``exps/FeCAM_*.json``).

The authors' rule, which this module follows (``t`` = Tukey transform ``x^beta``, ``beta = 0.5``):

* prototype ``p_c = normalise(t(mean of the class's features))``;
* covariance ``Sigma_c = cov(t(X_c))`` (``np.cov``, ``N - 1``), shrunk by
  ``Sigma + a1 V1 I + a2 V2 (1 - I)`` with ``V1`` the mean variance and ``V2`` the mean non-zero
  covariance, ``a1 = a2 = 1``, applied twice (once in ``compute_new_cov``, again in ``_train``: "we apply
  covariance shrinkage 2 times"), then turned into a correlation matrix (``normalize_cov``);
* an image ``x`` becomes ``z = normalise(t(normalise(x)))`` and goes to the class with the smallest
  ``(z - p_c)^T pinv(Sigma_c) (z - p_c)``.

One departure, named in the UI: the code's ``x^beta`` is undefined for negative features (ResNet
features are non-negative after ReLU; a ViT's are not); here ``t(x) = sign(x) |x|^beta``, which is the
same for non-negative features.

``Sigma_c`` is a rank ``n_c - 1`` sample covariance plus ``alpha I + beta 11^T``, scaled to unit
diagonal, so with fewer images than dimensions ``pinv`` is computed by the Woodbury identity
(``O(D n_c^2)``, exact when ``alpha > 0``); a dense pseudo-inverse otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg.lapack

from core.classify.base import IncrementalClassifier
from core.geometry.vectors import l2_normalize, work_dtype


def tukey(x: np.ndarray, beta: float) -> np.ndarray:
    """Tukey's ladder of powers: ``sign(x) |x|^beta`` (``log x`` for ``beta = 0``, positive ``x`` only)."""
    if beta == 0:
        if np.any(x <= 0):
            raise ValueError("the Tukey transform with beta = 0 is log(x) and needs positive features; use beta > 0")
        return np.log(x)
    y = np.abs(x)  # one [N, D] array, transformed in place
    np.power(y, beta, out=y)
    return np.copysign(y, x, out=y)


def _pinv_symmetric(A: np.ndarray) -> np.ndarray:
    """``pinv(A)`` of a symmetric ``A [D, D]``: from its Cholesky factor (LAPACK ``potrf`` / ``potri``) when
    ``A`` is positive definite, where the pseudo-inverse is the inverse (about twice as fast as the
    eigendecomposition), else ``np.linalg.pinv(A, hermitian=True)``."""
    factor, info = scipy.linalg.lapack.dpotrf(A, lower=1, clean=0)
    if info == 0:
        inv, info = scipy.linalg.lapack.dpotri(factor, lower=1)  # the lower triangle of A^-1
        if info == 0:
            out = np.tril(inv)  # A^-1 is symmetric: its lower triangle mirrored, in one array
            out += np.tril(out, -1).T
            return out
    return np.linalg.pinv(A, hermitian=True)


def shrink_cov(S: np.ndarray, alpha1: float = 1.0, alpha2: float = 1.0) -> tuple[float, float]:
    """One FeCAM shrinkage step ``S + a1 V1 I + a2 V2 (1 - I)``, returned as ``(a, b)`` with the result
    ``S + a I + b (1 - I)``: ``V1`` = mean diagonal, ``V2`` = mean of the non-zero off-diagonal entries."""
    off = S - np.diag(np.diag(S))
    nz = off != 0.0
    nz[np.diag_indices_from(nz)] = False
    v2 = float(off[nz].mean()) if nz.any() else 0.0
    return alpha1 * float(np.mean(np.diag(S))), alpha2 * v2


@dataclass(frozen=True)
class _ClassModel:
    """One class: ``Sigma = diag(sqrt d)^-1 (U U^T + alpha I + beta 11^T) diag(sqrt d)^-1``."""

    proto: np.ndarray  # [D]
    U: np.ndarray  # [D, n] centred transformed features / sqrt(n - 1)
    alpha: float
    beta: float
    sqrt_d: np.ndarray  # [D] sqrt of the diagonal before the correlation scaling
    core_inv: np.ndarray | None  # [(n+1), (n+1)] Woodbury core, or None when dense
    dense_pinv: np.ndarray | None  # [D, D] when alpha <= 0


class FeCAM(IncrementalClassifier):
    """Per-class Mahalanobis classifier (FeCAM), class-incremental.

    Args:
        beta: Tukey exponent (paper and code: 0.5).
        alpha1 / alpha2: shrinkage of the variances / covariances (code, ResNet runs: 1 and 1).
        shrink_passes: times the shrinkage is applied (code: 2).

    Scores are negative squared distances; :meth:`mahalanobis_sq` gives the squared distances.
    """

    min_per_class = 2  # a covariance needs two images
    fixed_class_scores = True  # each class has its own mean and covariance

    def __init__(self, beta: float = 0.5, alpha1: float = 1.0, alpha2: float = 1.0, shrink_passes: int = 2):
        self.beta = beta
        self.alpha1 = alpha1
        self.alpha2 = alpha2
        self.shrink_passes = shrink_passes

    def _reset(self) -> None:
        self.__dict__.pop("_models", None)

    def _class_model(self, Xc: np.ndarray) -> _ClassModel:
        T = tukey(Xc, self.beta)  # [n, D]
        n, D = T.shape
        U = (T - T.mean(axis=0)).T / np.sqrt(n - 1)  # [D, n], U U^T = np.cov(T.T)
        S = U @ U.T  # [D, D]
        a_tot = b_tot = 0.0
        for _ in range(self.shrink_passes):  # each pass shrinks the current matrix
            cur = S + a_tot * np.eye(D) + b_tot * (1.0 - np.eye(D))
            a, b = shrink_cov(cur, self.alpha1, self.alpha2)
            a_tot, b_tot = a_tot + a, b_tot + b
        alpha, beta = a_tot - b_tot, b_tot  # S + a(I) + b(1 - I) = S + (a - b) I + b 11^T
        d = np.sum(U ** 2, axis=1) + alpha + beta  # [D] diagonal
        if np.any(d <= 0):
            raise ValueError("FeCAM: a shrunk class covariance has a non-positive variance; raise alpha1")
        sqrt_d = np.sqrt(d)
        proto = l2_normalize(tukey(Xc.mean(axis=0, keepdims=True), self.beta))[0]
        if alpha > 0 and n + 1 < D:  # Woodbury pays off with fewer images than dimensions
            L = np.hstack([U, np.ones((D, 1))])  # [D, n + 1]
            c_inv = np.ones(n + 1)
            if beta == 0.0:
                L, c_inv = U, c_inv[:n]
            else:
                c_inv[-1] = 1.0 / beta
            core = np.diag(c_inv) + (L.T @ L) / alpha
            return _ClassModel(proto, L, alpha, beta, sqrt_d, np.linalg.inv(core), None)
        full = (S + alpha * np.eye(D) + beta) / np.outer(sqrt_d, sqrt_d)
        return _ClassModel(proto, U, alpha, beta, sqrt_d, None, _pinv_symmetric(full))

    def _update(self, X: np.ndarray, y: np.ndarray) -> None:
        if not hasattr(self, "_models"):
            if not self.shrink_passes >= 0:
                raise ValueError(f"shrink_passes must be >= 0, got {self.shrink_passes}")
            self._models: list[_ClassModel] = []
        self._models += [self._class_model(X[y == c]) for c in self._new]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``[N, D]`` the images as FeCAM compares them: ``normalise(t(normalise(x)))``."""
        return l2_normalize(tukey(l2_normalize(X), self.beta))

    def mahalanobis_sq(self, X: np.ndarray) -> np.ndarray:
        """``[N, K]`` *squared* Mahalanobis distance of every image to every class. With float32 features
        (embeddings as stored) the dense ``[N, D] x [D, D]`` products run in float32, each row's sum in
        float64; float64 features keep float64 throughout."""
        dt = work_dtype(np.asarray(X))
        Z = self.transform(self._features(X))
        out = np.empty((len(Z), len(self._models)))
        Zd = Z.astype(dt, copy=False)
        V, VP = np.empty_like(Zd), np.empty_like(Zd)  # [N, D] buffers shared by every class of the dense path
        for k, m in enumerate(self._models):
            if m.core_inv is not None:
                W = (Z - m.proto[None, :]) * m.sqrt_d[None, :]  # [N, D]; z^T C^-1 z = w^T P^-1 w, w = sqrt(d) z
                LW = W @ m.U  # [N, n + 1]
                # the quadratic form row by row, as one matrix product (a 3-operand einsum loops in C)
                out[:, k] = (np.sum(W ** 2, axis=1) / m.alpha
                             - np.sum((LW @ m.core_inv) * LW, axis=1) / m.alpha ** 2)
            else:
                assert m.dense_pinv is not None  # built when the Woodbury form does not pay off
                np.subtract(Zd, m.proto.astype(dt)[None, :], out=V)
                np.matmul(V, m.dense_pinv.astype(dt), out=VP)
                out[:, k] = np.sum(np.multiply(VP, V, out=VP), axis=1, dtype=np.float64)
        return out

    def _scores(self, X: np.ndarray) -> np.ndarray:
        return -self.mahalanobis_sq(X)
