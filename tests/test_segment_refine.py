"""Pixel-sharp masks: the box filter and the guided filter against loops written out from He et al.'s
formulas, and a coarse mask snapped onto a real edge."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.segment.refine import box_mean, guided_filter, refine_labels, refine_mask, refine_scores, upsample_bilinear


def _box_mean_loops(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window clipped to the picture, pixel by pixel."""
    H, W = x.shape[:2]
    out = np.zeros(x.shape)
    for i in range(H):
        for j in range(W):
            out[i, j] = x[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].mean(axis=(0, 1))
    return out


def _guided_filter_loops(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. (2013), Algorithm 1 with a colour guide, one window at a time."""
    H, W, C = I.shape
    a = np.zeros((H, W, C))
    b = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            win = (slice(max(0, i - r), i + r + 1), slice(max(0, j - r), j + r + 1))
            Iw = I[win].reshape(-1, C)  # [n, C] the window's colours
            pw = p[win].reshape(-1)  # [n]
            mu = Iw.mean(0)
            sigma = (Iw - mu).T @ (Iw - mu) / len(pw)  # [C, C] population covariance
            cov = (Iw * pw[:, None]).mean(0) - mu * pw.mean()  # [C]
            a[i, j] = np.linalg.solve(sigma + eps * np.eye(C), cov)
            b[i, j] = pw.mean() - a[i, j] @ mu
    return (_box_mean_loops(a, r) * I).sum(-1) + _box_mean_loops(b, r)


@pytest.mark.parametrize("r", [0, 1, 3, 9])
def test_box_mean_matches_loops(r: int) -> None:
    x = np.random.default_rng(r).normal(size=(11, 14, 2))
    np.testing.assert_allclose(box_mean(x, r), _box_mean_loops(x, r), atol=1e-12)
    np.testing.assert_allclose(box_mean(x[..., 0], r), _box_mean_loops(x[..., 0], r), atol=1e-12)
    with pytest.raises(ValueError, match="radius"):
        box_mean(x, -1)


@pytest.mark.parametrize("r,eps", [(1, 1e-3), (2, 1e-2), (4, 1e-4)])
def test_guided_filter_matches_loops(r: int, eps: float) -> None:
    rng = np.random.default_rng(r)
    I = rng.random((12, 15, 3))
    p = rng.random((12, 15))
    np.testing.assert_allclose(guided_filter(I, p, r, eps), _guided_filter_loops(I, p, r, eps), atol=1e-9)
    # a grey guide is the one-channel case of the same formula
    np.testing.assert_allclose(guided_filter(I[..., 0], p, r, eps), _guided_filter_loops(I[..., :1], p, r, eps),
                               atol=1e-9)


def test_guided_filter_keeps_flat_maps_and_checks_shapes() -> None:
    I = np.random.default_rng(0).random((20, 20, 3))
    np.testing.assert_allclose(guided_filter(I, np.full((20, 20), 0.7), 3), 0.7, atol=1e-12)  # a constant stays
    with pytest.raises(ValueError, match="share H, W"):
        guided_filter(I, np.zeros((20, 21)), 3)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(I, np.zeros((20, 20)), 3, eps=0.0)


def test_upsample_bilinear_geometry() -> None:
    m = np.array([[0.0, 1.0]])  # [1, 2]
    up = upsample_bilinear(m, (1, 8))  # patch centres at x = 2 and 6 (pixel centres + 0.5)
    np.testing.assert_allclose(up[0], [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])


def _two_tone(W: int = 160, H: int = 120, edge: int = 67) -> tuple[Image.Image, np.ndarray]:
    """A dark picture with a bright right side from column ``edge`` (not on a patch boundary), and that truth."""
    a = np.full((H, W, 3), 40, np.uint8)
    a[:, edge:] = (200, 180, 90)
    noise = np.random.default_rng(0).integers(-6, 7, size=a.shape)
    truth = np.zeros((H, W), bool)
    truth[:, edge:] = True
    return Image.fromarray(np.clip(a + noise, 0, 255).astype(np.uint8)), truth


def test_refine_mask_snaps_a_coarse_mask_to_the_edge() -> None:
    img, truth = _two_tone()
    grid = (6, 8)  # 20-px patches: the edge at x = 67 cuts patch column 3
    coarse = np.zeros(grid, bool)
    coarse[:, 3:] = True  # the patch grid's best guess: from x = 60
    sharp = refine_mask(img, coarse)
    assert sharp.shape == truth.shape
    blocky = np.repeat(np.repeat(coarse, 20, 0), 20, 1)
    assert (blocky != truth).sum() == 7 * 120  # 7 wrong columns on the patch grid
    assert (sharp != truth).sum() <= 120  # at most one column off after refinement
    s = refine_scores(img, coarse.astype(float))
    assert s.shape == truth.shape and s[:, :60].max() < 0.5 < s[:, 70:].min()


def test_refine_labels_follow_the_edge() -> None:
    img, truth = _two_tone()
    labels = np.zeros((6, 8), np.int64)
    labels[:, 3:] = 2  # label 1 absent
    out = refine_labels(img, labels, 3)
    assert out.shape == truth.shape and set(np.unique(out)) == {0, 2}
    assert ((out == 2) != truth).sum() <= 120
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        refine_labels(img, labels, 2)
