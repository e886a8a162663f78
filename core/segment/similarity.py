"""Cosine similarity between patch tokens: one patch against its own image or against other images, and
the pixel -> patch mapping a click needs.

Patch tokens are ``[h, w, D]`` per image (prefix tokens already removed). Pixel sizes follow PIL,
``(W, H)``; patch indices are ``(i, j)`` = (row, column). Inputs may be numpy arrays or CPU torch
tensors; outputs are numpy arrays.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.geometry.vectors import l2_normalize
from core.segment.grid import EPS, as_grid_tokens


def patch_similarity(tokens: np.ndarray | torch.Tensor, query: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of patch ``query = (i, j)`` to every patch of the same image.

    Args:
        tokens: ``[h, w, D]`` patch tokens.
        query: ``(i, j)`` row and column of the query patch.

    Returns:
        ``[h, w]`` similarities in ``[-1, 1]`` (1 at the query patch).
    """
    t = as_grid_tokens(tokens)
    h, w, _ = t.shape
    i, j = (int(q) for q in query)
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"query patch {(i, j)} outside the {h}x{w} grid; map pixels with pixel_to_patch")
    tn = l2_normalize(t, EPS)  # [h, w, D]
    return (tn @ tn[i, j]).astype(np.float32)  # [h, w]


def border_ring(grid: tuple[int, int]) -> np.ndarray:
    """Boolean ``[h, w]``: the outer ring of patches (first and last row and column)."""
    h, w = (int(g) for g in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    ring = np.ones((h, w), dtype=bool)
    ring[1:-1, 1:-1] = False
    return ring


def border_similarity(tokens: np.ndarray | torch.Tensor, exclude: tuple[int, int] | None = None) -> np.ndarray:
    """For every patch, the cosine similarity to its most similar patch on the picture's border.

    The border ring (:func:`border_ring`) stands for the background: the boundary prior of salient-object
    detection (Wei et al., "Geodesic Saliency Using Background Priors", ECCV 2012; Yang et al.,
    "Saliency Detection via Graph-Based Manifold Ranking", CVPR 2013, rank against the four borders as
    background queries). A border patch scores 1 (itself), unless it is ``exclude``.

    Args:
        tokens: ``[h, w, D]`` patch tokens.
        exclude: ``(i, j)`` a patch left out of the border set (a click on the border is not background).

    Returns:
        ``[h, w]`` max cosine to the border patches, in ``[-1, 1]``.
    """
    t = as_grid_tokens(tokens)
    h, w, D = t.shape
    ring = border_ring((h, w))
    if exclude is not None:
        i, j = (int(v) for v in exclude)
        if not (0 <= i < h and 0 <= j < w):
            raise ValueError(f"exclude patch {(i, j)} outside the {h}x{w} grid")
        ring[i, j] = False
    if not ring.any():
        raise ValueError(f"a {h}x{w} grid has no border patch left to compare with")
    tn = l2_normalize(t, EPS).reshape(h * w, D)  # [h*w, D]
    return (tn @ tn[ring.ravel()].T).max(axis=1).reshape(h, w).astype(np.float32)  # [h, w]


def cross_similarity(query_token: np.ndarray | torch.Tensor, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
    """Cosine similarity of one token to every patch of ``M`` images.

    Args:
        query_token: ``[D]``.
        tokens: ``[M, h, w, D]`` patch tokens of ``M`` images at the same grid.

    Returns:
        ``[M, h, w]`` similarities.
    """
    q = np.asarray(query_token, dtype=np.float32)
    t = np.asarray(tokens, dtype=np.float32)
    if q.ndim != 1:
        raise ValueError(f"query_token must be [D], got shape {q.shape}")
    if t.ndim != 4:
        raise ValueError(f"tokens must be [M, h, w, D] (stack images of one grid size), got shape {t.shape}")
    if t.shape[-1] != q.shape[0]:
        raise ValueError(f"query dim {q.shape[0]} != token dim {t.shape[-1]}: use the same backbone and layer")
    return (l2_normalize(t, EPS) @ l2_normalize(q, EPS)).astype(np.float32)  # [M, h, w]


def pixel_to_patch(xy: tuple[float, float], image_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """The patch under a pixel of the displayed image.

    Backbones resize the whole image (no crop), so patches map back by plain scaling.

    Args:
        xy: ``(x, y)`` pixel coordinates (x = column, y = row), ``0 <= x <= W``, ``0 <= y <= H``.
        image_size: ``(W, H)`` of the image the coordinates refer to (PIL order).
        grid: patch grid ``(h, w)``.

    Returns:
        ``(i, j)`` row and column of the patch (the far edge belongs to the last patch).
    """
    x, y = (float(v) for v in xy)
    W, H = (int(s) for s in image_size)
    h, w = (int(g) for g in grid)
    if W <= 0 or H <= 0 or h <= 0 or w <= 0:
        raise ValueError(f"image_size {image_size} and grid {grid} must be positive")
    if not (0.0 <= x <= W and 0.0 <= y <= H):
        raise ValueError(f"pixel {(x, y)} outside an image of size (W, H)={image_size}")
    i = min(int(math.floor(y * h / H)), h - 1)
    j = min(int(math.floor(x * w / W)), w - 1)
    return i, j
