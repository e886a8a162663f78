"""Unsupervised foreground of one image from a backbone: the first principal component of its patch
tokens, the patches holding most of the CLS attention, a normalized cut of the patch affinity graph, or
the contrast to the picture's border (boundary prior).

Patch tokens are ``[h, w, D]``; every function returns ``[h, w]`` maps.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from scipy.linalg import eigh

from core.segment.grid import EPS, as_grid_tokens
from core.segment.masks import largest_component
from core.segment.similarity import border_ring, border_similarity
from core.segment.threshold import otsu_threshold


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
    if score[border_ring((h, w))].mean() > 0:
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


# TokenCut's graph (Wang et al. 2022, "Self-Supervised Transformers for Unsupervised Object Discovery using
# Normalized Cut"): an edge of weight 1 where the cosine of two patches exceeds tau, else a tiny weight.
NCUT_TAU = 0.2
NCUT_EPS = 1e-5


def ncut_foreground(tokens: np.ndarray | torch.Tensor, tau: float = NCUT_TAU, eps: float = NCUT_EPS,
                    seed_component: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Foreground by normalized cut of the patch affinity graph (TokenCut).

    Nodes are the ``h*w`` patches; ``W_ab = 1`` if ``cos(t_a, t_b) > tau`` else ``eps`` (the self-loop
    included, as in TokenCut); ``D = diag(W 1)``. The second smallest generalized eigenvector of
    ``(D - W) x = lambda D x`` relaxes the minimum normalized cut; it is split at its mean. The object
    is the side holding the seed, the patch with the largest ``|x|`` (the most confidently separated
    patch). With ``seed_component`` only the 4-connected component of that side containing the seed is
    kept, as TokenCut does for object discovery and saliency.

    Args:
        tokens: ``[h, w, D]`` patch tokens of one image.
        tau: cosine threshold of the graph's edges.
        eps: weight of the edges below ``tau`` (keeps the graph connected, ``D`` positive definite).
        seed_component: keep only the seed's connected component.

    Returns:
        ``(score [h, w], mask bool [h, w])``: the eigenvector minus its mean, signed so that the object
        side is positive (``mask`` is ``score > 0``, restricted to the seed's component when asked).
    """
    t = as_grid_tokens(tokens)
    h, w, D = t.shape
    if h * w < 3:
        raise ValueError(f"normalized cut needs at least 3 patches, got a {h}x{w} grid")
    if eps <= 0:
        raise ValueError(f"eps must be > 0 (it keeps every node's degree positive), got {eps}")
    x = t.reshape(h * w, D).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + EPS  # [P, D] unit rows
    A = np.where(x @ x.T > tau, 1.0, eps)  # [P, P] affinity
    d = A.sum(axis=1)  # [P] degrees
    _, vecs = eigh(np.diag(d) - A, np.diag(d), subset_by_index=[1, 1])  # second smallest: [P, 1]
    v = vecs[:, 0]
    score = v - v.mean()  # [P], > 0 on one side of the mean split
    seed = int(np.argmax(np.abs(v)))
    if score[seed] <= 0:  # the seed's side is the object
        score = -score
    score = score.reshape(h, w)
    mask = score > 0
    if seed_component:
        comps, _ = ndimage.label(mask)  # 4-connectivity
        mask = comps == comps.reshape(-1)[seed]
    return score.astype(np.float32), mask


def boundary_foreground(tokens: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Foreground by the boundary prior: the patches least like anything on the picture's border.

    The border ring of patches stands for the background (Wei et al. 2012, "Geodesic Saliency Using
    Background Priors"; Yang et al. 2013, manifold ranking against the four borders; Zhu et al. 2014,
    "boundary connectivity": an object seldom touches the border much, the background does). A patch
    scores ``1 - max_b cos(t, t_b)`` over the border patches ``b``
    (:func:`core.segment.similarity.border_similarity`): 0 on the border and on anything that looks like
    it, high on what the border never shows. Cut at Otsu's threshold of that score; the largest
    4-connected component is the object. Assumes the object lies inside the picture: an object cut by
    the border counts as background (so do the scene's own objects cropped by the frame).

    Args:
        tokens: ``[h, w, D]`` patch tokens of one image (a grid of at least 3x3, so it has an inside).

    Returns:
        ``(score [h, w] in [0, 2], mask bool [h, w])``.
    """
    t = as_grid_tokens(tokens)
    if min(t.shape[:2]) < 3:
        raise ValueError(f"the boundary prior needs a grid of at least 3x3 (an inside), got {t.shape[0]}x{t.shape[1]}")
    score = 1.0 - border_similarity(t)  # [h, w]
    mask = largest_component(score >= otsu_threshold(score)) if np.ptp(score) > 0 else np.zeros(score.shape, bool)
    return score.astype(np.float32), mask
