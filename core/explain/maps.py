"""Shared utilities for 2-D maps (normalise, upsample, overlay), prototype similarity maps and the
deletion / insertion faithfulness metric.

Conventions: a patch-level map is ``[h, w]`` (rows, columns of the patch grid); an image-level map
is ``[H, W]``. Sizes written ``(H, W)`` are numpy order; ``image.size`` of a PIL image is ``(W, H)``.
Inputs may be numpy arrays or CPU torch tensors; outputs are numpy arrays (``float32`` maps).
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

Baseline = Literal["blur", "zero", "mean"]


# ---- basic map utilities ----------------------------------------------------------------------
def _as_map(m: np.ndarray | torch.Tensor, name: str = "map") -> np.ndarray:
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
    a = _as_map(m)
    H, W = (int(s) for s in size_hw)
    if H <= 0 or W <= 0:
        raise ValueError(f"upsample size must be positive (H, W), got {size_hw}")
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]  # [1, 1, h, w]
    out = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)  # [1, 1, H, W]
    return out[0, 0].numpy()


def _cosine_to(tokens: np.ndarray, vec: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Cosine similarity of every row of ``tokens [..., D]`` to ``vec [D]`` -> ``[...]``."""
    t = tokens.astype(np.float64)
    v = vec.astype(np.float64)
    tn = np.linalg.norm(t, axis=-1)  # [...]
    vn = np.linalg.norm(v)
    return ((t @ v) / (np.maximum(tn, eps) * max(vn, eps))).astype(np.float32)


# ---- prototype maps -----------------------------------------------------------------------------
def prototype_maps(
    patch_tokens: np.ndarray | torch.Tensor,
    protos: np.ndarray | torch.Tensor,
    top2_idx: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Where an image looks like class ``a`` and where like the runner-up ``b``.

    Args:
        patch_tokens: ``[h, w, D]`` patch tokens of one image.
        protos: ``[K, D]`` class prototypes (e.g. class means of embeddings, same space as tokens).
        top2_idx: ``(a, b)`` prototype indices, typically the predicted class and the runner-up.

    Returns:
        ``{"a": [h, w], "b": [h, w], "diff": [h, w]}``: cosine similarity of each patch to
        prototype ``a`` and ``b``, and ``a - b`` ("why this class rather than the runner-up").
    """
    tok = np.asarray(patch_tokens, dtype=np.float32)
    P = np.asarray(protos, dtype=np.float32)
    if tok.ndim != 3:
        raise ValueError(f"patch_tokens must be [h, w, D], got shape {tok.shape}")
    if P.ndim != 2:
        raise ValueError(f"protos must be [K, D], got shape {P.shape}")
    if tok.shape[-1] != P.shape[-1]:
        raise ValueError(
            f"token dim {tok.shape[-1]} != prototype dim {P.shape[-1]}: build the prototypes from "
            "the same backbone and layer as the patch tokens"
        )
    a, b = (int(i) for i in top2_idx)
    K = P.shape[0]
    for i in (a, b):
        if not 0 <= i < K:
            raise ValueError(f"prototype index {i} out of range for {K} prototypes")
    sim_a = _cosine_to(tok, P[a])  # [h, w]
    sim_b = _cosine_to(tok, P[b])  # [h, w]
    return {"a": sim_a, "b": sim_b, "diff": sim_a - sim_b}


# ---- overlay ------------------------------------------------------------------------------------
def overlay(
    image: Image.Image,
    heat: np.ndarray | torch.Tensor,
    alpha: float = 0.5,
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Image.Image:
    """Blend a colour-mapped heat map over an image.

    Args:
        image: the picture (any PIL mode; converted to RGB).
        heat: ``[h, w]`` map in any range; bilinearly upsampled to the image size.
        alpha: weight of the heat colours, in ``[0, 1]``.
        cmap: a matplotlib colormap name.
        vmin / vmax: value range mapped onto the colormap; default: the map's own min / max.

    Returns:
        RGB image of the same size as ``image``.
    """
    import matplotlib  # deferred: only this function needs it

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}; try 'inferno', 'viridis' or 'jet'") from None
    h = _as_map(heat, "heat")
    lo = float(h.min()) if vmin is None else float(vmin)
    hi = float(h.max()) if vmax is None else float(vmax)
    if hi < lo:
        raise ValueError(f"vmax ({hi}) must be >= vmin ({lo})")
    scaled = np.clip((h - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(h)
    rgb = image.convert("RGB")
    W, H = rgb.size
    big = np.clip(upsample(scaled, (H, W)), 0.0, 1.0)  # [H, W]
    colours = colormap(big)[..., :3].astype(np.float32)  # [H, W, 3] in 0..1
    base = np.asarray(rgb, dtype=np.float32) / 255.0  # [H, W, 3]
    out = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(np.round(out * 255.0).astype(np.uint8), mode="RGB")


# ---- deletion / insertion -------------------------------------------------------------------------
def _baseline_image(image: np.ndarray, baseline: Baseline, blur_sigma: float | None) -> np.ndarray:
    """The "information removed" version of ``image [H, W, 3]``."""
    if baseline == "zero":
        return np.zeros_like(image)
    if baseline == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1), keepdims=True), image.shape).copy()
    if baseline == "blur":
        sigma = blur_sigma if blur_sigma is not None else max(image.shape[:2]) / 20.0
        return gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="reflect")
    raise ValueError(f"unknown baseline {baseline!r}; use 'blur', 'zero' or 'mean'")


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _score_batch(score_fn: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    s = np.asarray(score_fn(batch), dtype=np.float64)
    if s.shape != (batch.shape[0],):
        raise ValueError(f"score_fn must return shape [B]=({batch.shape[0]},) for a batch of B images, got {s.shape}")
    return s


def deletion_insertion(
    score_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    saliency: np.ndarray | torch.Tensor,
    steps: int = 20,
    baseline: Baseline = "blur",
    normalize: bool = True,
    blur_sigma: float | None = None,
) -> dict[str, np.ndarray | float]:
    """Deletion and insertion curves of a saliency map (Petsiuk et al., RISE, 2018).

    Pixels are ranked by saliency (highest first, ties in raster order). At fraction ``f = k/steps``
    the top ``round(f * H * W)`` pixels are

    * deletion: replaced by the baseline in the original image (a good map makes the score drop fast,
      so a *lower* AUC is better);
    * insertion: copied from the original into the baseline image (a good map makes the score rise
      fast, so a *higher* AUC is better).

    The same ``baseline`` is the "removed" state for both curves; the default ``"blur"`` (Gaussian,
    sigma = ``max(H, W) / 20`` unless ``blur_sigma``) makes insertion start from a blurred image as in
    RISE (RISE's deletion used ``"zero"``). ``score_fn`` is called twice, each time with one batch of
    ``steps + 1`` images.

    Args:
        score_fn: ``[B, H, W, 3]`` float images -> ``[B]`` scores (e.g. the target class probability).
        image: ``[H, W, 3]`` float image in ``0..1``.
        saliency: ``[H, W]`` map at image resolution (use :func:`upsample` for patch-level maps).
        steps: number of steps; curves have ``steps + 1`` points.
        baseline: ``"blur"``, ``"zero"`` or ``"mean"`` (per-channel mean colour).
        normalize: divide the raw scores by the score of the unperturbed image (so deletion starts at
            1); requires that score to be positive (probabilities). ``False`` keeps raw scores.
        blur_sigma: Gaussian sigma in pixels for ``baseline="blur"``.

    Returns:
        ``deletion_auc``, ``insertion_auc`` (trapezoid over fraction in ``[0, 1]``),
        ``deletion_curve`` / ``insertion_curve`` ``[steps + 1]``, ``fractions`` ``[steps + 1]`` and
        ``full_score`` (the raw score of the unperturbed image).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {img.shape}")
    H, W = img.shape[:2]
    sal = _as_map(saliency, "saliency")
    if sal.shape != (H, W):
        raise ValueError(
            f"saliency shape {sal.shape} != image size {(H, W)}; upsample a patch-level map with "
            "core.explain.maps.upsample(map, (H, W)) first"
        )
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    base = _baseline_image(img, baseline, blur_sigma).astype(np.float32)  # [H, W, 3]
    order = np.argsort(-sal.ravel(), kind="stable")  # [H*W] most salient first
    fractions = np.linspace(0.0, 1.0, steps + 1)  # [S+1]
    counts = np.round(fractions * H * W).astype(np.int64)  # [S+1]

    # rank[p] = position of pixel p in the saliency order; pixel p is "switched" at step k iff rank < count_k
    rank = np.empty(H * W, dtype=np.int64)
    rank[order] = np.arange(H * W)
    switched = (rank[None, :] < counts[:, None]).reshape(steps + 1, H, W, 1)  # [S+1, H, W, 1]
    deleted = np.where(switched, base[None], img[None])  # [S+1, H, W, 3]
    inserted = np.where(switched, img[None], base[None])  # [S+1, H, W, 3]

    del_raw = _score_batch(score_fn, deleted)  # [S+1]
    ins_raw = _score_batch(score_fn, inserted)  # [S+1]
    full = float(del_raw[0])
    if normalize:
        if not full > 0.0:
            raise ValueError(
                f"score of the unperturbed image is {full}; normalisation needs a positive score "
                "(pass probabilities, not logits) or call with normalize=False"
            )
        del_curve, ins_curve = del_raw / full, ins_raw / full
    else:
        del_curve, ins_curve = del_raw, ins_raw
    return {
        "deletion_auc": _trapezoid(del_curve, fractions),
        "insertion_auc": _trapezoid(ins_curve, fractions),
        "deletion_curve": del_curve,
        "insertion_curve": ins_curve,
        "fractions": fractions,
        "full_score": full,
    }
