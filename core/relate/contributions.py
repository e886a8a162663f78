"""Per-patch contribution vectors of a unit embedding, and the patch-pair terms of a cosine.

Every decomposition method (:mod:`core.relate.methods`) writes an image's unit-length embedding
``u`` as a sum of vectors: one per patch of the grid plus one ``rest`` vector for whatever no patch
carries (biases, the CLS token's initial value, register tokens)::

    u = sum_i c_i + r                     c_i, r in R^D

The cosine of two images is then the bilinear form ``<u, v>``, which splits exactly into

    cos(a, b) = sum_ij <c_i, c'_j>  +  <sum_i c_i, r'> + <r, sum_j c'_j> + <r, r'>
                \\_ pair matrix _/     \\______________ not attributed to patch pairs ___/

For a mean-pooled embedding ``r = 0`` and ``c_i = f_i / (N |mean f|)``, so the pair matrix alone
sums to the cosine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Contributions:
    """One image's unit embedding split into patch vectors.

    Attributes:
        patches: ``[h, w, D]`` float64, patch ``(i, j)``'s contribution vector.
        rest: ``[D]`` float64, the part no patch carries (zero for a mean-pooled embedding).
    """

    patches: np.ndarray
    rest: np.ndarray

    def __post_init__(self) -> None:
        if self.patches.ndim != 3 or self.rest.shape != (self.patches.shape[-1],):
            raise ValueError(f"contributions need patches [h, w, D] and rest [D], got {self.patches.shape} and {self.rest.shape}")

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.patches.shape[0]), int(self.patches.shape[1])

    @property
    def flat(self) -> np.ndarray:
        """``[h*w, D]``, patches in row-major order."""
        return self.patches.reshape(-1, self.patches.shape[-1])

    @property
    def embedding(self) -> np.ndarray:
        """``[D]``: the sum of every part, i.e. the unit embedding it decomposes."""
        return self.flat.sum(0) + self.rest


@dataclass(frozen=True)
class PairTerms:
    """The patch-pair decomposition of one cosine.

    Attributes:
        matrix: ``[Na, Nb]``, ``<c_i, c'_j>``: patch ``i`` of image a with patch ``j`` of image b
            (row-major patch order of each grid).
        share_a: ``[ha, wa]`` row sums: each patch of image a's share of the cosine.
        share_b: ``[hb, wb]`` column sums.
        total: the cosine, ``<u, v>`` of the two decompositions' sums.
        unattributed: ``total - matrix.sum()``: the terms with a ``rest`` vector (0 when exact).
    """

    matrix: np.ndarray
    share_a: np.ndarray
    share_b: np.ndarray
    total: float
    unattributed: float

    @property
    def attributed(self) -> float:
        """The part of the cosine the patch pairs carry (``matrix.sum()``)."""
        return self.total - self.unattributed


def pair_terms(a: Contributions, b: Contributions) -> PairTerms:
    """Split ``cos(a, b)`` into patch-pair terms: ``[Na, D] @ [D, Nb]``, then row and column sums."""
    if a.patches.shape[-1] != b.patches.shape[-1]:
        raise ValueError(f"contributions of different widths: {a.patches.shape[-1]} vs {b.patches.shape[-1]}")
    m = a.flat @ b.flat.T  # [Na, Nb]
    total = float(a.embedding @ b.embedding)
    return PairTerms(matrix=m, share_a=m.sum(1).reshape(a.grid), share_b=m.sum(0).reshape(b.grid),
                     total=total, unattributed=total - float(m.sum()))


@dataclass(frozen=True)
class Link:
    """One patch-to-patch term: patch ``a`` (row, col) of image a with ``b`` of image b."""

    a: tuple[int, int]
    b: tuple[int, int]
    contribution: float

    def to_dict(self) -> dict:
        return {"a": list(self.a), "b": list(self.b), "contribution": self.contribution}


def top_links(terms: PairTerms, k: int = 10) -> list[Link]:
    """The ``k`` largest pair terms (the strongest positive evidence for the similarity), largest first.

    ``np.argpartition`` over the flat ``[Na * Nb]`` matrix: O(Na Nb), no full sort.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    m = terms.matrix
    flat = m.ravel()
    k = min(k, flat.size)
    idx = np.argpartition(-flat, k - 1)[:k]
    idx = idx[np.argsort(-flat[idx], kind="stable")]
    wa = terms.share_a.shape[1]
    wb = terms.share_b.shape[1]
    rows, cols = np.divmod(idx, m.shape[1])
    return [Link(a=(int(r) // wa, int(r) % wa), b=(int(c) // wb, int(c) % wb), contribution=float(flat[i]))
            for r, c, i in zip(rows, cols, idx)]
