"""Where patch vectors come from: a dataset's patch tokens, read a chunk of images at a time.

A :class:`TokenSource` gives ``[b, h, w, D]`` float32 tokens of any images by index. Two sources:
an array in memory (or a memory map), and the feature cache (:class:`StoreTokens`: one keyed
``read_rows`` per chunk, float16 entries cast to float32), so a dataset of any size is sampled and
encoded in bounded memory.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from core.errors import BackboneLensError
from core.io.store import FeatureStore

MAX_SAMPLE = 200_000      # patch vectors the concepts are fitted on, at most
MAX_SAMPLE_BYTES = 2**29  # and at most 512 MB of them as float32 (104,857 vectors of 1280 dimensions)
SAMPLE_SPREAD = 4         # the sample is drawn from up to this many times MAX_SAMPLE patches' worth of images
CHUNK_PATCHES = 16_384    # patch vectors per chunk when reading or encoding a whole dataset (~80 MB at 1280-D)


class TokenSource(Protocol):
    """Patch tokens of ``n`` images on a ``grid = (h, w)`` of ``dim``-dimensional vectors."""

    n: int
    grid: tuple[int, int]
    dim: int

    def read(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        """Tokens ``[len(idx), h, w, D]`` float32 of the images ``idx``."""
        ...


class ArrayTokens:
    """A :class:`TokenSource` over an ``[N, h, w, D]`` array (e.g. a float16 memory map)."""

    def __init__(self, tokens: np.ndarray):
        if tokens.ndim != 4 or min(tokens.shape) == 0:
            raise ValueError(f"patch tokens must be [N, h, w, D], got shape {tokens.shape}")
        self.tokens = tokens
        self.n = int(tokens.shape[0])
        self.grid = (int(tokens.shape[1]), int(tokens.shape[2]))
        self.dim = int(tokens.shape[3])

    def read(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.asarray(self.tokens[np.asarray(idx, dtype=np.int64)], dtype=np.float32)


class StoreTokens:
    """A :class:`TokenSource` over cached patch tokens: ``keys[i]`` is image ``i``'s feature-cache key.

    Raises (on read):
        BackboneLensError: an entry is missing from the cache (extract the tokens first).
    """

    def __init__(self, store: FeatureStore, keys: Sequence[str], grid: tuple[int, int], dim: int):
        self.store = store
        self.keys = list(keys)
        self.n = len(self.keys)
        self.grid = (int(grid[0]), int(grid[1]))
        self.dim = int(dim)

    def read(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        rows, missing = self.store.read_rows([self.keys[i] for i in idx], np.dtype(np.float32),
                                             shape=(*self.grid, self.dim))
        if missing:
            raise BackboneLensError(f"{len(missing)} of {len(idx)} images have no cached patch tokens "
                                    f"(first: {self.keys[idx[missing[0]]]}); extract them first")
        return rows


def images_per_chunk(source: TokenSource, patches: int = CHUNK_PATCHES) -> int:
    """Images whose patch vectors make about ``patches`` rows (at least one image)."""
    return max(1, patches // (source.grid[0] * source.grid[1]))


def chunks(n: int, size: int) -> Iterator[np.ndarray]:
    """Consecutive index blocks ``[start, start + size)`` covering ``range(n)``."""
    for s in range(0, n, size):
        yield np.arange(s, min(n, s + size))


def sample_plan(n: int, hw: int, max_vectors: int = MAX_SAMPLE, seed: int = 0) -> tuple[np.ndarray, int]:
    """Which images the fit sample comes from and how many patches of each.

    All patches of all images when they are at most ``max_vectors``. Otherwise the same number of
    random patches from each of ``min(n, SAMPLE_SPREAD * max_vectors / hw)`` random images, so the
    sample spreads over many images while reading at most :data:`SAMPLE_SPREAD` times its own size.

    Returns:
        ``(images, per_image)``: sorted image indices and patches drawn from each.
    """
    if max_vectors < 1:
        raise ValueError(f"the sample needs at least one patch vector, got {max_vectors}")
    if n * hw <= max_vectors:
        return np.arange(n), hw
    n_img = min(n, math.ceil(SAMPLE_SPREAD * max_vectors / hw))
    per_image = max(1, min(hw, max_vectors // n_img))
    images = np.sort(np.random.default_rng(seed).choice(n, size=n_img, replace=False))
    return images, per_image


def sample_size(dim: int, max_vectors: int = MAX_SAMPLE) -> int:
    """Patch vectors in a fit sample of ``dim``-dimensional vectors: ``max_vectors``, and at most
    :data:`MAX_SAMPLE_BYTES` of float32."""
    return max(1, min(max_vectors, MAX_SAMPLE_BYTES // (4 * dim)))


def sample_patches(source: TokenSource, max_vectors: int = MAX_SAMPLE, seed: int = 0) -> tuple[np.ndarray, int]:
    """A sample of patch vectors ``[s, D]`` float32 drawn by :func:`sample_plan`, read chunk by chunk
    (``s`` at most :func:`sample_size` of ``max_vectors``).

    Returns:
        ``(X, n_images)``: the vectors and how many images they come from.
    """
    h, w = source.grid
    images, per_image = sample_plan(source.n, h * w, sample_size(source.dim, max_vectors), seed)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((len(images) * per_image, source.dim), np.float32)
    step = images_per_chunk(source)
    for c in chunks(len(images), step):
        tok = source.read(images[c]).reshape(len(c), h * w, source.dim)  # [b, h*w, D]
        if per_image == h * w:
            picked = tok
        else:
            pos = np.stack([rng.choice(h * w, size=per_image, replace=False) for _ in c])  # [b, per_image]
            picked = np.take_along_axis(tok, pos[:, :, None], axis=1)
        out[c[0] * per_image:(c[-1] + 1) * per_image] = picked.reshape(-1, source.dim)
    return out, len(images)
