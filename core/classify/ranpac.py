"""RanPAC: a frozen random projection with a ReLU, then class prototypes decorrelated by the
ridge-regularised Gram matrix (McDonnell et al., "RanPAC: Random Projections and Pre-trained Models
for Continual Learning", NeurIPS 2023; reference code RanPAC/RanPAC, ``RanPAC.py`` and ``inc_net.py``).

With ``h(x) = ReLU(x W)``, ``W [D, M]`` i.i.d. N(0, 1) drawn once (seeded), the paper accumulates
``G = sum_n h_n^T h_n`` ``[M, M]`` and ``C = sum_n h_n^T y_n`` ``[M, K]`` (one-hot ``y``; the columns of C
are the class prototypes in the projected space) and scores ``s(x) = h(x) (G + lambda I)^-1 C``.
Defaults as the paper: ``M = 10000``; ``lambda`` picked on each update's own images from
``10^-8 .. 10^8`` by the mean squared error of one-hot targets, fitting on the first 80 % and
scoring the last 20 % of the (shuffled, seeded) images.

No old image is kept. Instead of ``G`` and ``C`` themselves (``M x M``) the classifier keeps a
square-root factor ``R = [A | B]`` ``[r, M + K]`` with ``A^T A = G`` and ``A^T B = C``, ``r <= min(N, M + K)``
(each update's factor is the QR of its own ``[H Y]``, stacked under the earlier ones; a QR of the stack
only when it has more rows than columns), and applies the push-through identity
``(A^T A + lambda I)^-1 A^T B = A^T (A A^T + lambda I)^-1 B``: exact, and an ``r x r`` solve instead of
an ``M x M`` one.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

from core.classify.base import IncrementalClassifier

RIDGES: tuple[float, ...] = tuple(10.0 ** np.arange(-8, 9))  # the authors' grid
VAL_FRACTION = 0.2
SCORE_BLOCK = 2_048  # images projected at a time when scoring ([2048, 10000] float32: 80 MB)


@lru_cache(maxsize=4)
def random_projection(d: int, m: int, seed: int) -> np.ndarray:
    """``[d, m]`` i.i.d. standard normal projection (float32, read-only), the same for the same arguments."""
    W = np.random.default_rng(seed).standard_normal((d, m), dtype=np.float32)
    W.flags.writeable = False
    return W


def _ridge_solve(A: np.ndarray, B: np.ndarray, lam: float, gram: np.ndarray | None = None) -> np.ndarray:
    """``(A A^T + lam I)^-1 B`` for ``A [r, M]``, ``B [r, K]``; the dual of ``(A^T A + lam I)^-1 A^T B``.
    ``gram``: ``A A^T`` when the caller already has it (one Gram for every ridge tried)."""
    K_ = A @ A.T if gram is None else gram.copy()
    K_[np.diag_indices_from(K_)] += lam
    return np.linalg.solve(K_, B)


class RanPAC(IncrementalClassifier):
    """Random-projection + Gram-decorrelated prototypes (RanPAC), class-incremental.

    Args:
        M: projection size (paper: 10000).
        ridge: ``lambda``; ``None`` (default) chooses it at every update as the paper does.
        seed: seed of the projection and of the shuffle before the 80/20 ridge split.

    Attributes (after fit):
        ridge_: the ``lambda`` in use (the one chosen at the latest update, as the authors' code).
        ridge_history_: the ``lambda`` chosen at each update.
    """

    merges_seen_classes = True  # G and C are sums over images
    _R: np.ndarray  # [r, M + K] factor of [H Y]^T [H Y]

    def __init__(self, M: int = 10000, ridge: float | None = None, seed: int = 0):
        self.M = M
        self.ridge = ridge
        self.seed = seed

    def _reset(self) -> None:
        for a in ("_R", "ridge_", "ridge_history_", "_dual"):
            self.__dict__.pop(a, None)

    def _project(self, X: np.ndarray) -> np.ndarray:
        """``[N, M]`` float32 ``h(x) = ReLU(x W)``."""
        W = random_projection(X.shape[1], int(self.M), int(self.seed))
        return np.maximum(X.astype(np.float32) @ W, 0.0)

    def _choose_ridge(self, H: np.ndarray, Y: np.ndarray) -> float:
        """The paper's rule on one update's images: fit on 80 %, MSE on the other 20 %."""
        n_fit = int(len(H) * (1.0 - VAL_FRACTION))
        if n_fit == 0 or n_fit == len(H):
            raise ValueError(f"RanPAC chooses its ridge on an 80/20 split of each update's images; {len(H)} image(s) "
                             "cannot be split. Add images to this update, or pass ridge= explicitly")
        perm = np.random.default_rng([int(self.seed), len(H)]).permutation(len(H))
        Hf, Yf, Hv, Yv = H[perm[:n_fit]], Y[perm[:n_fit]], H[perm[n_fit:]], Y[perm[n_fit:]]
        gram = Hf @ Hf.T  # [n_fit, n_fit], shared by every ridge
        # Hv (Hf^T sol): [M, K] first, never the [n_val, n_fit] product
        losses = [np.mean((Hv @ (Hf.T @ _ridge_solve(Hf, Yf, lam, gram)) - Yv) ** 2) for lam in RIDGES]
        return float(RIDGES[int(np.argmin(losses))])

    def _update(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.M < 1:
            raise ValueError(f"M must be >= 1, got {self.M}")
        H = self._project(X).astype(np.float64)  # [n, M]; the ridge choice and the QR need float64
        K = len(self.classes_)
        Y = np.zeros((len(X), K))
        Y[np.arange(len(X)), self._index(y)] = 1.0  # [n, K] one-hot over all classes so far
        if self.ridge is None:
            lam = self._choose_ridge(H, Y[:, self._index(np.unique(y))])
        elif not self.ridge > 0:
            raise ValueError(f"ridge must be > 0, got {self.ridge}")
        else:
            lam = float(self.ridge)
        # R^T R = Z^T Z for this update's Z = [H Y]: a triangular factor that stores no image's projection
        R = np.asarray(np.linalg.qr(np.hstack([H, Y]), mode="r"))  # [min(n, M + K), M + K]
        if hasattr(self, "_R"):
            # R^T R = the sum over updates: the factors stacked (the old ones 0 in the new classes' columns)
            stacked = np.zeros((len(self._R) + len(R), R.shape[1]))
            stacked[: len(self._R), : self._R.shape[1]] = self._R
            stacked[len(self._R):] = R
            R = stacked
            if len(R) > R.shape[1]:  # more rows than columns: one QR brings them back to M + K
                R = np.asarray(np.linalg.qr(R, mode="r"))
        self._R = R
        self.ridge_ = lam
        self.ridge_history_ = [*getattr(self, "ridge_history_", []), lam]
        A, B = self._R[:, : self.M], self._R[:, self.M:]
        self._dual = _ridge_solve(A, B, lam)  # [r, K]

    def embed(self, X: ArrayLike) -> np.ndarray:
        """``[N, M]`` float32 ``h(x)``: the projection is fixed, so images scored after several updates are
        projected once (a class-incremental run)."""
        return self._project(self._features(X))

    def _scores(self, H: np.ndarray) -> np.ndarray:
        # h (A^T (AA^T + lam)^-1 B): the [M, K] readout first, then one float32 product
        return (H @ self.readout().astype(np.float32)).astype(np.float64)

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Class scores ``[N, K]``, projecting blocks of rows, so that no ``[N, M]`` projection (400 MB
        at N = 10,000) is held at once."""
        X = self._features(X)
        out = np.empty((len(X), len(self.classes_)))
        for s in range(0, len(X), SCORE_BLOCK):
            out[s:s + SCORE_BLOCK] = self._scores(self._project(X[s:s + SCORE_BLOCK]))
        return out

    def readout(self) -> np.ndarray:
        """``[M, K]`` the decorrelated prototypes ``(G + lambda I)^-1 C`` (the authors' ``Wo.T``)."""
        self._check_fitted()
        return self._R[:, : self.M].T @ self._dual
