"""Encode every image of a dataset on fitted concepts, a chunk of images at a time.

For each image: the code of every patch (the concept map), the mean code over its patches and the
mean of its patch vectors (the pooled feature, which for a CNN is its embedding). Along the way the
most typical patches of each concept (the largest coefficients, at most one patch per image) and the
sums behind the patch-level reconstruction share are kept. Memory: one chunk of tokens plus the
outputs (the maps may be a memory map on disk); a patch's code depends on that patch only, so the
result does not depend on the chunk size (tested).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.concepts.methods import ConceptBasis
from core.concepts.tokens import TokenSource, chunks, images_per_chunk

TOP_PATCHES = 16  # typical patches kept per concept
ProgressFn = Callable[[int, int], None]  # (images encoded, images total)


@dataclass
class TopPatches:
    """The most typical patches of each concept, best first (at most one per image).

    Attributes:
        image: ``[k, m]`` image index (-1 where fewer than ``m`` images have the concept at all).
        row / col: ``[k, m]`` the patch's position on the grid.
        coef: ``[k, m]`` its coefficient for the concept (0 where ``image`` is -1).
    """

    image: np.ndarray
    row: np.ndarray
    col: np.ndarray
    coef: np.ndarray

    @classmethod
    def empty(cls, k: int, m: int) -> TopPatches:
        return cls(np.full((k, m), -1, np.int64), np.zeros((k, m), np.int64), np.zeros((k, m), np.int64),
                   np.zeros((k, m), np.float32))

    def merge(self, image: np.ndarray, pos: np.ndarray, coef: np.ndarray, w: int) -> None:
        """Add candidates ``[k, b]`` (image index, flat position, coefficient) and keep the best ``m`` per
        concept; ties keep the lower image index (so the result is the same for any chunking)."""
        m = self.image.shape[1]
        all_img = np.concatenate([self.image, image], axis=1)  # [k, m + b]
        all_coef = np.concatenate([self.coef, coef], axis=1)
        all_row = np.concatenate([self.row, pos // w], axis=1)
        all_col = np.concatenate([self.col, pos % w], axis=1)
        valid = (all_img >= 0) & (all_coef > 0)
        key = np.where(valid, all_coef, -np.inf)
        # sort by coefficient (descending) then image index (ascending)
        order = np.lexsort((np.where(valid, all_img, np.iinfo(np.int64).max), -key), axis=1)[:, :m]
        take = np.take_along_axis
        keep = take(valid, order, 1)
        self.image = np.where(keep, take(all_img, order, 1), -1)
        self.row = np.where(keep, take(all_row, order, 1), 0)
        self.col = np.where(keep, take(all_col, order, 1), 0)
        self.coef = np.where(keep, take(all_coef, order, 1), 0.0).astype(np.float32)


@dataclass
class ConceptCodes:
    """What encoding a dataset gives.

    Attributes:
        u: ``[N, k]`` float32 mean code of each image's patches.
        e: ``[N, D]`` float32 pooled feature of each image (mean of its patch vectors).
        maps: ``[N, h, w, k]`` float16 code of every patch.
        top: the typical patches of each concept.
        dominant: ``[k]`` patches whose largest coefficient is the concept's (patches without any: none).
        patch_sse: sum over all patches of ``|x - (U W + b)|^2``.
        patch_sst: sum over all patches of ``|x - mean x|^2``.
    """

    u: np.ndarray
    e: np.ndarray
    maps: np.ndarray
    top: TopPatches
    dominant: np.ndarray
    patch_sse: float
    patch_sst: float

    @property
    def patch_variance_explained(self) -> float:
        """Share of the patch vectors' variance the concepts reconstruct (``1 - SSE / SST``)."""
        return 1.0 - self.patch_sse / self.patch_sst if self.patch_sst > 0 else float("nan")


def encode_tokens(basis: ConceptBasis, tokens: np.ndarray) -> np.ndarray:
    """The concept map of one image (or a batch): tokens ``[..., h, w, D]`` -> codes ``[..., h, w, k]`` float32."""
    t = np.asarray(tokens, dtype=np.float32)
    return basis.encode(t.reshape(-1, t.shape[-1])).reshape(*t.shape[:-1], basis.k)


def apply_concepts(source: TokenSource, basis: ConceptBasis, *, maps: np.ndarray | None = None,
                   top: int = TOP_PATCHES, chunk_images: int | None = None,
                   progress: ProgressFn | None = None) -> ConceptCodes:
    """Encode every image of ``source``, ``chunk_images`` images at a time.

    Args:
        source: the dataset's patch tokens.
        basis: fitted concepts (``basis.dim == source.dim``).
        maps: where to write the codes ``[N, h, w, k]`` (e.g. a float16 memory map); None: a new array.
        top: typical patches kept per concept.
        chunk_images: images per chunk (default: about :data:`core.concepts.tokens.CHUNK_PATCHES` patches).
        progress: called as ``progress(done, total)`` after each chunk.
    """
    if source.dim != basis.dim:
        raise ValueError(f"the concepts were fitted on {basis.dim}-D vectors but the tokens are {source.dim}-D")
    n, (h, w), k, D = source.n, source.grid, basis.k, source.dim
    if maps is None:
        maps = np.zeros((n, h, w, k), np.float16)
    elif maps.shape != (n, h, w, k):
        raise ValueError(f"maps must be [{n}, {h}, {w}, {k}], got {maps.shape}")
    u = np.zeros((n, k), np.float32)
    e = np.zeros((n, D), np.float32)
    best = TopPatches.empty(k, top)
    dominant = np.zeros(k, np.int64)
    sse = 0.0
    sum_x = np.zeros(D)
    sum_sq = 0.0
    step = chunk_images or images_per_chunk(source)
    for c in chunks(n, step):
        tok = source.read(c)  # [b, h, w, D]
        b = len(c)
        X = tok.reshape(b * h * w, D)
        U = basis.encode(X)  # [b*h*w, k]
        R = X - basis.reconstruct(U)  # [b*h*w, D] residual
        sse += float(np.einsum("ij,ij->", R, R, dtype=np.float64))
        sum_x += X.sum(axis=0, dtype=np.float64)
        sum_sq += float(np.einsum("ij,ij->", X, X, dtype=np.float64))
        del R
        Ub = U.reshape(b, h * w, k)
        maps[c] = Ub.reshape(b, h, w, k).astype(np.float16)
        u[c] = Ub.mean(axis=1)
        e[c] = tok.reshape(b, h * w, D).mean(axis=1)
        has = U.max(axis=1) > 0
        dominant += np.bincount(U[has].argmax(axis=1), minlength=k)
        pos = Ub.argmax(axis=1)  # [b, k] each image's best patch per concept
        coef = np.take_along_axis(Ub, pos[:, None, :], axis=1)[:, 0]  # [b, k]
        best.merge(np.broadcast_to(c[None, :], (k, b)), pos.T, coef.T, w)
        if progress:
            progress(int(c[-1]) + 1, n)
    n_patches = n * h * w
    sst = sum_sq - float(sum_x @ sum_x) / n_patches
    return ConceptCodes(u, e, maps, best, dominant, sse, sst)
