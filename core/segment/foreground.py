"""Unsupervised foreground of one image from a backbone: the first principal component of its patch
tokens, or the patches holding most of the CLS attention.

Patch tokens are ``[h, w, D]``; every function returns ``[h, w]`` maps.
"""
from __future__ import annotations

import numpy as np
import torch

from core.segment.grid import as_grid_tokens


def pca_foreground(
    tokens: np.ndarray | torch.Tensor, ref_tokens: np.ndarray | torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground from the first principal component of the patch tokens (as in DINOv2's PCA figures).

    The PCA (mean and first component) is fitted on ``ref_tokens`` if given (e.g. the tokens of a
    whole image set, for a consistent direction), else on ``tokens``. The sign of a principal
    component is arbitrary; heuristic: objects are usually away from the image edge, so the sign is
    flipped if the mean score over the border patches (outer ring of the grid) is positive, making
    the background negative. Threshold: ``score > 0`` (the PCA mean separates the two modes; no
    tuning, deterministic — Otsu would move it towards the larger mode's edge).

    Args:
        tokens: ``[h, w, D]`` patch tokens of one image.
        ref_tokens: optional ``[..., D]`` tokens to fit the PCA on.

    Returns:
        ``(score [h, w], mask bool [h, w])``.
    """
    t = as_grid_tokens(tokens)
    h, w, D = t.shape
    if ref_tokens is None:
        ref = t.reshape(h * w, D)  # [h*w, D]
    else:
        ref = np.asarray(ref_tokens, dtype=np.float32)
        if ref.shape[-1] != D:
            raise ValueError(f"ref_tokens dim {ref.shape[-1]} != token dim {D}: use the same backbone and layer")
        ref = ref.reshape(-1, D)  # [P, D]
    if ref.shape[0] < 2:
        raise ValueError("PCA needs at least 2 reference tokens")
    ref = ref.astype(np.float64)
    mean = ref.mean(axis=0)  # [D]
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)  # vt: [r, D]
    score = ((t.reshape(h * w, D).astype(np.float64) - mean) @ vt[0]).reshape(h, w)  # [h, w]
    border = np.ones((h, w), dtype=bool)
    border[1:-1, 1:-1] = False
    if score[border].mean() > 0:
        score = -score
    score = score.astype(np.float32)
    return score, score > 0


def attention_foreground(cls_map: np.ndarray | torch.Tensor, keep: float = 0.6) -> np.ndarray:
    """DINO-style mask: the most-attended patches that together hold ``keep`` of the attention mass.

    Same rule as DINO's ``visualize_attention.py`` (ascending cumulative mass ``> 1 - keep``), written
    as: sort descending and keep a patch while the mass of the patches before it is still below
    ``keep`` -- the smallest top set holding at least ``keep``. The descending form avoids the
    round-off of ``1 - cumsum`` at exact boundaries; ties are broken in raster order.

    Args:
        cls_map: ``[h, w]`` non-negative CLS attention (e.g. one head, or the head mean).
        keep: attention mass to keep, in ``(0, 1]``.

    Returns:
        boolean ``[h, w]``.
    """
    a = np.asarray(cls_map, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"cls_map must be [h, w], got shape {a.shape}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if np.any(a < 0) or a.sum() <= 0:
        raise ValueError("cls_map must be non-negative with positive total mass (raw attention, not a difference map)")
    flat = a.ravel() / a.sum()  # [h*w] mass, sums to 1
    order = np.argsort(-flat, kind="stable")  # most attended first
    before = np.cumsum(flat[order]) - flat[order]  # mass of the patches ranked above each one
    keep_sorted = before < keep - 1e-9
    mask = np.empty_like(keep_sorted)
    mask[order] = keep_sorted
    return mask.reshape(a.shape)
