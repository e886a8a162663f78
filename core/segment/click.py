"""Click to segment: the patches whose tokens are similar to the clicked one.

One function for every place a click becomes a mask (the Segmentation and Compare pages, the quality
benchmark): cosine similarity of the clicked patch to every patch, then a threshold (Otsu's by default).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.segment.similarity import patch_similarity
from core.segment.threshold import otsu_threshold, threshold_mask


@dataclass(frozen=True)
class ClickMask:
    """What a click produced.

    Attributes:
        query: ``(i, j)`` the clicked patch.
        similarity: ``[h, w]`` cosine of every patch to the clicked one (1 at the click).
        otsu: Otsu's threshold of ``similarity`` (reported even when a fixed threshold was used).
        threshold: the threshold applied (``otsu`` unless one was given).
        mask: bool ``[h, w]``, ``similarity >= threshold``.
    """

    query: tuple[int, int]
    similarity: np.ndarray
    otsu: float
    threshold: float
    mask: np.ndarray


def click_mask(tokens: np.ndarray | torch.Tensor, query: tuple[int, int], threshold: float | None = None) -> ClickMask:
    """Segment the patches similar to the clicked one.

    Args:
        tokens: ``[h, w, D]`` patch tokens of one image.
        query: ``(i, j)`` row and column of the clicked patch (from :func:`core.segment.similarity.pixel_to_patch`).
        threshold: fixed cosine threshold; None uses Otsu's threshold of this similarity map.

    Returns:
        a :class:`ClickMask`.
    """
    q = (int(query[0]), int(query[1]))
    sim = patch_similarity(tokens, q)  # [h, w]
    otsu = otsu_threshold(sim)
    thr = otsu if threshold is None else float(threshold)
    return ClickMask(q, sim, otsu, thr, threshold_mask(sim, thr))
