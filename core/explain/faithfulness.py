"""Faithfulness of a saliency map to the model: deletion / insertion (Petsiuk et al., RISE, 2018) and ROAD
(remove and debias, Rong et al. 2022, as pytorch-grad-cam's ``ROADCombined`` computes it).

Both remove the pixels a map ranks highest (or lowest) and watch the target score: the softmax
probability of the target class, or the cosine of the final embedding to the target reference (the
quantity the Grad-CAM family explains).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from core.explain.maps import as_map, normalize01, upsample
from core.explain.targets import CamTarget, model_output
from core.models.base import Backbone

Baseline = Literal["blur", "zero", "mean"]
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # pytorch-grad-cam's default


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
    sal = as_map(saliency, "saliency")
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


# ---- scoring through a backbone ---------------------------------------------------------------------
def tensor_scorer(b: Backbone, target: CamTarget, batch_size: int = 16) -> Callable[[torch.Tensor], np.ndarray]:
    """``score(x [B, 3, S, S] normalised) -> [B]``: the softmax probability of the target class, or the
    cosine similarity of the final embedding to the target reference."""
    module = model_output(b, target)
    if target.kind == "class" and target.class_index is None:
        raise ValueError("a class target needs class_index; build it with CamTarget.imagenet_class")
    cls_idx = int(target.class_index or 0)

    def score(x: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, x.shape[0], batch_size):
            with b.lock, torch.inference_mode():
                y = module(x[i:i + batch_size])  # [B, C] or [B, D]
                if target.kind == "class":
                    s = y.float().softmax(-1)[:, cls_idx]
                else:
                    s = F.cosine_similarity(y.float(), torch.as_tensor(target.reference)[None], dim=-1)
            out.append(s.numpy())
        return np.concatenate(out).astype(np.float64)

    return score


def target_scorer(b: Backbone, target: CamTarget, batch_size: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """``score([B, S, S, 3] floats in 0..1) -> [B]``: :func:`tensor_scorer` on pictures."""
    score = tensor_scorer(b, target, batch_size)
    mean = np.asarray(b.spec.mean, dtype=np.float32)
    std = np.asarray(b.spec.std, dtype=np.float32)

    def on_images(images: np.ndarray) -> np.ndarray:
        chunk = (np.asarray(images, dtype=np.float32) - mean) / std
        return score(torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous())  # [B, 3, S, S]

    return on_images


def model_view(image: Image.Image, size: int) -> np.ndarray:
    """The picture as the model sees it (whole image resized to ``size``), ``[S, S, 3]`` in 0..1."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def faithfulness(b: Backbone, image: Image.Image, saliency: np.ndarray, target: CamTarget, size: int,
                 steps: int = 10, baseline: Baseline = "blur") -> dict[str, np.ndarray | float]:
    """Deletion / insertion curves and AUCs of one map (see :func:`deletion_insertion`).

    The most salient pixels of the model's input picture are removed (deletion: a lower AUC is better)
    or restored (insertion: higher is better) in ``steps`` steps; the score is :func:`target_scorer`'s,
    divided by the score of the intact picture.

    Args:
        saliency: ``[h, w]`` or ``[H, W]`` map of any resolution (stretched onto the ``S x S`` input).
    """
    img = model_view(image, b.spec.check_size(size))  # [S, S, 3]
    sal = upsample(np.asarray(saliency, dtype=np.float32), img.shape[:2])  # [S, S]
    return deletion_insertion(target_scorer(b, target), img, sal, steps=steps, baseline=baseline)


# ---- ROAD: remove and debias ------------------------------------------------------------------------
# the 8 neighbours of a pixel and their weights in the linear imputation (ROAD's, as in pytorch-grad-cam)
_NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
               ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def noisy_linear_impute(image: torch.Tensor, keep: np.ndarray, noise: float = 0.01,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill the removed pixels of ``image [C, H, W]`` from their neighbours (ROAD's debiasing imputation).

    Each removed pixel equals the weighted mean of its in-image neighbours (weights :data:`_NEIGHBOURS`),
    one sparse linear system for all removed pixels, solved per channel; then Gaussian noise of std
    ``noise`` is added to the filled values so that the removal pattern does not leak through.

    Args:
        image: ``[C, H, W]`` (normalised model input).
        keep: ``[H, W]`` bool, True where the pixel is kept.
        noise: absolute noise std added to the imputed values (0 for none).
        generator: torch RNG for the noise (None: the global one, as pytorch-grad-cam).

    Returns:
        ``[C, H, W]`` float tensor.
    """
    C, H, W = image.shape
    keep_flat = np.asarray(keep, dtype=bool).reshape(-1)  # [H*W]
    if keep_flat.shape[0] != H * W:
        raise ValueError(f"keep must be [H, W] = {(H, W)}, got {np.asarray(keep).shape}")
    flat = image.reshape(C, -1)  # [C, H*W]
    missing = np.flatnonzero(~keep_flat)  # [n]
    n = missing.size
    if n == 0:
        return image.clone()
    var_of = np.full(H * W, -1, dtype=np.int64)
    var_of[missing] = np.arange(n)
    rows_m, cols_m = np.divmod(missing, W)
    values = flat.numpy().astype(np.float64)
    diag = np.ones(n)  # sum of the weights of in-image neighbours
    rhs = np.zeros((n, C))
    A_rows, A_cols, A_vals = [], [], []
    for (dr, dc), wgt in _NEIGHBOURS:
        r, c = rows_m + dr, cols_m + dc
        inside = (r >= 0) & (c >= 0) & (r < H) & (c < W)
        diag[~inside] -= wgt
        eq = np.flatnonzero(inside)  # equations whose neighbour lies in the image
        nb = r[inside] * W + c[inside]  # [m] flat index of that neighbour
        known = keep_flat[nb]
        rhs[eq[known]] -= wgt * values[:, nb[known]].T  # known neighbours move to the right-hand side
        A_rows.append(eq[~known])
        A_cols.append(var_of[nb[~known]])
        A_vals.append(np.full(int((~known).sum()), wgt))
    A_rows.append(np.arange(n))
    A_cols.append(np.arange(n))
    A_vals.append(-diag)
    A = coo_matrix((np.concatenate(A_vals), (np.concatenate(A_rows), np.concatenate(A_cols))), shape=(n, n)).tocsc()
    sol = np.asarray(spsolve(A, rhs, permc_spec="MMD_AT_PLUS_A")).reshape(n, C)  # [n, C]; A is structurally symmetric
    res = torch.tensor(sol, dtype=torch.float).t()  # [C, n]
    out = flat.clone()
    jitter = torch.randn(res.shape, generator=generator) if generator is not None else torch.randn_like(res)
    out[:, torch.from_numpy(missing)] = res + noise * jitter
    return out.reshape(C, H, W)


def road(score_fn: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor, saliency: np.ndarray | torch.Tensor,
         percentiles: Sequence[int] = ROAD_PERCENTILES, noise: float = 0.01,
         generator: torch.Generator | None = None) -> dict[str, np.ndarray | float]:
    """ROAD, combined as pytorch-grad-cam's ``ROADCombined``: ``(LeRF - MoRF) / 2`` (higher is better).

    For each percentile ``p``: MoRF keeps the pixels whose saliency is below the ``p``-th percentile (the
    most relevant ``100 - p`` % are removed), LeRF keeps those whose inverted saliency ``1 - s`` is below
    its ``p``-th percentile (the least relevant are removed); removed pixels are imputed by
    :func:`noisy_linear_impute`, and the score change ``score(perturbed) - score(x)`` is averaged over the
    percentiles. A faithful map keeps the score when its least relevant pixels go (LeRF near 0) and
    loses it when its most relevant go (MoRF strongly negative).

    Args:
        score_fn: ``x [B, 3, S, S] -> [B]`` target scores (:func:`tensor_scorer`).
        x: ``[1, 3, S, S]`` normalised input.
        saliency: ``[S, S]`` map at input resolution, in ``[0, 1]`` (as grad-cam's CAMs).
        percentiles: grad-cam's thresholds.
        noise / generator: see :func:`noisy_linear_impute`; the noise is drawn LeRF first, then MoRF,
            in percentile order (grad-cam's order, so a seeded global RNG gives its numbers).

    Returns:
        ``road``, ``lerf`` and ``morf`` (mean score changes), ``lerf_curve`` / ``morf_curve``
        ``[len(percentiles)]`` and ``percentiles``.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, 3, S, S], got shape {tuple(x.shape)}")
    cam = torch.from_numpy(np.ascontiguousarray(as_map(saliency, "saliency")))  # [S, S] float32
    if tuple(cam.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"saliency {tuple(cam.shape)} must match the input {tuple(x.shape[-2:])}: upsample it first "
                         "(core.explain.maps.upsample)")
    if not percentiles:
        raise ValueError("ROAD needs at least one percentile")
    perturbed = []
    for ranking in (1 - cam, cam):  # LeRF removes the least relevant first, MoRF the most relevant
        r = ranking.numpy()
        for p in percentiles:
            keep = r < np.percentile(r, p)  # [S, S]
            perturbed.append(noisy_linear_impute(x[0], keep, noise, generator))
    base = float(score_fn(x)[0])
    after = score_fn(torch.stack(perturbed)) - base  # [2P]
    k = len(percentiles)
    lerf, morf = after[:k], after[k:]
    return {"road": float((lerf.mean() - morf.mean()) / 2.0), "lerf": float(lerf.mean()), "morf": float(morf.mean()),
            "lerf_curve": lerf, "morf_curve": morf, "percentiles": np.asarray(percentiles)}


def road_score(b: Backbone, x: torch.Tensor, saliency: np.ndarray, target: CamTarget,
               percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> dict[str, np.ndarray | float]:
    """:func:`road` of one map on one backbone, scored with :func:`tensor_scorer` (noise seeded by ``seed``).

    Args:
        saliency: a map of any resolution, stretched onto the ``S x S`` input and min-max scaled.
    """
    sal = normalize01(upsample(np.asarray(saliency, dtype=np.float32), (int(x.shape[-2]), int(x.shape[-1]))))  # [S, S]
    gen = torch.Generator().manual_seed(int(seed))
    return road(tensor_scorer(b, target), x, sal, percentiles, generator=gen)
