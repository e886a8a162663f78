"""Localisation of a saliency map against a ground-truth object mask (e.g. a stamp's alpha channel).

* Pointing game (Zhang et al. 2016): a hit when the map's maximum lies on the object.
* Relevance mass (Arras et al. 2022, "relevance mass accuracy"): the share of the map's total
  relevance that falls inside the object mask.

Both compare at the model's input resolution: the whole picture is resized to ``S x S`` without a crop,
so the mask is resized the same way (nearest) and the map is stretched onto it (bilinear). Maps are
min-max scaled first, so maps with negative values (A - B) are compared as the others.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from core.explain.maps import as_map, normalize01, upsample


def mask_at(mask: np.ndarray, size: int) -> np.ndarray:
    """A ``[H, W]`` bool mask of the original picture resized (nearest) to the ``[S, S]`` model input."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    img = Image.fromarray(m.astype(np.uint8) * 255, "L").resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(img) > 127


def _on_mask(saliency: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(map [H, W] in [0, 1], mask [H, W] bool)`` at the mask's resolution."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    if not m.any():
        raise ValueError("the object mask is empty: localisation needs an object (an image with an alpha channel)")
    s = as_map(saliency, "saliency")
    s = s if s.shape == m.shape else upsample(s, m.shape)
    return normalize01(s), m


def pointing_game(saliency: np.ndarray, mask: np.ndarray) -> float:
    """1.0 when the map's maximum lies inside the mask, else 0.0.

    Ties at the maximum count as a hit only when every tied pixel is inside (a constant map, which points
    nowhere, scores 0 unless the object fills the picture).

    Args:
        saliency: ``[h, w]`` or ``[H, W]`` map (stretched onto the mask).
        mask: ``[H, W]`` bool object mask.
    """
    s, m = _on_mask(saliency, mask)
    top = s >= s.max()  # [H, W] all pixels at the maximum
    return float(m[top].all())


def relevance_mass(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the (min-max scaled) map's total relevance inside the mask, in ``[0, 1]``.

    A constant map has no relevance to place and scores the object's area fraction (uniform spread).
    """
    s, m = _on_mask(saliency, mask)
    total = float(s.sum())
    if total <= 0.0:
        return float(m.mean())
    return float(s[m].sum() / total)
