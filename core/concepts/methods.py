"""How concepts are found: a small registry of training-free factorisations of patch vectors.

Each method fits ``k`` concept directions ``W [k, D]`` (and an offset ``b [D]``) on a sample of patch
vectors ``X [n, D]`` and encodes any patch vector as non-negative coefficients ``U [k]`` so that
``x ~ U W + b``. The pooled feature of an image (the mean of its patch vectors) is then
``e = mean(U) W + b + mean(residual)`` exactly, which is what the per-class contributions build on.

- ``nmf`` (CRAFT, Fel et al., CVPR 2023): non-negative matrix factorisation of post-ReLU feature
  maps (:mod:`core.concepts.nmf`: the Frobenius loss of scikit-learn's ``NMF``, which CRAFT calls,
  minimised by a faster solver); ``b = 0``. Only for non-negative features.
- ``nmf_shifted``: NMF of signed tokens after subtracting ``b`` = each dimension's minimum over the
  sample (so the sample is non-negative); a new token is encoded as ``x - b``.
- ``spherical_kmeans``: unit concept directions from spherical k-means (Dhillon & Modha 2001) of the
  unit-normalised tokens; a token's code is its projection on the most similar direction (one
  non-zero coefficient), ``b = 0``.
- ``auto``: ``nmf`` when the sample is non-negative (a CNN's post-ReLU map), else
  :data:`SIGNED_DEFAULT` (the choice for ViT tokens; README "Concept atlas" gives the measurements).

Concept directions are stored with unit length (an NMF's ``U W`` is unchanged when a row of ``W`` is
scaled and the column of ``U`` divided by the same factor), so a coefficient reads in feature units
and coefficients of different concepts compare.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.concepts.nmf import nmf
from core.concepts.nnls import nnls_rows

SIGNED_DEFAULT = "nmf_shifted"  # what "auto" picks for signed tokens (ViTs): see the README's measurements


@dataclass(frozen=True)
class ConceptBasis:
    """``k`` fitted concepts.

    Attributes:
        method: the registered method that fitted them.
        W: ``[k, D]`` float32 unit-length concept directions.
        offset: ``[D]`` float32 ``b`` in ``x ~ U W + b`` (zeros except for ``nmf_shifted``).
    """

    method: str
    W: np.ndarray
    offset: np.ndarray

    @property
    def k(self) -> int:
        return int(self.W.shape[0])

    @property
    def dim(self) -> int:
        return int(self.W.shape[1])

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Non-negative codes ``U [m, k]`` float32 of patch vectors ``X [m, D]`` (row by row: a row's code
        never depends on the other rows)."""
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"concept codes need vectors [m, {self.dim}], got shape {X.shape}")
        return get_method(self.method).encode(self, np.asarray(X, dtype=np.float32))

    def reconstruct(self, U: np.ndarray) -> np.ndarray:
        """``U W + b`` ``[m, D]`` float32 for codes ``U [m, k]``."""
        return (np.asarray(U, np.float32) @ self.W + self.offset).astype(np.float32)


@dataclass(frozen=True)
class ConceptMethod:
    """One way of finding concepts.

    Attributes:
        name: registry name.
        fit: ``fit(X [n, D] float32, k, seed) -> ConceptBasis``.
        encode: ``encode(basis, X [m, D] float32) -> U [m, k]`` (row-separable).
        needs_non_negative: refuses features with negative values.
        summary: one line for help texts and the README.
    """

    name: str
    fit: Callable[[np.ndarray, int, int], ConceptBasis]
    encode: Callable[[ConceptBasis, np.ndarray], np.ndarray]
    needs_non_negative: bool
    summary: str


_METHODS: dict[str, ConceptMethod] = {}


def register_method(method: ConceptMethod) -> ConceptMethod:
    """Add a method to the registry (a second one of the same name raises)."""
    if method.name in _METHODS or method.name == "auto":
        raise ValueError(f"concept method {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> ConceptMethod:
    """The registered method ``name`` (ValueError listing the known ones otherwise)."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown concept method {name!r}; choose from auto, {', '.join(_METHODS)}") from None


def method_names() -> list[str]:
    """``"auto"`` then every registered method."""
    return ["auto", *_METHODS]


def resolve_method(name: str, sample: np.ndarray) -> str:
    """The method ``name`` stands for on this sample (``auto``: ``nmf`` when it has no negative value)."""
    if name == "auto":
        return "nmf" if float(np.min(sample)) >= 0.0 else SIGNED_DEFAULT
    get_method(name)
    return name


def fit_basis(X: np.ndarray, k: int, method: str = "auto", seed: int = 0) -> ConceptBasis:
    """Fit ``k`` concepts on the sample ``X [n, D]``.

    Raises:
        ValueError: ``k < 2``, fewer sample vectors than ``k``, non-finite values, or negative values for
            a method that needs non-negative features (the message names the alternatives).
    """
    if k < 2:
        raise ValueError(f"k = {k}: a concept atlas needs at least 2 concepts")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < k:
        raise ValueError(f"fitting {k} concepts needs at least {k} patch vectors [n, D], got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("the patch vectors contain NaN or inf")
    name = resolve_method(method, X)
    m = get_method(name)
    if m.needs_non_negative and float(X.min()) < 0.0:
        raise ValueError(f"{name} needs non-negative features (post-ReLU maps) but these reach {float(X.min()):.3g}; "
                         f"use nmf_shifted or spherical_kmeans for signed tokens (e.g. a ViT's)")
    return m.fit(X, k, seed)


# ---- NMF (CRAFT) ----------------------------------------------------------------------------------
def _nmf_components(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """NMF components ``[k, D]`` of non-negative ``X`` (:func:`core.concepts.nmf.nmf`)."""
    return nmf(X, k, seed=seed)[1].astype(np.float64)


def _unit_rows(H: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row (a concept NMF left empty) becomes a tiny uniform one
    so the codes stay defined (its coefficient is then ~0 everywhere)."""
    norms = np.linalg.norm(H, axis=1, keepdims=True)
    empty = norms[:, 0] <= 1e-12
    if empty.any():
        H = H.copy()
        H[empty] = 1.0
        norms[empty] = np.sqrt(H.shape[1])
    return (H / norms).astype(np.float32)


def _fit_nmf(X: np.ndarray, k: int, seed: int) -> ConceptBasis:
    return ConceptBasis("nmf", _unit_rows(_nmf_components(X, k, seed)), np.zeros(X.shape[1], np.float32))


def _fit_nmf_shifted(X: np.ndarray, k: int, seed: int) -> ConceptBasis:
    b = X.min(axis=0)  # [D] each dimension's minimum: X - b >= 0
    return ConceptBasis("nmf_shifted", _unit_rows(_nmf_components(X - b, k, seed)), b.astype(np.float32))


def _encode_nnls(basis: ConceptBasis, X: np.ndarray) -> np.ndarray:
    return nnls_rows(X - basis.offset if basis.offset.any() else X, basis.W)


# ---- spherical k-means ----------------------------------------------------------------------------
KMEANS_INITS = 3
KMEANS_MAX_ITER = 100


def _fit_spherical_kmeans(X: np.ndarray, k: int, seed: int) -> ConceptBasis:
    """Lloyd iterations on the unit sphere (assign by the largest cosine, centre = normalised mean),
    k-means++ starts, the best of :data:`KMEANS_INITS` by the summed cosine."""
    from sklearn.cluster import kmeans_plusplus

    norms = np.linalg.norm(X, axis=1)
    Xn = X[norms > 1e-12] / norms[norms > 1e-12, None]  # [n', D] unit rows (zero rows have no direction)
    if len(Xn) < k:
        raise ValueError(f"spherical k-means of {k} concepts needs {k} non-zero patch vectors, got {len(Xn)}")
    rng = np.random.default_rng(seed)
    best, best_score = None, -np.inf
    for _ in range(KMEANS_INITS):
        C, _idx = kmeans_plusplus(Xn, k, random_state=int(rng.integers(2**31 - 1)))
        C = _unit_rows(C)
        assign = np.full(len(Xn), -1)
        for _ in range(KMEANS_MAX_ITER):
            S = Xn @ C.T  # [n', k] cosines
            new = S.argmax(axis=1)
            if np.array_equal(new, assign):
                break
            assign = new
            sums = _cluster_sums(Xn, assign, k)  # [k, D]
            for j in np.flatnonzero(np.bincount(assign, minlength=k) == 0):  # an empty cluster takes the worst-fitting row
                far = S.max(axis=1).argmin()
                sums[j] = Xn[far]
                S[far] = np.inf
            C = _unit_rows(sums)
        score = float((Xn @ C.T).max(axis=1).sum())
        if score > best_score:
            best, best_score = C, score
    assert best is not None  # KMEANS_INITS >= 1
    return ConceptBasis("spherical_kmeans", best, np.zeros(X.shape[1], np.float32))


def _cluster_sums(X: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """``[k, D]`` float64 sum of the rows of each cluster (a sparse one-hot product: ``np.add.at`` is slow)."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(len(X)), (assign, np.arange(len(X)))), shape=(k, len(X)))
    return np.asarray(onehot @ X.astype(np.float64))


def _encode_spherical(basis: ConceptBasis, X: np.ndarray) -> np.ndarray:
    proj = X @ basis.W.T  # [m, k]; with unit directions the largest projection is the largest cosine
    best = proj.argmax(axis=1)
    U = np.zeros_like(proj)
    rows = np.arange(len(X))
    U[rows, best] = np.maximum(proj[rows, best], 0.0)
    return U.astype(np.float32)


register_method(ConceptMethod("nmf", _fit_nmf, _encode_nnls, True,
                              "NMF of post-ReLU feature maps (CRAFT); codes by non-negative least squares"))
register_method(ConceptMethod("nmf_shifted", _fit_nmf_shifted, _encode_nnls, False,
                              "NMF of tokens shifted by each dimension's sample minimum; codes by non-negative least squares"))
register_method(ConceptMethod("spherical_kmeans", _fit_spherical_kmeans, _encode_spherical, False,
                              "spherical k-means of unit tokens; a token's code is its projection on its nearest direction"))
