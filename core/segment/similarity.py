"""Segmentation from frozen patch tokens: similarity maps, masks, k-means parts, co-segmentation and
unsupervised foreground (PCA or CLS attention).

Patch tokens are ``[h, w, D]`` per image (prefix tokens already removed). Pixel sizes follow PIL,
``(W, H)``; patch indices are ``(i, j)`` = (row, column). Inputs may be numpy arrays or CPU torch
tensors; outputs are numpy arrays.
"""
from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from sklearn.cluster import KMeans

from core.geometry.vectors import l2_normalize

_EPS = 1e-8


def _as_grid_tokens(tokens: np.ndarray | torch.Tensor, name: str = "tokens") -> np.ndarray:
    t = np.asarray(tokens, dtype=np.float32)
    if t.ndim != 3:
        raise ValueError(f"{name} must be [h, w, D] patch tokens of one image, got shape {t.shape}")
    return t


# ---- similarity --------------------------------------------------------------------------------
def patch_similarity(tokens: np.ndarray | torch.Tensor, query: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of patch ``query = (i, j)`` to every patch of the same image.

    Args:
        tokens: ``[h, w, D]`` patch tokens.
        query: ``(i, j)`` row and column of the query patch.

    Returns:
        ``[h, w]`` similarities in ``[-1, 1]`` (1 at the query patch).
    """
    t = _as_grid_tokens(tokens)
    h, w, _ = t.shape
    i, j = (int(q) for q in query)
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"query patch {(i, j)} outside the {h}x{w} grid; map pixels with pixel_to_patch")
    tn = l2_normalize(t, _EPS)  # [h, w, D]
    return (tn @ tn[i, j]).astype(np.float32)  # [h, w]


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
    return (l2_normalize(t, _EPS) @ l2_normalize(q, _EPS)).astype(np.float32)  # [M, h, w]


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


# ---- masks -------------------------------------------------------------------------------------
def threshold_mask(sim: np.ndarray | torch.Tensor, thr: float) -> np.ndarray:
    """``sim >= thr`` as a boolean ``[h, w]`` mask."""
    s = np.asarray(sim)
    if s.ndim != 2:
        raise ValueError(f"sim must be [h, w], got shape {s.shape}")
    return s >= thr


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


# ---- clustering ----------------------------------------------------------------------------------
def _kmeans(x: np.ndarray, k: int, seed: int, n_init: int) -> np.ndarray:
    """KMeans labels of rows of ``x [P, D]`` after L2 normalisation (cosine-like geometry)."""
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0]}] (number of patches), got {k}")
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    return km.fit_predict(l2_normalize(x, _EPS)).astype(np.int64)  # [P]


def kmeans_parts(tokens: np.ndarray | torch.Tensor, k: int, seed: int = 0, n_init: int = 3) -> np.ndarray:
    """Cluster one image's patches into ``k`` parts.

    Args:
        tokens: ``[h, w, D]`` patch tokens.
        k: number of clusters.
        seed: KMeans random state.
        n_init: KMeans restarts.

    Returns:
        ``[h, w]`` integer labels in ``[0, k)``.
    """
    t = _as_grid_tokens(tokens)
    h, w, D = t.shape
    return _kmeans(t.reshape(h * w, D), k, seed, n_init).reshape(h, w)


def cosegment(
    tokens_list: Sequence[np.ndarray | torch.Tensor], k: int, seed: int = 0, n_init: int = 3
) -> list[np.ndarray]:
    """Joint KMeans over the patches of several images, so cluster ids are shared across images.

    Args:
        tokens_list: per image ``[h_i, w_i, D]`` patch tokens (grids may differ, ``D`` may not).
        k: number of clusters.
        seed / n_init: KMeans settings.

    Returns:
        per image ``[h_i, w_i]`` labels in ``[0, k)``.
    """
    if len(tokens_list) == 0:
        raise ValueError("cosegment needs at least one image")
    toks = [_as_grid_tokens(t, f"tokens_list[{n}]") for n, t in enumerate(tokens_list)]
    dims = {t.shape[-1] for t in toks}
    if len(dims) != 1:
        raise ValueError(f"all images need the same token dim (same backbone and layer), got {sorted(dims)}")
    flat = np.concatenate([t.reshape(-1, t.shape[-1]) for t in toks])  # [sum h_i*w_i, D]
    labels = _kmeans(flat, k, seed, n_init)
    out, start = [], 0
    for t in toks:
        h, w = t.shape[:2]
        out.append(labels[start : start + h * w].reshape(h, w))
        start += h * w
    return out


def common_foreground(
    labels_list: Sequence[np.ndarray],
    fg_score_list: Sequence[np.ndarray | torch.Tensor],
    vote_frac: float = 0.5,
    margin: float = 0.0,
) -> set[int]:
    """Clusters of a co-segmentation that are foreground in most images.

    Rule (a voting scheme after Amir et al., "Deep ViT Features as Dense Visual Descriptors"):
    in image ``n`` a cluster present there gets a vote if the mean foreground score of its patches
    exceeds ``mean(score_n) + margin * std(score_n)`` (scale-free, so PCA scores and attention maps
    both work). A cluster is common foreground if it gets votes in at least
    ``ceil(vote_frac * N)`` of the ``N`` images (clusters absent from an image get no vote there).

    Args:
        labels_list: per image ``[h_i, w_i]`` labels from :func:`cosegment`.
        fg_score_list: per image ``[h_i, w_i]`` foreground scores (higher = more foreground), e.g.
            from :func:`pca_foreground` or a CLS attention map.
        vote_frac: fraction of images that must vote for a cluster, in ``(0, 1]``.
        margin: extra threshold in units of each image's score std.

    Returns:
        the set of foreground cluster ids.
    """
    if len(labels_list) != len(fg_score_list):
        raise ValueError(f"{len(labels_list)} label maps but {len(fg_score_list)} score maps")
    if len(labels_list) == 0:
        raise ValueError("common_foreground needs at least one image")
    if not 0.0 < vote_frac <= 1.0:
        raise ValueError(f"vote_frac must be in (0, 1], got {vote_frac}")
    votes: dict[int, int] = {}
    for n, (lab, sc) in enumerate(zip(labels_list, fg_score_list)):
        lab = np.asarray(lab)
        s = np.asarray(sc, dtype=np.float64)
        if lab.shape != s.shape or lab.ndim != 2:
            raise ValueError(f"image {n}: labels {lab.shape} and scores {s.shape} must be the same [h, w]")
        thr = s.mean() + margin * s.std()
        for c in np.unique(lab):
            if s[lab == c].mean() > thr:
                votes[int(c)] = votes.get(int(c), 0) + 1
    need = math.ceil(vote_frac * len(labels_list))
    return {c for c, v in votes.items() if v >= need}


# ---- foreground ----------------------------------------------------------------------------------
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
    t = _as_grid_tokens(tokens)
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
