"""Click to segment: the patches whose tokens are similar to the clicked one.

One function for every place a click becomes a mask (the Segmentation and Compare pages, the quality
benchmark): cosine similarity of the clicked patch to every patch, then either a threshold (Otsu's or a
fixed one) or, with the ``"border"`` rule, the patches closer to the click than to anything on the
picture's border, kept where they connect to the click.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.geometry.vectors import l2_normalize
from core.segment.grid import EPS, as_grid_tokens
from core.segment.masks import component_at
from core.segment.similarity import border_similarity, patch_similarity
from core.segment.threshold import otsu_threshold, threshold_mask


@dataclass(frozen=True)
class ClickMask:
    """What a click produced.

    Attributes:
        query: ``(i, j)`` the clicked patch.
        similarity: ``[h, w]`` cosine of every patch to the clicked one (1 at the click).
        otsu: Otsu's threshold of ``similarity`` (reported even when a fixed threshold was used).
        threshold: the threshold of the ``"threshold"`` rule (``otsu`` unless one was given); with the
            ``"border"`` rule it is Otsu's, for maps that have no border of their own (other pictures).
        mask: bool ``[h, w]``: ``similarity >= threshold`` (rule ``"threshold"``), or the component of
            ``similarity > background`` holding the click (rule ``"border"``).
        rule: ``"threshold"`` or ``"border"``.
        background: ``[h, w]`` cosine of every patch to its most similar border patch (rule ``"border"``),
            else None.
    """

    query: tuple[int, int]
    similarity: np.ndarray
    otsu: float
    threshold: float
    mask: np.ndarray
    rule: str = "threshold"
    background: np.ndarray | None = None


CLICK_RULES = ("threshold", "border")
BORDER_MAX_ITER = 20  # exemplar updates of the "border" rule (on the scenes benchmark the mask changed at most 6 times)


def click_mask(tokens: np.ndarray | torch.Tensor, query: tuple[int, int], threshold: float | None = None,
               *, rule: str = "threshold") -> ClickMask:
    """Segment the patches similar to the clicked one.

    Rules:
        ``"threshold"``: ``similarity >= threshold`` (Otsu's threshold of this map unless one is given).
        ``"border"``: the click is the first object exemplar and the border patches are the background
        exemplars (the boundary prior, see :func:`core.segment.similarity.border_similarity`; the clicked
        patch itself is left out of them): a patch is object when it is more similar to the object
        exemplar than to every border patch (a nearest-neighbour rule, nothing to tune), and only the
        4-connected component holding the click is kept. Then the mean direction of the mask's tokens
        replaces the single clicked token as the object exemplar, and the rule is applied again until the
        mask stops changing (at most :data:`BORDER_MAX_ITER` times; an empty mask ends it too): one
        token is a noisy exemplar of an object, the mean of its tokens a steadier one (the assignment
        step of a two-class k-means whose background exemplars stay fixed). Assumes the object does not
        run along the border.

    Args:
        tokens: ``[h, w, D]`` patch tokens of one image.
        query: ``(i, j)`` row and column of the clicked patch (from :func:`core.segment.similarity.pixel_to_patch`).
        threshold: fixed cosine threshold for the ``"threshold"`` rule; None uses Otsu's threshold.
        rule: one of :data:`CLICK_RULES`.

    Returns:
        a :class:`ClickMask`.
    """
    if rule not in CLICK_RULES:
        raise ValueError(f"unknown click rule {rule!r}; choose from {CLICK_RULES}")
    if rule == "border" and threshold is not None:
        raise ValueError("the 'border' rule has no threshold; pass threshold=None or use rule='threshold'")
    q = (int(query[0]), int(query[1]))
    sim = patch_similarity(tokens, q)  # [h, w]
    otsu = otsu_threshold(sim)
    thr = otsu if threshold is None else float(threshold)
    if rule == "threshold":
        return ClickMask(q, sim, otsu, thr, threshold_mask(sim, thr))
    background = border_similarity(tokens, exclude=q)  # [h, w]
    mask = component_at(sim > background, q)  # [h, w] the click as the exemplar
    unit = l2_normalize(as_grid_tokens(tokens), EPS)  # [h, w, D]
    for _ in range(BORDER_MAX_ITER):
        proto = l2_normalize(unit[mask].mean(axis=0), EPS)  # [D] mean direction of the mask's tokens
        new = component_at(unit @ proto > background, q)
        if not new.any() or np.array_equal(new, mask):
            break
        mask = new
    return ClickMask(q, sim, otsu, thr, mask, rule, background)
