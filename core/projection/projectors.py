"""2-D / 3-D maps of embeddings ``[N, D] -> [N, n_components]``: PCA, UMAP and t-SNE behind one
:class:`Projector` template (fit on a set, then place new points with ``transform``).

Pipeline shared by all methods:
    1. ``metric="cosine"``: rows are L2-normalised, so Euclidean distance on them is a monotone
       function of cosine distance (``|a-b|^2 = 2 - 2 cos``) and every later step can use the
       fast Euclidean code paths.
    2. UMAP and t-SNE only: PCA to ``pca_dims`` (50) when both N and D exceed it. This removes
       noise dimensions and speeds up the neighbour search; measured neighbourhood-preservation
       (trustworthiness, k=10) is unchanged or slightly better (see bench/projection.py).
    3. The method itself, seeded by ``seed``.

New points (uploaded images) are placed in the fitted map without refitting: PCA and UMAP use
their own ``transform``; t-SNE has none, so a new point is put at the inverse-distance-weighted
mean of the map coordinates of its k nearest training points (k = ``n_neighbors``, distances in
the original space with ``metric``). A training point therefore lands on itself.

Speed (2 cores): below 4,096 points UMAP gets the exact distance matrix from numpy
(``metric="precomputed"``): umap-learn's own exact path calls a Python-level distance function
N^2 times (2.7 s of a 3 s run at N = 2,000), and its approximate path (pynndescent) costs 20-30 s
of JIT compilation in every new process. Above 4,096 points pynndescent is used (that first call per
process pays the JIT). UMAP runs 200 optimisation epochs above 2,000 points (umap-learn: 500 up to
10,000). A seed makes UMAP single-threaded but reproducible.
"""
from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from core.geometry.vectors import METRICS, Metric, distances, l2_normalize

UMAP_FAST_ABOVE = 2_000  # above this many points UMAP runs 200 epochs instead of 500
UMAP_EXACT_BELOW = 4_096  # below: exact distance matrix (umap-learn's own small-data threshold)
_PLACE_CHUNK = 256  # rows of new points per distance block in t-SNE placement ([256, N] float64)
_EPS = 1e-12
# BLAS / OpenMP threads for PCA, distance matrices and t-SNE. On 2 shared cores, barrier-synchronised
# 2-thread code crawls whenever another process holds a core (measured: eigh of a 384x384 matrix
# 2.3 s instead of 0.02 s; t-SNE of 240 points 12-42 s instead of 0.5 s); one thread costs at most
# 2x on an idle machine.
_ONE_THREAD = 1


@dataclass(frozen=True)
class ProjectionParams:
    """Everything that determines a projection; hashable and cache-keyable.

    Attributes:
        method: ``"pca"``, ``"umap"`` or ``"tsne"``.
        n_components: 2 or 3.
        n_neighbors: UMAP neighbourhood size; k of the t-SNE placement of new points.
        min_dist: UMAP minimum distance in the map.
        perplexity: t-SNE perplexity (capped at ``(N - 1) / 3`` for small N).
        metric: ``"cosine"`` or ``"euclidean"`` in the embedding space.
        seed: UMAP's random state (PCA and PCA-initialised t-SNE are deterministic).
        pca_dims: PCA pre-reduction before UMAP / t-SNE (None = off).
        n_epochs: UMAP epochs; None = 500 up to ``UMAP_FAST_ABOVE`` points, else 200.
    """

    method: str
    n_components: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    perplexity: float = 30.0
    metric: str = "cosine"
    seed: int = 0
    pca_dims: int | None = 50
    n_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.method not in _PROJECTORS:
            raise ValueError(f"unknown projection method {self.method!r}; choose one of {available_methods()}")
        if self.n_components not in (2, 3):
            raise ValueError(f"n_components must be 2 or 3, got {self.n_components}")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose one of {list(METRICS)}")
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors must be >= 2, got {self.n_neighbors}")
        if self.min_dist < 0:
            raise ValueError(f"min_dist must be >= 0, got {self.min_dist}")
        if self.perplexity <= 0:
            raise ValueError(f"perplexity must be > 0, got {self.perplexity}")
        if self.pca_dims is not None and self.pca_dims < self.n_components:
            raise ValueError(f"pca_dims must be None or >= n_components ({self.n_components}), got {self.pca_dims}")
        if self.n_epochs is not None and self.n_epochs < 1:
            raise ValueError(f"n_epochs must be None or >= 1, got {self.n_epochs}")

    def key(self) -> str:
        """Stable cache key: method, implementation version and only the fields the method uses.

        Example: ``umap/v1|n_components=2|metric='cosine'|seed=0|n_neighbors=15|min_dist=0.1|...``.
        PCA and t-SNE (PCA-initialised) are deterministic, so their keys leave the seed out.
        """
        cls = _PROJECTORS[self.method]
        names = ("n_components", "metric") + cls.uses
        return f"{self.method}/v{cls.version}|" + "|".join(f"{n}={getattr(self, n)!r}" for n in names)


def _as_embeddings(X: ArrayLike, name: str = "X") -> np.ndarray:
    """Validate ``[N, D]`` finite numbers; returns float32."""
    a = np.asarray(X)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [N, D] of embeddings, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _fit_pca(Z: np.ndarray, n_components: int) -> PCA:
    """Exact, deterministic PCA (single-threaded, see ``_ONE_THREAD``)."""
    solver = "covariance_eigh" if Z.shape[0] >= Z.shape[1] else "full"
    with threadpool_limits(limits=_ONE_THREAD):
        return PCA(n_components=n_components, svd_solver=solver).fit(Z)


def _pca_transform(pca: PCA, Z: np.ndarray) -> np.ndarray:
    with threadpool_limits(limits=_ONE_THREAD):
        return pca.transform(Z).astype(np.float32)


class Projector(abc.ABC):
    """Template: validate, normalise, optionally PCA-reduce, then a method-specific ``_fit`` /
    ``_transform``. A new method is a subclass with ``method``, ``uses`` and the two hooks.

    Attributes (after fit):
        embedding_: ``[N, n_components]`` float32 map of the fitted points.
        n_features_in_: D.
    """

    method: ClassVar[str]
    label: ClassVar[str]  # display name, e.g. "t-SNE"
    axis: ClassVar[str]  # axis-title stem: "PC" gives "PC 1", "PC 2"
    uses: ClassVar[tuple[str, ...]] = ()  # ProjectionParams fields (besides n_components, metric) it reads
    version: ClassVar[int] = 1  # bump when results change, to invalidate caches
    reduce_first: ClassVar[bool] = True  # PCA to pca_dims before the method
    min_points: ClassVar[int] = 3

    def __init__(self, params: ProjectionParams):
        if params.method != self.method:
            raise ValueError(f"{type(self).__name__} needs method={self.method!r}, got {params.method!r}")
        self.params = params
        self._pre_pca: PCA | None = None

    # ---- shared pipeline ----------------------------------------------------------------------------
    def _normalise(self, X: np.ndarray) -> np.ndarray:
        if self.params.metric == "cosine":
            return l2_normalize(X, _EPS, dtype=X.dtype)  # [N, D] unit rows, in X's float32
        return X

    def _prepare(self, X: np.ndarray, fit: bool) -> np.ndarray:
        Z = self._normalise(X)
        if fit:
            d = self.params.pca_dims
            n, dim = Z.shape
            self._pre_pca = _fit_pca(Z, d) if (self.reduce_first and d is not None and dim > d and n > d) else None
        if self._pre_pca is not None:
            Z = _pca_transform(self._pre_pca, Z)  # [N, pca_dims]
        return np.array(Z, dtype=np.float32, order="C")  # always a copy: never keep the caller's array

    def fit(self, X: ArrayLike) -> Projector:
        """Fit the map on ``X [N, D]``; the result is ``embedding_ [N, n_components]``."""
        X = _as_embeddings(X)
        if len(X) < max(self.min_points, self.params.n_components + 1):
            raise ValueError(f"{self.method} needs at least {max(self.min_points, self.params.n_components + 1)} "
                             f"points, got {len(X)}")
        self.n_features_in_ = X.shape[1]
        Z = self._prepare(X, fit=True)
        self.embedding_ = np.asarray(self._fit(Z, X), dtype=np.float32)  # [N, c]
        return self

    def fit_transform(self, X: ArrayLike) -> np.ndarray:
        """``fit(X)`` and return ``embedding_ [N, n_components]``."""
        return self.fit(X).embedding_

    def transform(self, X_new: ArrayLike) -> np.ndarray:
        """Place new points ``[M, D]`` in the fitted map, without refitting.

        Returns:
            ``[M, n_components]`` float32 coordinates.
        """
        if not hasattr(self, "embedding_"):
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(X) first")
        X = _as_embeddings(X_new, "X_new")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X_new has D={X.shape[1]} but the map was fitted on D={self.n_features_in_}")
        return np.asarray(self._transform(self._prepare(X, fit=False), X), dtype=np.float32)

    # ---- hooks ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _fit(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Z: prepared ``[N, D']``; X: validated raw ``[N, D]``. Returns ``[N, n_components]``."""

    @abc.abstractmethod
    def _transform(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Same inputs for new points; returns ``[M, n_components]``."""


_PROJECTORS: dict[str, type[Projector]] = {}


def register_projector(cls: type[Projector]) -> type[Projector]:
    """Class decorator adding a Projector under ``cls.method``; duplicates raise."""
    if cls.method in _PROJECTORS:
        raise ValueError(f"projection method {cls.method!r} is already registered by "
                         f"{_PROJECTORS[cls.method].__name__}")
    _PROJECTORS[cls.method] = cls
    return cls


def available_methods() -> list[str]:
    """Registered projection method names."""
    return list(_PROJECTORS)


def method_label(method: str) -> str:
    """Display name of a registered method (``"tsne"`` -> ``"t-SNE"``)."""
    return _registered(method).label


def axis_titles(method: str, n_components: int = 2) -> list[str]:
    """Axis titles of a map made by ``method``: ``["PC 1", "PC 2"]``, ``["UMAP 1", ...]``."""
    return [f"{_registered(method).axis} {i + 1}" for i in range(n_components)]


def _registered(method: str) -> type[Projector]:
    try:
        return _PROJECTORS[method]
    except KeyError:
        raise ValueError(f"unknown projection method {method!r}; choose one of {available_methods()}") from None


def make_projector(params: ProjectionParams) -> Projector:
    """An unfitted Projector for ``params.method``."""
    return _PROJECTORS[params.method](params)


def project(X: ArrayLike, params: ProjectionParams) -> np.ndarray:
    """Fit and return the map ``[N, n_components]`` of ``X [N, D]``."""
    return make_projector(params).fit_transform(X)


# ---- methods ------------------------------------------------------------------------------------------
@register_projector
class PCAProjector(Projector):
    """Principal components of the (L2-normalised, for cosine) embeddings; exact and linear."""

    method = "pca"
    label = "PCA"
    axis = "PC"
    reduce_first = False
    min_points = 2

    def _fit(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        self._pca = _fit_pca(Z, self.params.n_components)
        return _pca_transform(self._pca, Z)

    def _transform(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        return _pca_transform(self._pca, Z)


@register_projector
class UMAPProjector(Projector):
    """UMAP (umap-learn) with the speed settings described in the module docstring.

    Below ``UMAP_EXACT_BELOW`` points the exact distance matrix is computed with numpy and given to
    UMAP as ``metric="precomputed"`` (new points: their distances to the training points);
    above it umap-learn's approximate neighbour search (pynndescent) and its index are used.
    """

    method = "umap"
    label = "UMAP"
    axis = "UMAP"
    uses = ("seed", "n_neighbors", "min_dist", "pca_dims", "n_epochs")
    min_points = 5

    def _fit(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        import umap  # heavy import (numba); only when UMAP is used

        p = self.params
        n = len(Z)
        self._exact = n < UMAP_EXACT_BELOW
        self._umap = umap.UMAP(
            n_neighbors=min(p.n_neighbors, n - 1),
            n_components=p.n_components,
            min_dist=p.min_dist,
            # Euclidean on unit rows (cosine) or raw rows (euclidean), see the module docstring
            metric="precomputed" if self._exact else "euclidean",
            n_epochs=p.n_epochs if p.n_epochs is not None else (500 if n <= UMAP_FAST_ABOVE else 200),
            random_state=p.seed,
            n_jobs=1,  # implied by random_state; explicit to silence umap's warning
            force_approximation_algorithm=not self._exact,  # umap-learn's default at N >= 4096
            low_memory=True,
        )
        if not self._exact:
            return self._umap.fit_transform(Z)
        self._Z_ref = Z  # [N, D'] for the distances of new points
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "using precomputed metric", UserWarning)  # no inverse_transform: fine
            return self._umap.fit_transform(_euclidean_matrix(Z, Z, same=True))  # [N, N] in

    def _transform(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        if not self._exact:
            return self._umap.transform(Z)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Transforming new data with precomputed metric", UserWarning)
            return self._umap.transform(_euclidean_matrix(Z, self._Z_ref))  # [M, N] in


def _euclidean_matrix(A: np.ndarray, B: np.ndarray, same: bool = False) -> np.ndarray:
    """``[M, N]`` float32 Euclidean distances (BLAS); exact zeros on the diagonal when ``same``."""
    with threadpool_limits(limits=_ONE_THREAD):
        D = distances(A, B, "euclidean").astype(np.float32)
    if same:
        np.fill_diagonal(D, 0.0)
    return D


@register_projector
class TSNEProjector(Projector):
    """Barnes-Hut t-SNE (scikit-learn) with PCA initialisation; new points are placed by their
    k nearest training neighbours (inverse-distance weights), since t-SNE has no transform.
    With PCA initialisation the result does not depend on the seed."""

    method = "tsne"
    label = "t-SNE"
    axis = "t-SNE"
    uses = ("perplexity", "pca_dims", "n_neighbors")
    min_points = 5

    def _fit(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        from sklearn.manifold import TSNE

        p = self.params
        self._X_ref = X.copy()  # [N, D] original space for the placement of new points
        perplexity = min(p.perplexity, (len(Z) - 1) / 3.0)  # sklearn needs perplexity < N
        tsne = TSNE(
            n_components=p.n_components,
            perplexity=perplexity,
            init="pca",
            learning_rate="auto",
            method="barnes_hut",
            random_state=p.seed,
        )
        with threadpool_limits(limits=_ONE_THREAD):
            return tsne.fit_transform(Z)

    def _transform(self, Z: np.ndarray, X: np.ndarray) -> np.ndarray:
        p = self.params
        return place_by_neighbours(X, self._X_ref, self.embedding_, k=p.n_neighbors,
                                   metric="euclidean" if p.metric == "euclidean" else "cosine")


def place_by_neighbours(
    X_new: ArrayLike,
    X_ref: ArrayLike,
    coords_ref: ArrayLike,
    k: int = 15,
    metric: Metric = "cosine",
) -> np.ndarray:
    """Map coordinates of new points as the inverse-distance-weighted mean of the coordinates of
    their k nearest reference points.

    ``w_j = 1 / max(d_j, 1e-12)`` normalised over the k neighbours, so a point that coincides
    with a reference point lands on it.

    Args:
        X_new: ``[M, D]`` new points.
        X_ref: ``[N, D]`` reference (training) points.
        coords_ref: ``[N, c]`` their map coordinates.
        k: number of neighbours (capped at N).
        metric: ``"cosine"`` or ``"euclidean"`` in the original space.

    Returns:
        ``[M, c]`` coordinates (float64).
    """
    X_new, X_ref = _as_embeddings(X_new, "X_new"), _as_embeddings(X_ref, "X_ref")
    C = np.asarray(coords_ref, dtype=np.float64)
    if C.ndim != 2 or len(C) != len(X_ref):
        raise ValueError(f"coords_ref must be [N={len(X_ref)}, c], got shape {C.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(X_ref))
    out = np.empty((len(X_new), C.shape[1]))
    for s in range(0, len(X_new), _PLACE_CHUNK):
        d = distances(X_new[s : s + _PLACE_CHUNK], X_ref, metric)  # [m, N]
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]  # [m, k] k nearest (unordered)
        w = 1.0 / np.maximum(np.take_along_axis(d, idx, axis=1), _EPS)  # [m, k]
        w /= w.sum(axis=1, keepdims=True)
        out[s : s + _PLACE_CHUNK] = np.einsum("mk,mkc->mc", w, C[idx])
    return out
