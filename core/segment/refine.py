"""Pixel-sharp masks: a patch mask or score map moved onto the picture's edges with a guided filter.

Patch masks are as coarse as the backbone's grid (14 px patches at the input size). The guided filter
(He, Sun and Tang, "Guided Image Filtering", ECCV 2010 / TPAMI 2013) fits, in every window of the
picture, the filtered map as a linear function of the picture's colours, ``q = a . I + b``; so ``q``
keeps the coarse map's values inside flat regions and follows the picture's edges between them. A
patch mask, upsampled bilinearly to pixels, is filtered with the picture as the guide, then cut at
0.5 again.

Pictures are PIL images or ``[H, W, 3]`` arrays; maps are ``[h, w]`` (patches) or ``[H, W]`` (pixels).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Regularisation of the colour guide (colours in [0, 1]): a window whose colour variance is well above
# this follows the picture's edges, a flatter one keeps the coarse map's value.
GUIDED_EPS = 1e-3


def _window_sums_1d(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Sums of ``x`` over ``[k - r, k + r]`` (clipped to the array) along ``axis``."""
    n = x.shape[axis]
    c = np.cumsum(x, axis=axis)
    first = np.zeros_like(np.take(c, [0], axis=axis))
    last = np.take(c, [n - 1], axis=axis)
    # e[j] = sum of the first clip(j - r, 0, n) items, so a window's sum is e[k + 2r + 1] - e[k]
    e = np.concatenate([first] * (r + 1) + [c] + [last] * r, axis=axis)  # length n + 2r + 1
    hi = [slice(None)] * x.ndim
    lo = [slice(None)] * x.ndim
    hi[axis], lo[axis] = slice(2 * r + 1, 2 * r + 1 + n), slice(0, n)
    return e[tuple(hi)] - e[tuple(lo)]


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the ``(2r+1) x (2r+1)`` window around every pixel, clipped at the borders.

    Cumulative sums along each axis in turn, so the cost does not depend on ``r``.

    Args:
        x: ``[H, W]`` or ``[H, W, C]`` (each channel on its own).
        r: window radius in pixels, ``>= 0``.

    Returns:
        float64, the shape of ``x``: the mean of the pixels of the window that lie inside the picture.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in (2, 3):
        raise ValueError(f"box_mean takes [H, W] or [H, W, C], got shape {a.shape}")
    if r < 0:
        raise ValueError(f"radius must be >= 0, got {r}")
    H, W = a.shape[:2]
    c = np.ascontiguousarray(np.moveaxis(a, -1, 0)) if a.ndim == 3 else a[None]  # [C, H, W]: rows contiguous
    s = np.moveaxis(_window_sums_1d(_window_sums_1d(c, r, 1), r, 2), 0, -1)  # [H, W, C] window sums
    s = s if a.ndim == 3 else s[..., 0]
    rows = np.minimum(np.arange(H) + r + 1, H) - np.maximum(np.arange(H) - r, 0)  # [H] window heights
    cols = np.minimum(np.arange(W) + r + 1, W) - np.maximum(np.arange(W) - r, 0)  # [W] window widths
    n = rows[:, None] * cols[None, :]  # [H, W] pixels in each window
    return s / (n[..., None] if a.ndim == 3 else n)


def _solve_spd(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``m^-1 v`` for a stack of small symmetric positive-definite matrices ``m [..., C, C]``, ``v [..., C]``
    (Cramer's rule for C = 3, the colour case: several times faster than a batched LU)."""
    if m.shape[-1] != 3:
        return np.linalg.solve(m, v[..., None])[..., 0]
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 1], m[..., 1, 2], m[..., 2, 2]
    inv = np.stack([d * f - e * e, c * e - b * f, b * e - c * d,      # first row of the adjugate
                    c * e - b * f, a * f - c * c, b * c - a * e,      # (symmetric)
                    b * e - c * d, b * c - a * e, a * d - b * b], -1).reshape(m.shape)
    det = a * inv[..., 0, 0] + b * inv[..., 0, 1] + c * inv[..., 0, 2]
    return (inv @ v[..., None])[..., 0] / det[..., None]


def guided_filter(guide: np.ndarray, p: np.ndarray, r: int, eps: float = GUIDED_EPS) -> np.ndarray:
    """He et al.'s guided filter of ``p`` with a colour (or grey) guide.

    Per window ``k``: ``a_k = (Sigma_k + eps U)^-1 cov_k(I, p)``, ``b_k = mean_k(p) - a_k . mean_k(I)``;
    output ``q_i = mean_k(a_k) . I_i + mean_k(b_k)`` over the windows covering pixel ``i``.

    Args:
        guide: ``[H, W, 3]`` (or ``[H, W]``) guide image, values in ``[0, 1]``.
        p: ``[H, W]`` map to filter.
        r: window radius in pixels.
        eps: regularisation (larger: smoother, fewer edges followed).

    Returns:
        ``[H, W]`` float64 filtered map.
    """
    I = np.asarray(guide, dtype=np.float64)
    q = np.asarray(p, dtype=np.float64)
    if I.ndim == 2:
        I = I[..., None]
    if I.ndim != 3 or q.ndim != 2 or I.shape[:2] != q.shape:
        raise ValueError(f"guide [H, W(, C)] and p [H, W] must share H, W; got {np.shape(guide)} and {q.shape}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    C = I.shape[2]
    iu = np.triu_indices(C)  # the C(C+1)/2 distinct products I_c I_d
    # one pass of box means over every channel: I [C], p [1], I p [C], I_c I_d [C(C+1)/2]
    stack = np.concatenate([I, q[..., None], I * q[..., None], I[..., iu[0]] * I[..., iu[1]]], axis=-1)
    m = box_mean(stack, r)
    mean_I, mean_p, mean_Ip, mean_II = m[..., :C], m[..., C], m[..., C + 1:2 * C + 1], m[..., 2 * C + 1:]
    cov_Ip = mean_Ip - mean_I * mean_p[..., None]  # [H, W, C]
    sigma = np.empty(q.shape + (C, C))  # [H, W, C, C] colour covariance of each window, + eps
    sigma[..., iu[0], iu[1]] = mean_II - mean_I[..., iu[0]] * mean_I[..., iu[1]]
    sigma[..., iu[1], iu[0]] = sigma[..., iu[0], iu[1]]
    sigma += eps * np.eye(C)
    a = _solve_spd(sigma, cov_Ip)  # [H, W, C]
    b = mean_p - (a * mean_I).sum(-1)  # [H, W]
    ab = box_mean(np.concatenate([a, b[..., None]], axis=-1), r)  # [H, W, C + 1]
    return (ab[..., :C] * I).sum(-1) + ab[..., C]


def _guide(image: Image.Image | np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float colours in ``[0, 1]``."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image must be a PIL image or [H, W, 3], got shape {a.shape}")
    return a.astype(np.float64) / (255.0 if a.dtype == np.uint8 else 1.0)


def upsample_bilinear(patch_map: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``[h, w]`` -> ``[H, W]`` bilinear, patch centres at pixel ``(i + 0.5) * H / h`` (no corner alignment,
    the same geometry as :func:`core.segment.masks.mask_to_image_size`)."""
    m = torch.as_tensor(np.asarray(patch_map, dtype=np.float32))
    if m.ndim != 2:
        raise ValueError(f"patch_map must be [h, w], got shape {tuple(m.shape)}")
    up = F.interpolate(m[None, None], size=tuple(int(s) for s in size_hw), mode="bilinear", align_corners=False)
    return up[0, 0].double().numpy()  # [H, W]


def _radius(image_hw: tuple[int, int], grid: tuple[int, int], radius: int | None) -> int:
    # default: one patch, in pixels of this picture (the scale of the coarse map's error)
    return max(1, round(max(image_hw[0] / grid[0], image_hw[1] / grid[1]))) if radius is None else int(radius)


def refine_scores(image: Image.Image | np.ndarray, patch_scores: np.ndarray, *, radius: int | None = None,
                  eps: float = GUIDED_EPS) -> np.ndarray:
    """A ``[h, w]`` patch map at the picture's pixels, guided by its edges.

    Args:
        image: the picture (PIL or ``[H, W, 3]``), at the size the result should have.
        patch_scores: ``[h, w]`` scores or a 0/1 mask.
        radius: filter window radius in pixels (None: one patch of this picture).
        eps: guided-filter regularisation (colours in ``[0, 1]``).

    Returns:
        ``[H, W]`` float map on the scale of ``patch_scores``.
    """
    I = _guide(image)
    s = np.asarray(patch_scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"patch_scores must be [h, w], got shape {s.shape}")
    H, W = I.shape[:2]
    return guided_filter(I, upsample_bilinear(s, (H, W)), _radius((H, W), s.shape, radius), eps)


def refine_mask(image: Image.Image | np.ndarray, patch_mask: np.ndarray, *, radius: int | None = None,
                eps: float = GUIDED_EPS) -> np.ndarray:
    """A boolean ``[h, w]`` patch mask made pixel-sharp: guided filter of the 0/1 mask, cut at 0.5.

    Returns:
        boolean ``[H, W]`` at the picture's size.
    """
    m = np.asarray(patch_mask)
    if m.ndim != 2:
        raise ValueError(f"patch_mask must be [h, w], got shape {m.shape}")
    return refine_scores(image, m.astype(np.float64), radius=radius, eps=eps) >= 0.5


def refine_labels(image: Image.Image | np.ndarray, labels: np.ndarray, k: int, *, radius: int | None = None,
                  eps: float = GUIDED_EPS) -> np.ndarray:
    """Integer ``[h, w]`` part labels made pixel-sharp: each label's 0/1 map filtered, then the arg max.

    Returns:
        integer ``[H, W]`` labels in ``[0, k)``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be [h, w], got shape {lab.shape}")
    if lab.min() < 0 or lab.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got [{lab.min()}, {lab.max()}]")
    maps = np.stack([refine_scores(image, (lab == c).astype(np.float64), radius=radius, eps=eps) for c in range(k)])
    return maps.argmax(0).astype(np.int64)  # [H, W]
