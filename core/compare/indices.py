"""Similarity indices between two representations of the same N images, each with a bootstrap
confidence interval over images and a permutation baseline.

Each index is a :class:`SimilarityIndex` subclass registered by name (:func:`register_index`;
:data:`INDICES`, :func:`index_names`, :func:`check_index`): its info (label, summary, direction, whether
it takes k, range) and three operations on one pair, ``value()``, ``draw(w)`` (a bootstrap draw as image
counts) and ``shuffled(p)`` (Y's rows permuted). :func:`estimate` is the one loop of draws and
shuffles around them; :func:`index_matrices` shares each pair's work (:class:`_PairWork`) between indices.

Indices (``X [N, D1]`` and ``Y [N, D2]``, row i = image i in both):

* ``cka_unbiased``: linear CKA from the unbiased HSIC estimator (Song et al. 2012, eq. 5;
  used for CKA by Nguyen et al. 2021 and Kornblith et al.): ``HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))``
  with ``K = X X^T``, ``L = Y Y^T`` and
  ``HSIC_1 = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))``, ``K~`` = K with
  a zero diagonal. Plain CKA is biased upwards when N is small or D large; this estimate is not (it
  can dip below 0 for unrelated representations). Computed in feature space, never as an N x N matrix:
  ``tr(K~L~) = ||X^T Y||_F^2 - sum_i |x_i|^2 |y_i|^2`` etc., O(N D1 D2) time.
* ``mutual_knn``: mutual k-nearest-neighbour alignment (Huh et al. 2024, "The Platonic Representation
  Hypothesis"): for each image, the share of its k nearest neighbours (cosine, itself excluded) that
  the two representations have in common, averaged over images. 1 = the same neighbourhoods.
* ``cknna``: CKNNA (same paper): unbiased-HSIC CKA restricted to mutual-neighbour pairs,
  ``HSIC_1(a*K, a*L) / sqrt(HSIC_1(a_K*K, a_K*K) HSIC_1(a_L*L, a_L*L))`` with ``K``, ``L`` the cosine kernels,
  ``a_K[i, j] = 1`` when j is among i's k nearest neighbours in X (``a_L`` for Y) and ``a = a_K * a_L``.
  Only the N*k neighbour pairs are ever stored (sparse matrices).
* ``procrustes``: orthogonal Procrustes distance (Ding et al. 2021; Williams et al. 2021):
  ``2 - 2 ||X^T Y||_*`` after centring each representation and scaling it to unit Frobenius norm; in
  ``[0, 2]``, 0 = equal up to rotation, reflection and scale. A distance: lower = more similar.

Scaling (what keeps 100,000 images feasible): neighbours come from chunked top-k
(:func:`core.geometry.neighbours.cosine_neighbours`, ``[512, N]`` blocks), so memory is O(N k), time
O(N^2 D). The neighbour indices run on a seeded subsample of at most :data:`MAX_KNN_IMAGES` images
(all of them below that). CKA and Procrustes use every image (feature space, O(N D1 D2)); their
bootstrap and permutations run on a seeded subsample of at most :data:`MAX_RESAMPLE_IMAGES` images,
which can only widen the interval; there the unbiased CKA's draws use the subsample's Gram matrices
(``[n, n]`` with n <= 2,000: 32 MB each), so a draw costs O(n^2) instead of O(n D1 D2).

Confidence interval: images are resampled with replacement (``n_boot`` draws); the percentile interval
of the draws is shifted by the bootstrap estimate of bias (mean of the draws minus the value; Efron &
Tibshirani 1993, ch. 10) and clipped to the index's range. The shift is about zero for the unbiased CKA,
mutual k-NN and CKNNA; it matters for the Procrustes distance, which depends on how many distinct
images there are relative to the dimension (with N <= D any two sets of points can be rotated onto
each other almost exactly, and a draw holds only about 0.63 N distinct images). Below N ~ 2 D
(the smaller D of the pair) that distance means little whatever its interval.
Copies of one image in a resample are never paired with each other (their pair counts zero, as the
zeroed kernel diagonal does), and the neighbour graph of the kNN indices stays the one of the full
set (a resample reweights images, it does not change who is whose neighbour).
Permutation baseline: the rows of Y are shuffled against X (``n_perm`` draws): the value two unrelated
representations with these marginals would get. ``p_value`` = share of permutations at least as
similar as the observed value (with the +1 correction).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from core.geometry.neighbours import Neighbours, cosine_neighbours
from core.geometry.vectors import as_features, work_dtype

DEFAULT_K = 10
DEFAULT_BOOT = 200
DEFAULT_PERM = 100
DEFAULT_LEVEL = 0.95
MAX_KNN_IMAGES = 10_000       # mutual-kNN / CKNNA subsample above this many images
MAX_RESAMPLE_IMAGES = 2_000   # CKA / Procrustes: images in each bootstrap or permutation draw
_ROW_CHUNK = 8_192            # rows per float64 block in feature-space sums


# ---- point estimates ------------------------------------------------------------------------------------
def _pair(X: ArrayLike, Y: ArrayLike, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    A, B = as_features(X, "X"), as_features(Y, "Y")
    if len(A) != len(B):
        raise ValueError(f"X has {len(A)} images but Y has {len(B)}; the indices compare the same images")
    if len(A) < min_n:
        raise ValueError(f"this index needs at least {min_n} images, got {len(A)}")
    return A, B


def _wsum_outer(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``A^T diag(w) B`` ``[D1, D2]``, accumulated in float64 over row blocks (``w >= 0``: image counts).
    ``B is A`` is the Gram of the features, ``(sqrt(w) A)^T (sqrt(w) A)``: one symmetric product."""
    dt = work_dtype(A, B)
    out = np.zeros((A.shape[1], B.shape[1]))
    for s in range(0, len(A), _ROW_CHUNK):
        a: np.ndarray = A[s:s + _ROW_CHUNK].astype(dt, copy=False)
        ws: np.ndarray = w[s:s + _ROW_CHUNK, None].astype(dt)
        if B is A:
            aw = a * np.sqrt(ws)
            out += aw.T @ aw
        else:
            out += a.T @ (B[s:s + _ROW_CHUNK].astype(dt, copy=False) * ws)
    return out


def _row_dot(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``A @ v`` ``[N]`` in float64, without a float64 copy of ``A``."""
    return (A @ v.astype(work_dtype(A), copy=False)).astype(np.float64)


def _hsic_terms(m: float, t1: float, s_k: float, s_l: float, t3: float) -> float:
    """Song et al.'s unbiased HSIC from its four sums (``m`` images)."""
    return (t1 + s_k * s_l / ((m - 1) * (m - 2)) - 2.0 * t3 / (m - 2)) / (m * (m - 3))


def _linear_hsic(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> float:
    """Unbiased HSIC of the linear kernels of ``A [N, D1]``, ``B [N, D2]`` for image counts ``w [N]``
    (1 = the set itself; a bootstrap draw's multiplicities otherwise), without N x N matrices."""
    m = float(w.sum())
    ka = np.einsum("ij,ij->i", A, A, dtype=np.float64)  # [N] |a_i|^2 = K_ii
    kb = np.einsum("ij,ij->i", B, B, dtype=np.float64)
    sa = _row_dot(A.T, w)  # [D1] sum_i w_i a_i
    sb = _row_dot(B.T, w)
    t1 = float(np.sum(_wsum_outer(A, B, w) ** 2) - np.sum(w ** 2 * ka * kb))  # sum_{i!=j} w_i w_j K_ij L_ij
    s_k = float(sa @ sa - np.sum(w ** 2 * ka))  # 1'K~1
    s_l = float(sb @ sb - np.sum(w ** 2 * kb))
    u = _row_dot(A, sa) - w * ka  # [N] (K~ 1) at each image
    v = _row_dot(B, sb) - w * kb
    return _hsic_terms(m, t1, s_k, s_l, float(np.sum(w * u * v)))


def _centred(X: np.ndarray) -> np.ndarray:
    """Rows minus their mean (float32 stays float32, the mean taken in float64; anything else in
    float64); with fewer images than dimensions, the same rows in the basis of their principal
    directions ``[N, r]`` (exact for these indices: both are invariant to rotations and
    translations, and much faster)."""
    dt = work_dtype(X)
    Z = X.astype(dt, copy=False) - X.mean(0, dtype=np.float64).astype(dt)
    if len(Z) < Z.shape[1]:
        U, S, _ = np.linalg.svd(Z, full_matrices=False)  # Z = U S V^T, V orthonormal
        Z = U * S  # [N, N]: Z V
    return Z


def _cka_unbiased(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> float:
    kl, kk, ll = _linear_hsic(A, B, w), _linear_hsic(A, A, w), _linear_hsic(B, B, w)
    return kl / np.sqrt(kk * ll) if kk > 0 and ll > 0 else float("nan")


def cka_unbiased(X: ArrayLike, Y: ArrayLike) -> float:
    """Linear CKA with the unbiased HSIC estimator (see the module docstring); needs N >= 4."""
    A, B = _pair(X, Y, 4)
    return _cka_unbiased(_centred(A), _centred(B), np.ones(len(A)))


class _GramCka:
    """Unbiased CKA draws on a bounded subsample (n <= :data:`MAX_RESAMPLE_IMAGES`) from its Gram
    matrices, built once: a draw reweights images, a shuffle permutes L's rows and columns.

    Song et al.'s sums for image counts ``w`` need five products with the ``[n, n]`` matrices
    (``K w``, ``L w``, ``(K*L) w``, ``(K*K) w``, ``(L*L) w``), each made once per draw. A shuffle keeps
    ``w = 1``: ``HSIC(K, K)`` and ``HSIC(L, L)`` do not change and ``L 1`` is permuted, so only
    ``sum(K * L[p, p])`` is computed."""

    def __init__(self, A: np.ndarray, B: np.ndarray):
        self.K, self.L = A @ A.T, B @ B.T  # [n, n] each
        self.KL, self.KK, self.LL = self.K * self.L, self.K * self.K, self.L * self.L
        self.kd, self.ld = np.diag(self.K).astype(np.float64), np.diag(self.L).astype(np.float64)  # [n]
        one = np.ones(len(self.K))
        self._k1, self._l1 = self._mv(self.K, one), self._mv(self.L, one)  # [n] row sums
        self._hsic_kk = self._hsic(one, self.kd, self.kd, self._k1, self._k1, self._mv(self.KK, one))
        self._hsic_ll = self._hsic(one, self.ld, self.ld, self._l1, self._l1, self._mv(self.LL, one))

    @staticmethod
    def _hsic(w: np.ndarray, kd: np.ndarray, ld: np.ndarray, Kw: np.ndarray, Lw: np.ndarray, KLw: np.ndarray) -> float:
        """Unbiased HSIC of ``K``, ``L`` for image counts ``w`` from the products ``K w``, ``L w``, ``(K*L) w``
        and the diagonals ``kd``, ``ld`` (a zeroed diagonal, the same sums as :func:`_linear_hsic`)."""
        t1 = float(w @ KLw - np.sum(w ** 2 * kd * ld))
        s_k, s_l = float(w @ Kw - np.sum(w ** 2 * kd)), float(w @ Lw - np.sum(w ** 2 * ld))
        return _hsic_terms(float(w.sum()), t1, s_k, s_l, float(np.sum(w * (Kw - w * kd) * (Lw - w * ld))))

    @staticmethod
    def _ratio(kl: float, kk: float, ll: float) -> float:
        return kl / np.sqrt(kk * ll) if kk > 0 and ll > 0 else float("nan")

    def _mv(self, M: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``M w`` in ``M``'s precision (a float64 ``w`` would copy a float32 ``M`` to float64 every time)."""
        return (M @ w.astype(M.dtype)).astype(np.float64)

    def value(self, w: np.ndarray) -> float:
        Kw, Lw = self._mv(self.K, w), self._mv(self.L, w)
        kl = self._hsic(w, self.kd, self.ld, Kw, Lw, self._mv(self.KL, w))
        kk = self._hsic(w, self.kd, self.kd, Kw, Kw, self._mv(self.KK, w))
        ll = self._hsic(w, self.ld, self.ld, Lw, Lw, self._mv(self.LL, w))
        return self._ratio(kl, kk, ll)

    def shuffled(self, p: np.ndarray) -> float:
        # L[p, p]: its diagonal and row sums are the permuted ones; only (K * L[p, p]) 1 is new
        KLp1 = np.asarray(np.sum(self.K * self.L[np.ix_(p, p)], axis=1, dtype=np.float64))  # [n]
        kl = self._hsic(np.ones(len(p)), self.kd, self.ld[p], self._k1, self._l1[p], KLp1)
        return self._ratio(kl, self._hsic_kk, self._hsic_ll)


def _procrustes(A: np.ndarray, B: np.ndarray, w: np.ndarray, sq_a: np.ndarray | None = None,
                sq_b: np.ndarray | None = None) -> float:
    """Procrustes distance of ``A [N, D1]`` and ``B [N, D2]`` (already centred on the whole set) for image
    counts ``w``, each set centred on its own weighted mean: ``sum_i w_i (a_i - a)(b_i - b)^T =
    A^T W B - m a b^T``, so no centred copy is made. ``sq_a`` / ``sq_b``: the rows' squared norms ``[N]``
    when the caller already has them (the same for every draw)."""
    m = w.sum()
    sa, sb = _row_dot(A.T, w), _row_dot(B.T, w)  # [D1], [D2] weighted sums
    sq_a = np.einsum("ij,ij->i", A, A, dtype=np.float64) if sq_a is None else sq_a
    sq_b = np.einsum("ij,ij->i", B, B, dtype=np.float64) if sq_b is None else sq_b
    na2, nb2 = float(w @ sq_a - sa @ sa / m), float(w @ sq_b - sb @ sb / m)  # squared Frobenius norms
    if na2 <= 0 or nb2 <= 0:
        raise ValueError("a representation is constant over these images: the Procrustes distance is undefined")
    M = (_wsum_outer(A, B, w) - np.outer(sa, sb) / m) / np.sqrt(na2 * nb2)  # [D1, D2]
    G = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M  # singular values^2 = eigenvalues
    nuclear = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(G), 0.0, None))))
    return max(0.0, 2.0 - 2.0 * nuclear)


def procrustes_distance(X: ArrayLike, Y: ArrayLike) -> float:
    """Orthogonal Procrustes distance in ``[0, 2]`` (see the module docstring); needs N >= 2."""
    A, B = _pair(X, Y, 2)
    return _procrustes(_centred(A), _centred(B), np.ones(len(A)))


def knn_graph(X: ArrayLike, k: int = DEFAULT_K) -> np.ndarray:
    """``[N, k]`` each image's k most cosine-similar other images (chunked top-k, O(N k) memory)."""
    return _knn(X, k).indices


def _knn(X: ArrayLike, k: int) -> Neighbours:
    """:func:`knn_graph` with the cosine similarities ``[N, k]`` of the pairs (the CKNNA kernel values)."""
    A = as_features(X)
    if not 1 <= k <= len(A) - 1:
        raise ValueError(f"k must be in [1, N-1] = [1, {len(A) - 1}], got {k}")
    return cosine_neighbours(A, A, k, exclude=list(range(len(A))))


def _overlap(na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """``[N]`` share of common entries of two ``[N, k]`` neighbour lists, row by row."""
    k = na.shape[1]
    common = np.zeros(len(na))
    for j in range(k):  # is na's j-th neighbour anywhere in nb's row? ([N, k] at a time, never [N, k, k])
        common += (nb == na[:, j:j + 1]).any(axis=1)
    return common / k


def mutual_knn_overlap(X: ArrayLike, Y: ArrayLike, k: int = DEFAULT_K) -> np.ndarray:
    """``[N]`` per image: the share of its k nearest neighbours (cosine) shared by X and Y."""
    A, B = _pair(X, Y, 2)
    return _overlap(knn_graph(A, k), knn_graph(B, k))


def mutual_knn(X: ArrayLike, Y: ArrayLike, k: int = DEFAULT_K) -> float:
    """Mutual k-NN alignment: the mean of :func:`mutual_knn_overlap`."""
    return float(mutual_knn_overlap(X, Y, k).mean())


def _sparse_hsic(Ka: sp.csr_matrix, Kb: sp.csr_matrix, prod: sp.csr_matrix, w: np.ndarray) -> float:
    """Unbiased HSIC of two sparse kernels with zero diagonals, images counted ``w`` times;
    ``prod`` = ``Ka * Kb^T`` elementwise (precomputed: it does not depend on ``w``)."""
    m = float(w.sum())
    t1 = float(w @ (prod @ w))  # sum_ij w_i w_j K_ij L_ji
    s_k, s_l = float(w @ Ka @ w), float(w @ Kb @ w)
    t3 = float(np.sum(w * (Ka.T @ w) * (Kb @ w)))  # 1'K~L~1: column sums of K~ times row sums of L~
    return _hsic_terms(m, t1, s_k, s_l, t3)


class _Cknna:
    """CKNNA on one (sub)set, built once: the cosine kernels at each representation's own neighbour
    pairs (sparse, N k entries each). A bootstrap draw only reweights images; a shuffle of Y's rows
    permutes Y's sparse kernel (its neighbour pairs and values move with the rows), so neither
    recomputes a neighbour or a dot product."""

    def __init__(self, ga: Neighbours, gb: Neighbours):
        na, nb = ga.indices, gb.indices  # [n, k] each representation's own neighbours
        n, k = na.shape
        rows = np.repeat(np.arange(n), k)
        # the cosine kernel at a representation's neighbour pairs is the similarity its search found
        self.Ka = sp.csr_matrix((ga.similarities.ravel(), (rows, na.ravel())), shape=(n, n))  # [n, n]
        self.Kb = sp.csr_matrix((gb.similarities.ravel(), (rows, nb.ravel())), shape=(n, n))
        ones = np.ones(n * k)
        self.A = sp.csr_matrix((ones, (rows, na.ravel())), shape=(n, n))  # X's neighbour pairs
        self.B = sp.csr_matrix((ones, (rows, nb.ravel())), shape=(n, n))
        self._parts = self._prepare(self.Kb, self.B)
        self._kk = (self.Ka, self.Ka, self.Ka.multiply(self.Ka.T).tocsr())

    def _prepare(self, Kb: sp.csr_matrix, B: sp.csr_matrix) -> tuple:
        both = self.A.multiply(B)  # mutual-neighbour pairs
        Kkl, Lkl = self.Ka.multiply(both).tocsr(), Kb.multiply(both).tocsr()
        return (Kkl, Lkl, Kkl.multiply(Lkl.T).tocsr()), (Kb, Kb, Kb.multiply(Kb.T).tocsr())

    @staticmethod
    def _ratio(kl: tuple, kk: tuple, ll: tuple, w: np.ndarray) -> float:
        a, b, c = (_sparse_hsic(kl[0], kl[1], kl[2], w), _sparse_hsic(kk[0], kk[1], kk[2], w),
                   _sparse_hsic(ll[0], ll[1], ll[2], w))
        return a / np.sqrt(b * c) if b > 0 and c > 0 else float("nan")

    def value(self, w: np.ndarray) -> float:
        """CKNNA with image counts ``w [n]`` (ones: the set itself)."""
        kl, ll = self._parts
        return self._ratio(kl, self._kk, ll, w)

    def shuffled(self, p: np.ndarray) -> float:
        """CKNNA of X against Y's rows in the order ``p`` (``Y[p]``)."""
        kl, ll = self._prepare(self.Kb[p][:, p].tocsr(), self.B[p][:, p].tocsr())
        return self._ratio(kl, self._kk, ll, np.ones(len(p)))


def cknna(X: ArrayLike, Y: ArrayLike, k: int = DEFAULT_K) -> float:
    """CKNNA (see the module docstring); needs k >= 2 and N >= 4."""
    A, B = _pair(X, Y, 4)
    if k < 2:
        raise ValueError(f"CKNNA needs k >= 2, got {k}")
    return _Cknna(_knn(A, k), _knn(B, k)).value(np.ones(len(A)))


# ---- what the indices of one pair share ------------------------------------------------------------------
def _subsample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, cap, replace=False))


class _PairWork:
    """What several indices of one pair ``A [N, D1]``, ``B [N, D2]`` share, made on first use: the centred
    sets and their resampling subsample (unbiased CKA and Procrustes), and the neighbour graphs of a
    subsample (mutual k-NN and CKNNA)."""

    def __init__(self, A: np.ndarray, B: np.ndarray):
        self.A, self.B = A, B
        self._centred: tuple[np.ndarray, np.ndarray] | None = None
        self._graphs: dict[tuple[bytes, int], tuple[Neighbours, Neighbours]] = {}
        self._sets: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def centred(self) -> tuple[np.ndarray, np.ndarray]:
        if self._centred is None:
            self._centred = (_centred(self.A), _centred(self.B))
        return self._centred

    def resample_set(self, sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows ``sub`` of each set, centred on their own mean (the bootstrap's subsample)."""
        if len(sub) == len(self.A):
            return self.centred()
        key = sub.tobytes()
        if key not in self._sets:
            self._sets[key] = (_centred(self.A[sub]), _centred(self.B[sub]))
        return self._sets[key]

    def graphs(self, keep: np.ndarray, k: int) -> tuple[Neighbours, Neighbours]:
        """The k-NN graphs of the rows ``keep`` of each set (a seeded subsample: the same rows for the
        same N and seed)."""
        key = (keep.tobytes(), k)
        if key not in self._graphs:
            self._graphs[key] = (_knn(self.A[keep], k), _knn(self.B[keep], k))
        return self._graphs[key]


# ---- the interface and the registry ----------------------------------------------------------------------
class SimilarityIndex(ABC):
    """One similarity index, prepared on one pair of representations (a template: a new index is a
    subclass that sets the info below, implements the three operations and is decorated with
    :func:`register_index`).

    Info (class attributes; the CLI, the Compare page and the JSON read them from :data:`INDICES`):
        name: the registry name (``"cka_unbiased"``).
        label: display name (``"unbiased linear CKA"``).
        summary: one line saying what it measures.
        higher_is_similar: False for a distance.
        uses_k: takes the neighbour count k.
        bounds: the index's range (the bootstrap interval is clipped to it).

    An instance is made by :func:`estimate` for one pair (``__init__(work, k, rng)``: ``k`` is None
    unless ``uses_k``; ``rng`` draws any subsample) and sets ``n_images`` (images behind :meth:`value`)
    and ``n_resample`` (images ``n`` in each bootstrap draw and shuffle).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    summary: ClassVar[str]
    higher_is_similar: ClassVar[bool]
    uses_k: ClassVar[bool]
    bounds: ClassVar[tuple[float, float]]
    n_images: int
    n_resample: int

    @abstractmethod
    def __init__(self, work: _PairWork, k: int | None, rng: np.random.Generator): ...

    @abstractmethod
    def value(self) -> float:
        """The index on the pair (its subsample, for the kNN indices)."""

    @abstractmethod
    def draw(self, w: np.ndarray) -> float:
        """The index for a bootstrap draw: ``w [n]`` how many times each image is in it."""

    @abstractmethod
    def shuffled(self, p: np.ndarray) -> float:
        """The index with Y's rows in the order ``p [n]`` (a permutation) against X's."""


_REGISTRY: dict[str, type[SimilarityIndex]] = {}
INDICES: Mapping[str, type[SimilarityIndex]] = MappingProxyType(_REGISTRY)
"""The registered indices by name, in registration order (read-only; :func:`register_index` adds)."""


def register_index(cls: type[SimilarityIndex]) -> type[SimilarityIndex]:
    """Class decorator registering ``cls`` under ``cls.name``; a duplicate name raises ``ValueError``."""
    missing = [a for a in ("name", "label", "summary", "higher_is_similar", "uses_k", "bounds") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"{cls.__name__} does not set {', '.join(missing)}")
    if cls.name in _REGISTRY:
        raise ValueError(f"similarity index {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def index_names() -> tuple[str, ...]:
    """Names of the indices registered now, in registration order."""
    return tuple(_REGISTRY)


def check_index(name: str) -> type[SimilarityIndex]:
    """The registered index ``name`` (its class: info as attributes); ``ValueError`` naming the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown similarity index {name!r}; choose one of {list(_REGISTRY)}") from None


class _ResampledIndex(SimilarityIndex):
    """An index over every image whose draws and shuffles run on a seeded subsample of at most
    :data:`MAX_RESAMPLE_IMAGES` images (the pair's centred rows)."""

    def __init__(self, work: _PairWork, k: int | None, rng: np.random.Generator):
        self._work = work
        sub = _subsample(len(work.A), MAX_RESAMPLE_IMAGES, rng)
        self.n_images, self.n_resample = len(work.A), len(sub)
        self._As, self._Bs = work.resample_set(sub)  # [n, D1], [n, D2]


@register_index
class _CkaUnbiasedIndex(_ResampledIndex):
    name, label = "cka_unbiased", "unbiased linear CKA"
    summary = "linear CKA with the unbiased HSIC estimator: global geometry, not inflated by small N or large D"
    higher_is_similar, uses_k, bounds = True, False, (-1.0, 1.0)

    def __init__(self, work: _PairWork, k: int | None, rng: np.random.Generator):
        super().__init__(work, k, rng)
        self._gram = _GramCka(self._As, self._Bs)

    def value(self) -> float:
        Ac, Bc = self._work.centred()
        return _cka_unbiased(Ac, Bc, np.ones(len(Ac)))

    def draw(self, w: np.ndarray) -> float:
        return self._gram.value(w)

    def shuffled(self, p: np.ndarray) -> float:
        return self._gram.shuffled(p)


class _KnnIndex(SimilarityIndex):
    """An index of the k-NN graphs of a seeded subsample of at most :data:`MAX_KNN_IMAGES` images (value,
    draws and shuffles all on it; a draw reweights images, it does not change who is whose neighbour)."""

    def __init__(self, work: _PairWork, k: int | None, rng: np.random.Generator):
        if k is None:
            raise ValueError(f"{self.name} needs k")
        keep = _subsample(len(work.A), MAX_KNN_IMAGES, rng)
        self.n_images = self.n_resample = len(keep)
        self._ga, self._gb = work.graphs(keep, k)


@register_index
class _MutualKnnIndex(_KnnIndex):
    name, label = "mutual_knn", "mutual k-NN"
    summary = "share of each image's k nearest neighbours the two backbones have in common (local)"
    higher_is_similar, uses_k, bounds = True, True, (0.0, 1.0)

    def __init__(self, work: _PairWork, k: int | None, rng: np.random.Generator):
        super().__init__(work, k, rng)
        self._o = _overlap(self._ga.indices, self._gb.indices)  # [n] per-image overlap

    def value(self) -> float:
        return float(self._o.mean())

    def draw(self, w: np.ndarray) -> float:
        return float(w @ self._o / w.sum())

    def shuffled(self, p: np.ndarray) -> float:
        inv = np.argsort(p)
        return float(_overlap(self._ga.indices, inv[self._gb.indices[p]]).mean())  # i's neighbours in Y[p]


@register_index
class _CknnaIndex(_KnnIndex):
    name, label = "cknna", "CKNNA"
    summary = "CKA restricted to pairs of mutual nearest neighbours: local kernel alignment"
    higher_is_similar, uses_k, bounds = True, True, (-1.0, 1.0)

    def __init__(self, work: _PairWork, k: int | None, rng: np.random.Generator):
        if k is None or k < 2:
            raise ValueError(f"CKNNA needs k >= 2, got {k}")
        super().__init__(work, k, rng)
        self._c = _Cknna(self._ga, self._gb)

    def value(self) -> float:
        return self._c.value(np.ones(self.n_images))

    def draw(self, w: np.ndarray) -> float:
        return self._c.value(w)

    def shuffled(self, p: np.ndarray) -> float:
        return self._c.shuffled(p)


@register_index
class _ProcrustesIndex(_ResampledIndex):
    name, label = "procrustes", "Procrustes distance"
    summary = "distance after the best rotation and scaling (0 = same up to rotation, 2 = unrelated); lower = more similar"
    higher_is_similar, uses_k, bounds = False, False, (0.0, 2.0)

    def __init__(self, work: _PairWork, k: int | None, rng: np.random.Generator):
        super().__init__(work, k, rng)
        self._sq_a, self._sq_b = (np.einsum("ij,ij->i", Z, Z, dtype=np.float64) for Z in (self._As, self._Bs))  # [n]

    def value(self) -> float:
        Ac, Bc = self._work.centred()
        return _procrustes(Ac, Bc, np.ones(len(Ac)))

    def draw(self, w: np.ndarray) -> float:  # a draw holds about 63 % of the images: only those rows
        nz = np.flatnonzero(w)
        return _procrustes(self._As[nz], self._Bs[nz], w[nz], self._sq_a[nz], self._sq_b[nz])

    def shuffled(self, p: np.ndarray) -> float:
        return _procrustes(self._As, self._Bs[p], np.ones(len(p)), self._sq_a, self._sq_b[p])


# ---- estimates with an interval and a baseline --------------------------------------------------------------
@dataclass(frozen=True)
class IndexEstimate:
    """An index between two representations, its bootstrap interval and permutation baseline.

    Attributes:
        index: the :data:`INDICES` name.
        value: on all images (the kNN indices: on at most :data:`MAX_KNN_IMAGES`).
        ci_low / ci_high: bias-shifted percentile bootstrap interval at ``level`` (see the module docstring).
        baseline: mean over the permutations (rows of Y shuffled against X).
        baseline_high: the permutations' 95th percentile (5th for a distance): the value two unrelated
            representations rarely pass.
        p_value: share of permutations at least as similar as ``value``, ``(1 + count) / (1 + n_perm)``.
        n_images: images in the estimate; n_resample: images in each bootstrap / permutation draw.
        k: neighbours (kNN indices), else None.
    """

    index: str
    value: float
    ci_low: float
    ci_high: float
    level: float
    baseline: float
    baseline_high: float
    p_value: float
    n_images: int
    n_resample: int
    n_boot: int
    n_perm: int
    k: int | None

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def estimate(name: str, X: ArrayLike, Y: ArrayLike, *, k: int = DEFAULT_K, n_boot: int = DEFAULT_BOOT,
             n_perm: int = DEFAULT_PERM, level: float = DEFAULT_LEVEL, seed: int = 0) -> IndexEstimate:
    """The index ``name`` between ``X [N, D1]`` and ``Y [N, D2]`` with its interval and baseline.

    Args:
        name: one of :data:`INDICES`.
        k: neighbours for ``mutual_knn`` and ``cknna`` (capped at N - 1).
        n_boot / n_perm: bootstrap draws and permutations (0 = skip: NaN interval / baseline).
        level: coverage of the interval.
        seed: seeds the subsamples, the draws and the permutations.
    """
    check_index(name)
    return _estimate(name, _PairWork(*_pair(X, Y, 4)), k=k, n_boot=n_boot, n_perm=n_perm, level=level, seed=seed)


def _estimate(name: str, work: _PairWork, *, k: int = DEFAULT_K, n_boot: int = DEFAULT_BOOT,
              n_perm: int = DEFAULT_PERM, level: float = DEFAULT_LEVEL, seed: int = 0) -> IndexEstimate:
    """:func:`estimate` on a pair's shared work (the same numbers: every index draws from its own
    generator seeded ``seed``: its subsample first, then the draws, then the shuffles)."""
    cls = check_index(name)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    kk = min(k, len(work.A) - 1) if cls.uses_k else None
    index = cls(work, kk, rng)
    value, n = index.value(), index.n_resample
    boots = np.array([index.draw(np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64))
                      for _ in range(n_boot)])
    perms = np.array([index.shuffled(rng.permutation(n)) for _ in range(n_perm)])
    alpha = (1 - level) / 2
    lo, hi = np.nan, np.nan
    if n_boot:  # percentile interval, shifted by the bootstrap estimate of bias (mean of the draws - value)
        bias = float(np.nanmean(boots)) - value
        lo, hi = (float(np.clip(q - bias, *cls.bounds)) for q in np.nanquantile(boots, [alpha, 1 - alpha]))
    if n_perm:
        as_good = perms >= value if cls.higher_is_similar else perms <= value
        p = float((1 + np.sum(as_good)) / (1 + n_perm))
        base, base_hi = float(np.nanmean(perms)), float(np.nanquantile(perms, 0.95 if cls.higher_is_similar else 0.05))
    else:
        p, base, base_hi = float("nan"), float("nan"), float("nan")
    return IndexEstimate(name, float(value), float(lo), float(hi), level, base, base_hi, p, index.n_images, n,
                         n_boot, n_perm, kk)


@dataclass(frozen=True)
class IndexMatrix:
    """One index between every pair of ``B`` backbones.

    Attributes:
        index: the :data:`INDICES` name.
        backbones: names, the order of rows and columns.
        value / ci_low / ci_high / baseline / baseline_high / p_value: ``[B, B]`` (symmetric; the diagonal
            is the index of a representation with itself, its interval and baseline are NaN).
        estimates: ``{(i, j): IndexEstimate}`` for ``i < j``.
    """

    index: str
    backbones: list[str]
    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    baseline: np.ndarray
    baseline_high: np.ndarray
    p_value: np.ndarray
    estimates: dict[tuple[int, int], IndexEstimate]


def index_matrix(name: str, feats: Sequence[ArrayLike], backbones: Sequence[str], **kw) -> IndexMatrix:
    """:func:`estimate` for every pair of representations ``feats`` (each ``[N, D_b]``, same images).

    Args:
        **kw: ``k``, ``n_boot``, ``n_perm``, ``level``, ``seed`` for :func:`estimate`.
    """
    return index_matrices([name], feats, backbones, **kw)[name]


def index_matrices(names: Sequence[str], feats: Sequence[ArrayLike], backbones: Sequence[str],
                   progress: Callable[[int, int], None] | None = None, **kw) -> dict[str, IndexMatrix]:
    """:func:`index_matrix` of every index in ``names``; each pair's centred sets and neighbour graphs
    are made once for all of them. ``progress(done, total)`` after each (pair, index) estimate."""
    infos = [check_index(n) for n in names]
    if len(feats) != len(backbones) or len(feats) < 2:
        raise ValueError(f"need one feature array per backbone, at least 2; got {len(feats)} and {len(backbones)} names")
    b = len(feats)
    fields = ("value", "ci_low", "ci_high", "baseline", "baseline_high", "p_value")
    mats = {n: {f: np.full((b, b), np.nan) for f in fields} for n in names}
    for n, info in zip(names, infos):
        np.fill_diagonal(mats[n]["value"], 1.0 if info.higher_is_similar else 0.0)
    ests: dict[str, dict[tuple[int, int], IndexEstimate]] = {n: {} for n in names}
    pairs = [(i, j) for i in range(b) for j in range(i + 1, b)]
    done = 0
    for i, j in pairs:
        work = _PairWork(*_pair(feats[i], feats[j], 4))
        for n in names:
            e = ests[n][(i, j)] = _estimate(n, work, **kw)
            for f in fields:
                mats[n][f][i, j] = mats[n][f][j, i] = getattr(e, f)
            done += 1
            if progress is not None:
                progress(done, len(pairs) * len(names))
    return {n: IndexMatrix(n, list(backbones), mats[n]["value"], mats[n]["ci_low"], mats[n]["ci_high"],
                           mats[n]["baseline"], mats[n]["baseline_high"], mats[n]["p_value"], ests[n]) for n in names}
