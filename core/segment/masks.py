"""Patch masks: connected components, nearest-neighbour upsampling to the picture, PNG bytes, IoU."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from scipy import ndimage


def _as_patch_mask(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be [h, w], got shape {m.shape}")
    return m


def component_at(mask: np.ndarray | torch.Tensor, ij: tuple[int, int]) -> np.ndarray:
    """The 4-connected component of a boolean ``[h, w]`` mask that holds patch ``ij = (i, j)``
    (all False when that patch is off)."""
    m = _as_patch_mask(mask)
    i, j = (int(v) for v in ij)
    if not (0 <= i < m.shape[0] and 0 <= j < m.shape[1]):
        raise ValueError(f"patch {(i, j)} outside the {m.shape[0]}x{m.shape[1]} grid")
    labels, _ = ndimage.label(m)  # [h, w], 0 = off, 4-connectivity
    return labels == labels[i, j] if m[i, j] else np.zeros_like(m)


def largest_component(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """The largest 4-connected component of a boolean ``[h, w]`` mask (ties: the first in raster order of
    its first patch; all False for an empty mask)."""
    m = _as_patch_mask(mask)
    labels, n = ndimage.label(m)  # [h, w], components numbered in raster order of their first patch
    if n == 0:
        return m
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # [n] patches per component
    return labels == 1 + int(np.argmax(sizes))


def mask_to_image_size(mask: np.ndarray | torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a patch mask to pixels.

    Nearest (not bilinear-then-threshold) so every pixel takes exactly the value of the patch it lies
    in (pixel centre ``(y + 0.5) * h / H``), which matches :func:`pixel_to_patch` and the
    resize-without-crop preprocessing; the blocky edge is the true resolution of the features.

    Args:
        mask: boolean ``[h, w]``.
        image_size: ``(W, H)`` in pixels (PIL order).

    Returns:
        boolean ``[H, W]``.
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be [h, w], got shape {m.shape}")
    W, H = (int(s) for s in image_size)
    if W <= 0 or H <= 0:
        raise ValueError(f"image_size must be positive (W, H), got {image_size}")
    h, w = m.shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)  # [H]
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)  # [W]
    return m[rows[:, None], cols[None, :]]  # [H, W]


def mask_png_bytes(mask: np.ndarray | torch.Tensor) -> bytes:
    """Encode a boolean ``[H, W]`` mask as an 8-bit greyscale PNG (0 / 255)."""
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    buf = io.BytesIO()
    Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def iou(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 if both are empty)."""
    ma, mb = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if ma.shape != mb.shape:
        raise ValueError(f"mask shapes differ: {ma.shape} vs {mb.shape}; resize with mask_to_image_size")
    union = np.logical_or(ma, mb).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(ma, mb).sum() / union)
