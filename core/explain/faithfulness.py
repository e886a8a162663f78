"""Faithfulness of a saliency map to the model: deletion / insertion (Petsiuk et al., RISE, 2018) and ROAD
(remove and debias, Rong et al. 2022, as pytorch-grad-cam's ``ROADCombined`` computes it).

Both remove the pixels a map ranks highest (or lowest) and watch the target score: the softmax
probability of the target class, or the cosine of the final embedding to the target reference (the
quantity the Grad-CAM family explains).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

from core.explain.maps import as_map, normalize01, upsample
from core.explain.targets import CamTarget, model_output
from core.models.base import Backbone
from core.models.fold import folded_model

Baseline = Literal["blur", "zero", "mean"]
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # pytorch-grad-cam's default
# Perturbed pictures per forward pass. On the CPU small batches are faster per picture: a batch of 32
# spills the caches (MobileNetV2's 112 x 112 x 96 activations are 150 MB at 32), and the report card's
# forwards took 40% (MobileNetV2) and 14% (the ViT) less time at 8 than at 32 on 2 cores; a GPU wants more.
CPU_BATCH, GPU_BATCH = 8, 32


def scoring_batch(device: torch.device) -> int:
    """Perturbed pictures per forward pass on ``device``: :data:`CPU_BATCH` on the CPU, else :data:`GPU_BATCH`."""
    return CPU_BATCH if device.type == "cpu" else GPU_BATCH


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

    deleted, inserted, fractions = deletion_insertion_images(img, sal, steps, baseline, blur_sigma)
    return deletion_insertion_curves(_score_batch(score_fn, deleted), _score_batch(score_fn, inserted), fractions,
                                     normalize)


def deletion_insertion_images(image: np.ndarray, saliency: np.ndarray, steps: int, baseline: Baseline = "blur",
                              blur_sigma: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The perturbed pictures of :func:`deletion_insertion`, scored by the caller (in one batch with others).

    Step 0 of deletion and step ``steps`` of insertion are the intact picture; the other two ends are the
    baseline picture (a batched caller scores those two once per picture, not once per map).

    Args:
        image: ``[H, W, 3]`` float32 in ``0..1``.
        saliency: ``[H, W]`` map at image resolution.

    Returns:
        ``(deleted [S+1, H, W, 3], inserted [S+1, H, W, 3], fractions [S+1])``.
    """
    H, W = image.shape[:2]
    base = _baseline_image(image, baseline, blur_sigma).astype(np.float32)  # [H, W, 3]
    order = np.argsort(-saliency.ravel(), kind="stable")  # [H*W] most salient first
    fractions = np.linspace(0.0, 1.0, steps + 1)  # [S+1]
    counts = np.round(fractions * H * W).astype(np.int64)  # [S+1]
    # rank[p] = position of pixel p in the saliency order; pixel p is "switched" at step k iff rank < count_k
    rank = np.empty(H * W, dtype=np.int64)
    rank[order] = np.arange(H * W)
    switched = (rank[None, :] < counts[:, None]).reshape(steps + 1, H, W, 1)  # [S+1, H, W, 1]
    deleted = np.where(switched, base[None], image[None])  # [S+1, H, W, 3]
    inserted = np.where(switched, image[None], base[None])  # [S+1, H, W, 3]
    return deleted, inserted, fractions


def deletion_insertion_curves(del_raw: np.ndarray, ins_raw: np.ndarray, fractions: np.ndarray,
                              normalize: bool = True) -> dict[str, np.ndarray | float]:
    """AUCs and curves from the raw scores ``[S+1]`` of :func:`deletion_insertion_images`' pictures."""
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
def tensor_scorer(b: Backbone, target: CamTarget, batch_size: int | None = None) -> Callable[[torch.Tensor], np.ndarray]:
    """``score(x [B, 3, S, S] normalised) -> [B]``: the softmax probability of the target class, or the
    cosine similarity of the final embedding to the target reference.

    ``x`` may live on any device: each chunk of ``batch_size`` (None: :func:`scoring_batch` of the model's
    device) is moved to the model's device, scored under ``inference_mode`` and brought back, so a large
    batch of perturbed pictures never sits on the GPU at once.
    """
    # a CNN runs with its batch norms folded into the convolutions (a third of MobileNetV2's CPU time)
    module = model_output(b, target, folded_model(b) if b.spec.family == "cnn" else None)
    if target.kind == "class" and target.class_index is None:
        raise ValueError("a class target needs class_index; build it with CamTarget.imagenet_class")
    cls_idx = int(target.class_index or 0)
    device = b.device
    batch_size = batch_size or scoring_batch(device)
    ref = None if target.kind == "class" else torch.as_tensor(np.asarray(target.reference, dtype=np.float32), device=device)

    def score(x: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, x.shape[0], batch_size):
            with b.lock, torch.inference_mode():
                # a CNN's channels-last weights (TimmBackbone) pick oneDNN's NHWC kernels whatever the batch's layout
                y = module(x[i:i + batch_size].to(device)).float()  # [B, C] or [B, D]
                s = y.softmax(-1)[:, cls_idx] if ref is None else F.cosine_similarity(y, ref[None], dim=-1)
            out.append(s.cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    return score


def normalise_pictures(b: Backbone, images: np.ndarray) -> torch.Tensor:
    """Pictures ``[B, S, S, 3]`` in 0..1 -> the normalised model input ``[B, 3, S, S]`` (CPU, float32)."""
    mean = np.asarray(b.spec.mean, dtype=np.float32)
    std = np.asarray(b.spec.std, dtype=np.float32)
    chunk = (np.asarray(images, dtype=np.float32) - mean) / std
    return torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous()


def target_scorer(b: Backbone, target: CamTarget, batch_size: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``score([B, S, S, 3] floats in 0..1) -> [B]``: :func:`tensor_scorer` on pictures."""
    score = tensor_scorer(b, target, batch_size)
    return lambda images: score(normalise_pictures(b, images))


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
Solver = Literal["direct", "cg"]


def _nested_dissection(rows: np.ndarray, cols: np.ndarray, leaf: int = 4) -> np.ndarray:
    """An elimination order for a system on pixels ``(rows[i], cols[i])`` with a 3x3 stencil: split the
    pixels' bounding box across its longer side, order both halves recursively, the separating line last
    (George's nested dissection). On a 2-D grid it keeps the LU factors near ``O(n log n)``: half the time
    of SuperLU's own minimum-degree orderings on ROAD's systems, and the same solution to 1e-12. Splitting
    down to ``leaf`` = 4 pixels factorised ROAD's systems 11% faster than 64."""
    out: list[np.ndarray] = []
    pending: list[tuple[str, np.ndarray]] = [("split", np.arange(rows.size))]  # an iterative post-order
    while pending:
        what, ix = pending.pop()
        if what == "emit" or ix.size <= leaf:
            out.append(ix)
            continue
        r, c = rows[ix], cols[ix]
        along = r if np.ptp(r) >= np.ptp(c) else c
        mid = (int(along.max()) + int(along.min())) // 2
        # emitted in the order: lower half, upper half, separator (the stack pops in reverse)
        pending += [("emit", ix[along == mid]), ("split", ix[along > mid]), ("split", ix[along < mid])]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@lru_cache(maxsize=8)
def _grid_rank(H: int, W: int) -> np.ndarray:
    """``[H*W]`` the position of each pixel of an ``H x W`` grid in its :func:`_nested_dissection` order."""
    rows, cols = np.divmod(np.arange(H * W), W)
    rank = np.empty(H * W, dtype=np.int64)
    rank[_nested_dissection(rows, cols)] = np.arange(H * W)
    rank.setflags(write=False)  # shared by every thread's systems
    return rank


def _direct_impute(flat: np.ndarray, keep_flat: np.ndarray, H: int, W: int) -> np.ndarray:
    """Values ``[n, C]`` of the removed pixels: one sparse system for all of them, solved per channel by
    SuperLU in a nested-dissection order (float64)."""
    C = flat.shape[0]
    missing = np.flatnonzero(~keep_flat)  # [n]
    n = missing.size
    var_of = np.full(H * W, -1, dtype=np.int64)
    var_of[missing] = np.arange(n)
    rows_m, cols_m = np.divmod(missing, W)
    values = flat.astype(np.float64)  # [C, H*W]
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
    # the unknowns in the order the whole grid's nested dissection gives them: a separator line of the grid
    # still separates the removed pixels it crosses, so one argsort orders any mask; ordering and solving the
    # report card's masks took 23% less CPU time than a dissection of each mask's own bounding box
    perm = np.argsort(_grid_rank(H, W)[missing], kind="stable")  # [n]
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    # the permuted matrix P A P^T, built directly; it is symmetric and negative definite (the weights of
    # opposite neighbours are equal, and every removed region touches a kept pixel), so LU needs no pivoting
    A = coo_matrix((np.concatenate(A_vals), (inv[np.concatenate(A_rows)], inv[np.concatenate(A_cols)])),
                   shape=(n, n)).tocsc()
    lu = splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    sol = np.empty((n, C))
    sol[perm] = lu.solve(np.ascontiguousarray(rhs[perm]))
    return sol


def _cg_impute(image: torch.Tensor, keeps: torch.Tensor, rtol: float = 1e-10, max_iter: int = 20_000) -> torch.Tensor:
    """The same systems as :func:`_direct_impute` for ``B`` masks at once, solved by conjugate gradients in
    float64 on the image's device (a GPU runs thousands of these 3x3 stencils in parallel; SuperLU is
    one CPU core per system). The operator on the removed pixels ``M`` is ``D u - K * (M u)`` (``K`` the
    neighbour weights, ``D = K * 1`` the in-image weight sum, ``*`` a zero-padded 3x3 convolution):
    symmetric positive definite, so CG converges; each (mask, channel) system stops at ``rtol``.

    Args:
        image: ``[C, H, W]``.
        keeps: ``[B, H, W]`` bool, on the image's device.

    Returns:
        ``[B, C, H, W]`` float64: the image with the removed pixels filled (no noise).
    """
    C, H, W = image.shape
    B = keeps.shape[0]
    dev = image.device
    k = torch.zeros(3, 3, dtype=torch.float64, device=dev)
    for (dr, dc), wgt in _NEIGHBOURS:
        k[1 + dr, 1 + dc] = wgt
    kernel = k[None, None]  # [1, 1, 3, 3], symmetric: convolution = correlation

    def stencil(u: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, H, W]
        return F.conv2d(u.reshape(B * C, 1, H, W), kernel, padding=1).reshape(B, C, H, W)

    miss = (~keeps).to(torch.float64)[:, None]  # [B, 1, H, W]
    x = image.to(torch.float64)[None].expand(B, C, H, W)
    D = F.conv2d(torch.ones(1, 1, H, W, dtype=torch.float64, device=dev), kernel, padding=1)  # [1, 1, H, W]

    def apply(u: torch.Tensor) -> torch.Tensor:
        return miss * (D * u - stencil(miss * u))

    rhs = miss * stencil((1 - miss) * x)  # known neighbours, weighted
    u = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = (r * r).sum((2, 3), keepdim=True)  # [B, C, 1, 1] one system per mask and channel
    stop = (rtol ** 2) * rr.clamp_min(1e-300)
    for it in range(max_iter):
        if it % 16 == 0 and bool((rr <= stop).all()):  # a host sync every 16 steps, not every step
            break
        Ap = apply(p)
        alpha = rr / (p * Ap).sum((2, 3), keepdim=True).clamp_min(1e-300)
        u = u + alpha * p
        r = r - alpha * Ap
        rr_new = (r * r).sum((2, 3), keepdim=True)
        p = r + (rr_new / rr.clamp_min(1e-300)) * p
        rr = rr_new
    else:
        raise RuntimeError(f"ROAD's imputation did not converge in {max_iter} conjugate-gradient steps; "
                           "use solver='direct'")
    return torch.where(miss.bool(), u, x)


def noisy_linear_impute(image: torch.Tensor, keep: np.ndarray, noise: float = 0.01,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill the removed pixels of ``image [C, H, W]`` from their neighbours (ROAD's debiasing imputation).

    Each removed pixel equals the weighted mean of its in-image neighbours (weights :data:`_NEIGHBOURS`),
    one sparse linear system for all removed pixels, solved per channel; then Gaussian noise of std
    ``noise`` is added to the filled values so that the removal pattern does not leak through.

    Args:
        image: ``[C, H, W]`` (normalised model input, any device; solved on the CPU).
        keep: ``[H, W]`` bool, True where the pixel is kept (at least one).
        noise: absolute noise std added to the imputed values (0 for none).
        generator: torch RNG for the noise (None: the global one, as pytorch-grad-cam).

    Returns:
        ``[C, H, W]`` float tensor on the image's device.
    """
    return impute_many(image, [keep], noise, generator, solver="direct")[0]


def impute_many(image: torch.Tensor, keeps: Sequence[np.ndarray], noise: float = 0.01,
                generator: torch.Generator | None = None, solver: Solver = "direct") -> torch.Tensor:
    """:func:`noisy_linear_impute` of one image under several masks: ``[B, C, H, W]``.

    The noise is drawn on the CPU, mask after mask in order, exactly as that many
    :func:`noisy_linear_impute` calls draw it, whichever solver runs.

    Args:
        solver: ``"direct"`` (SuperLU on the CPU, exact) or ``"cg"`` (conjugate gradients on the image's
            device, all masks at once; agrees with ``"direct"`` to about 1e-7).
    """
    C, H, W = image.shape
    masks = [np.asarray(k, dtype=bool).reshape(-1) for k in keeps]  # [H*W] each
    for m in masks:
        if m.shape[0] != H * W:
            raise ValueError(f"keep must be [H, W] = {(H, W)}")
        if not m.any():
            raise ValueError("nothing is kept: the imputation needs at least one known pixel")
    flat = image.detach().reshape(C, -1)  # [C, H*W]
    if solver == "direct":
        host = flat.cpu().numpy()

        def solve(m: np.ndarray) -> torch.Tensor | None:
            return torch.tensor(_direct_impute(host, m, H, W), dtype=torch.float).t() if (~m).any() else None

        # SuperLU factorises without the GIL: one system per CPU thread torch may use (the same answer, in order)
        with ThreadPoolExecutor(max(1, min(len(masks), torch.get_num_threads()))) as pool:
            filled = list(pool.map(solve, masks))  # [C, n] each
    elif solver == "cg":
        keep_t = torch.from_numpy(np.stack(masks).reshape(-1, H, W)).to(image.device)
        full = _cg_impute(image.detach(), keep_t).reshape(len(masks), C, H * W)
        filled = [full[b][:, torch.from_numpy(~m).to(image.device)].float() if (~m).any() else None
                  for b, m in enumerate(masks)]
    else:
        raise ValueError(f"unknown solver {solver!r}; use 'direct' or 'cg'")
    out = []
    for m, res in zip(masks, filled):
        o = flat.clone()
        if res is not None:
            missing = torch.from_numpy(np.flatnonzero(~m)).to(image.device)
            shape = (C, missing.numel())
            jitter = torch.randn(shape, generator=generator) if generator is not None else torch.randn(shape)
            o[:, missing] = res.to(o) + noise * jitter.to(o)
        out.append(o.reshape(C, H, W))
    return torch.stack(out)


def road_masks(saliency: np.ndarray, percentiles: Sequence[int]) -> list[np.ndarray] | None:
    """The kept pixels ``[S, S]`` of each ROAD perturbation, LeRF first then MoRF, in percentile order.

    None when a threshold keeps no pixel at all (a constant map, or one whose top or bottom value is shared
    by more than a percentile's share of the pixels): the imputation then has nothing to fill from and ROAD
    is undefined (pytorch-grad-cam's singular system gives NaN there too).
    """
    cam = torch.from_numpy(np.ascontiguousarray(as_map(saliency, "saliency")))  # [S, S] float32
    keeps = []
    for ranking in (1 - cam, cam):  # LeRF removes the least relevant first, MoRF the most relevant
        r = ranking.numpy()
        for p in percentiles:
            keeps.append(r < np.percentile(r, p))  # [S, S]
    return keeps if all(k.any() for k in keeps) else None


def road_from_scores(base: float, scores: np.ndarray, percentiles: Sequence[int]) -> dict[str, np.ndarray | float]:
    """ROAD's numbers from the scores ``[2P]`` of the perturbed inputs (LeRF first) and of the intact one."""
    after = np.asarray(scores, dtype=np.float64) - base  # [2P]
    k = len(percentiles)
    lerf, morf = after[:k], after[k:]
    return {"road": float((lerf.mean() - morf.mean()) / 2.0), "lerf": float(lerf.mean()), "morf": float(morf.mean()),
            "lerf_curve": lerf, "morf_curve": morf, "percentiles": np.asarray(percentiles)}


def _undefined_road(percentiles: Sequence[int]) -> dict[str, np.ndarray | float]:
    nan = np.full(len(percentiles), np.nan)
    return {"road": math.nan, "lerf": math.nan, "morf": math.nan, "lerf_curve": nan, "morf_curve": nan,
            "percentiles": np.asarray(percentiles)}


def _check_road(x: torch.Tensor, saliency: np.ndarray | torch.Tensor, percentiles: Sequence[int]) -> None:
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, 3, S, S], got shape {tuple(x.shape)}")
    shape = as_map(saliency, "saliency").shape
    if tuple(shape) != tuple(x.shape[-2:]):
        raise ValueError(f"saliency {tuple(shape)} must match the input {tuple(x.shape[-2:])}: upsample it first "
                         "(core.explain.maps.upsample)")
    if not percentiles:
        raise ValueError("ROAD needs at least one percentile")


def road(score_fn: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor, saliency: np.ndarray | torch.Tensor,
         percentiles: Sequence[int] = ROAD_PERCENTILES, noise: float = 0.01,
         generator: torch.Generator | None = None, solver: Solver = "direct") -> dict[str, np.ndarray | float]:
    """ROAD, combined as pytorch-grad-cam's ``ROADCombined``: ``(LeRF - MoRF) / 2`` (higher is better).

    For each percentile ``p``: MoRF keeps the pixels whose saliency is below the ``p``-th percentile (the
    most relevant ``100 - p`` % are removed), LeRF keeps those whose inverted saliency ``1 - s`` is below
    its ``p``-th percentile (the least relevant are removed); removed pixels are imputed by
    :func:`noisy_linear_impute`, and the score change ``score(perturbed) - score(x)`` is averaged over the
    percentiles. A faithful map keeps the score when its least relevant pixels go (LeRF near 0) and
    loses it when its most relevant go (MoRF strongly negative). NaN where a threshold keeps no pixel
    (:func:`road_masks`).

    Args:
        score_fn: ``x [B, 3, S, S] -> [B]`` target scores (:func:`tensor_scorer`).
        x: ``[1, 3, S, S]`` normalised input.
        saliency: ``[S, S]`` map at input resolution, in ``[0, 1]`` (as grad-cam's CAMs).
        percentiles: grad-cam's thresholds.
        noise / generator: see :func:`noisy_linear_impute`; the noise is drawn LeRF first, then MoRF,
            in percentile order (grad-cam's order, so a seeded global RNG gives its numbers).
        solver: see :func:`impute_many`.

    Returns:
        ``road``, ``lerf`` and ``morf`` (mean score changes), ``lerf_curve`` / ``morf_curve``
        ``[len(percentiles)]`` and ``percentiles``.
    """
    _check_road(x, saliency, percentiles)
    keeps = road_masks(np.asarray(saliency), percentiles)
    if keeps is None:
        return _undefined_road(percentiles)
    perturbed = impute_many(x[0], keeps, noise, generator, solver)  # [2P, 3, S, S]
    base = float(score_fn(x)[0])
    return road_from_scores(base, score_fn(perturbed), percentiles)


def road_score(b: Backbone, x: torch.Tensor, saliency: np.ndarray, target: CamTarget,
               percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0,
               solver: Solver = "direct") -> dict[str, np.ndarray | float]:
    """:func:`road` of one map on one backbone, scored with :func:`tensor_scorer` (noise seeded by ``seed``).

    Args:
        saliency: a map of any resolution, stretched onto the ``S x S`` input and min-max scaled.
    """
    sal = road_map(saliency, int(x.shape[-1]))
    gen = torch.Generator().manual_seed(int(seed))
    return road(tensor_scorer(b, target), x, sal, percentiles, generator=gen, solver=solver)


def road_map(saliency: np.ndarray, size: int) -> np.ndarray:
    """A map of any resolution as ROAD ranks it: stretched onto the ``S x S`` input, min-max scaled."""
    return normalize01(upsample(np.asarray(saliency, dtype=np.float32), (size, size)))  # [S, S]
