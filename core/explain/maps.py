"""Shared utilities for 2-D maps: checking, min-max scaling and upsampling.

Conventions: a patch-level map is ``[h, w]`` (rows, columns of the patch grid); an image-level map
is ``[H, W]``. Sizes written ``(H, W)`` are numpy order; ``image.size`` of a PIL image is ``(W, H)``.
Inputs may be numpy arrays or CPU torch tensors; outputs are numpy arrays (``float32`` maps).
Drawing a map over a picture is :func:`core.render.fast_overlay`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


# ---- basic map utilities ----------------------------------------------------------------------
def as_map(m: np.ndarray | torch.Tensor, name: str = "map") -> np.ndarray:
    """A finite 2-D ``[h, w]`` float32 array (raises with the shape otherwise)."""
    a = np.asarray(m, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [h, w] array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf values; check the upstream computation")
    return a


def normalize01(m: np.ndarray | torch.Tensor) -> np.ndarray:
    """Min-max scale a map to ``[0, 1]``.

    Args:
        m: any-shaped finite array.

    Returns:
        ``float32`` array of the same shape; a constant map becomes all zeros.
    """
    a = np.asarray(m, dtype=np.float32)
    if a.size == 0:
        raise ValueError("normalize01 got an empty array")
    if not np.all(np.isfinite(a)):
        raise ValueError("normalize01 got NaN or inf values; check the upstream computation")
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 0.0:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def upsample(m: np.ndarray | torch.Tensor, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a patch-level map to pixel resolution.

    Args:
        m: ``[h, w]`` map.
        size_hw: target ``(H, W)`` in numpy order (note: PIL's ``image.size`` is ``(W, H)``).

    Returns:
        ``[H, W]`` ``float32`` map (``align_corners=False``, as for image resizing).
    """
    a = as_map(m)
    H, W = (int(s) for s in size_hw)
    if H <= 0 or W <= 0:
        raise ValueError(f"upsample size must be positive (H, W), got {size_hw}")
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]  # [1, 1, h, w]
    out = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)  # [1, 1, H, W]
    return out[0, 0].numpy()
