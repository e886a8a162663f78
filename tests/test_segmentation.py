"""Similarity maps, masks, clustering and foreground on synthetic tokens."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.segment.click import click_mask
from core.segment.clustering import common_foreground, cosegment, kmeans_parts
from core.segment.foreground import attention_foreground, ncut_foreground, pca_foreground
from core.segment.masks import iou, mask_png_bytes, mask_to_image_size
from core.segment.similarity import cross_similarity, patch_similarity, pixel_to_patch
from core.segment.threshold import otsu_threshold, threshold_mask


def _two_group_tokens(rng: np.random.Generator, grid: tuple[int, int], D: int = 16, block=None) -> tuple[np.ndarray, np.ndarray]:
    """Tokens ``[h, w, D]``: a centre block near direction ``fg``, the rest near ``bg``; and the block mask."""
    h, w = grid
    fg, bg = np.zeros(D), np.zeros(D)
    fg[0], bg[1] = 5.0, 5.0
    mask = np.zeros(grid, dtype=bool)
    if block is None:
        block = (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))
    mask[block] = True
    tokens = np.where(mask[..., None], fg, bg) + rng.normal(scale=0.3, size=(h, w, D))
    return tokens.astype(np.float32), mask


# ---- similarity -------------------------------------------------------------------------------
@pytest.mark.parametrize("query", [(0, 0), (2, 5), (3, 6)])
def test_patch_similarity_peaks_at_query(query: tuple[int, int]) -> None:
    tokens = np.random.default_rng(0).normal(size=(4, 7, 32))
    sim = patch_similarity(tokens, query)
    assert sim.shape == (4, 7)
    assert np.unravel_index(np.argmax(sim), sim.shape) == query
    assert sim[query] == pytest.approx(1.0, abs=1e-6)
    assert sim.min() >= -1.0 - 1e-6


def test_patch_similarity_rejects_outside_query() -> None:
    with pytest.raises(ValueError, match="outside"):
        patch_similarity(np.ones((3, 3, 4)), (3, 0))


def test_cross_similarity_matches_patch_similarity() -> None:
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(3, 4, 5, 8)).astype(np.float32)  # [M, h, w, D]
    sim = cross_similarity(torch.from_numpy(tokens[1, 2, 3]), tokens)
    assert sim.shape == (3, 4, 5)
    np.testing.assert_allclose(sim[1], patch_similarity(tokens[1], (2, 3)), atol=1e-6)
    assert sim[1, 2, 3] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="dim"):
        cross_similarity(np.ones(7), tokens)


# ---- pixel <-> patch --------------------------------------------------------------------------
def test_pixel_to_patch_corners_and_centre() -> None:
    size, grid = (300, 200), (4, 6)  # W=300, H=200; h=4 rows, w=6 columns
    assert pixel_to_patch((0, 0), size, grid) == (0, 0)
    assert pixel_to_patch((299.9, 0), size, grid) == (0, 5)
    assert pixel_to_patch((0, 199.9), size, grid) == (3, 0)
    assert pixel_to_patch((300, 200), size, grid) == (3, 5)  # far edge belongs to the last patch
    assert pixel_to_patch((49.9, 49.9), size, grid) == (0, 0)
    assert pixel_to_patch((50, 50), size, grid) == (1, 1)
    assert pixel_to_patch((150, 100), size, grid) == (2, 3)
    with pytest.raises(ValueError, match="outside"):
        pixel_to_patch((301, 0), size, grid)


# ---- masks -----------------------------------------------------------------------------------
def test_threshold_and_upsampled_mask_roundtrip() -> None:
    sim = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.5]])
    mask = threshold_mask(sim, 0.5)
    np.testing.assert_array_equal(mask, [[False, True, True], [True, False, True]])
    big = mask_to_image_size(mask, (30, 20))  # W=30, H=20
    assert big.shape == (20, 30) and big.dtype == bool
    for y in range(20):
        for x in range(30):
            assert big[y, x] == mask[pixel_to_patch((x + 0.5, y + 0.5), (30, 20), mask.shape)]


def test_click_mask_is_similarity_then_threshold() -> None:
    tokens, block = _two_group_tokens(np.random.default_rng(3), (8, 10))
    q = (4, 5)  # inside the centre block
    c = click_mask(tokens, q)
    sim = patch_similarity(tokens, q)
    np.testing.assert_array_equal(c.similarity, sim)
    assert c.query == q and c.threshold == c.otsu == otsu_threshold(sim)
    np.testing.assert_array_equal(c.mask, sim >= c.otsu)
    np.testing.assert_array_equal(c.mask, block)  # two clean groups: Otsu splits them exactly
    fixed = click_mask(torch.from_numpy(tokens), q, 0.99)
    assert fixed.threshold == 0.99 and fixed.otsu == c.otsu
    np.testing.assert_array_equal(fixed.mask, sim >= 0.99)


def test_mask_png_bytes_decodes() -> None:
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:6] = True
    im = Image.open(io.BytesIO(mask_png_bytes(mask)))
    assert im.format == "PNG" and im.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(im) > 127, mask)


def test_iou() -> None:
    a = np.array([[1, 1, 0, 0]], dtype=bool)
    b = np.array([[0, 1, 1, 0]], dtype=bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, a) == 1.0
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(ValueError, match="shapes"):
        iou(a, a.T)


# ---- clustering -------------------------------------------------------------------------------
def test_kmeans_parts_separates_two_groups() -> None:
    tokens, mask = _two_group_tokens(np.random.default_rng(2), (6, 8))
    labels = kmeans_parts(tokens, k=2)
    assert labels.shape == (6, 8)
    assert len(np.unique(labels[mask])) == 1 and len(np.unique(labels[~mask])) == 1
    assert labels[mask][0] != labels[~mask][0]
    with pytest.raises(ValueError, match="k must be"):
        kmeans_parts(tokens, k=49)


def test_cosegment_shares_clusters_across_images() -> None:
    rng = np.random.default_rng(3)
    t1, m1 = _two_group_tokens(rng, (6, 8))
    t2, m2 = _two_group_tokens(rng, (5, 5), block=(slice(0, 2), slice(0, 5)))  # different grid and layout
    labels = cosegment([t1, torch.from_numpy(t2)], k=2)
    assert [lab.shape for lab in labels] == [(6, 8), (5, 5)]
    fg1, fg2 = set(labels[0][m1].tolist()), set(labels[1][m2].tolist())
    bg1, bg2 = set(labels[0][~m1].tolist()), set(labels[1][~m2].tolist())
    assert fg1 == fg2 and bg1 == bg2 and len(fg1) == 1 and fg1 != bg1

    scores = [m1.astype(float), m2.astype(float)]  # foreground score high on the object
    assert common_foreground(labels, scores) == fg1


def test_common_foreground_votes() -> None:
    labels = [np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, 2]]), np.array([[0, 0], [1, 1]])]
    scores = [np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 1.0]])]
    assert common_foreground(labels, scores, vote_frac=0.5) == {0}  # cluster 0 wins 2 of 3 votes
    assert common_foreground(labels, scores, vote_frac=1.0) == set()
    assert common_foreground(labels, scores, vote_frac=0.3) == {0, 1}
    with pytest.raises(ValueError, match="label maps"):
        common_foreground(labels, scores[:2])


# ---- foreground -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pca_foreground_finds_centre_block(seed: int) -> None:
    tokens, mask = _two_group_tokens(np.random.default_rng(seed), (8, 10))
    score, fg = pca_foreground(tokens)
    assert score.shape == (8, 10) and fg.dtype == bool
    np.testing.assert_array_equal(fg, mask)
    assert score[mask].min() > 0 > score[~mask].max()


def test_pca_foreground_sign_flip_invariance_and_ref() -> None:
    tokens, mask = _two_group_tokens(np.random.default_rng(5), (8, 8))
    _, fg_neg = pca_foreground(-tokens)  # sign of the component is decided by the border, not the data
    np.testing.assert_array_equal(fg_neg, mask)
    ref = np.stack([tokens, _two_group_tokens(np.random.default_rng(6), (8, 8))[0]])  # [2, h, w, D]
    _, fg_ref = pca_foreground(tokens, ref_tokens=ref)
    np.testing.assert_array_equal(fg_ref, mask)
    with pytest.raises(ValueError, match="dim"):
        pca_foreground(tokens, ref_tokens=np.ones((4, 3)))


def test_attention_foreground_keeps_mass() -> None:
    cls_map = np.array([[0.5, 0.2], [0.2, 0.1]])
    np.testing.assert_array_equal(attention_foreground(cls_map, keep=0.5), [[True, False], [False, False]])
    np.testing.assert_array_equal(attention_foreground(cls_map, keep=0.6), [[True, True], [False, False]])  # 0.7 >= 0.6
    np.testing.assert_array_equal(attention_foreground(cls_map, keep=0.75), [[True, True], [True, False]])
    assert attention_foreground(cls_map, keep=1.0).all()
    with pytest.raises(ValueError, match="non-negative"):
        attention_foreground(cls_map - 0.3)


# ---- normalized cut (TokenCut) -------------------------------------------------------------------------
def _ncut_reference(tokens: np.ndarray, tau: float, eps: float) -> np.ndarray:
    """Second smallest generalized eigenvector of (D - W) x = l D x, written out through the symmetric
    normalized Laplacian: D^-1/2 (D - W) D^-1/2 y = l y, x = D^-1/2 y (so x^T D x = 1)."""
    x = tokens.reshape(-1, tokens.shape[-1]).astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    Wm = np.where(x @ x.T > tau, 1.0, eps)
    d = Wm.sum(1)
    L = np.eye(len(d)) - Wm / np.sqrt(d[:, None] * d[None, :])
    _, vecs = np.linalg.eigh(L)
    return vecs[:, 1] / np.sqrt(d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ncut_foreground_matches_the_written_out_eigenproblem(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tokens, mask = _two_group_tokens(rng, (8, 10))
    tokens += rng.normal(scale=1.0, size=tokens.shape).astype(np.float32)  # a graph that is not two clean cliques
    score, fg = ncut_foreground(tokens, seed_component=False)
    v = _ncut_reference(tokens, 0.2, 1e-5)
    ref = (v - v.mean()).reshape(8, 10)
    sign = np.sign(score.ravel() @ ref.ravel())
    np.testing.assert_allclose(score, sign * ref, atol=1e-5)
    seed_patch = np.unravel_index(np.argmax(np.abs(v)), (8, 10))
    assert score[seed_patch] > 0  # the most extreme patch is on the object side
    np.testing.assert_array_equal(fg, score > 0)


def test_ncut_foreground_finds_centre_block_and_keeps_the_seed_component() -> None:
    tokens, mask = _two_group_tokens(np.random.default_rng(4), (8, 10))
    score, fg = ncut_foreground(tokens)
    np.testing.assert_array_equal(fg, mask)  # the smaller group holds the seed (largest |x|): the object
    assert score[mask].min() > 0 > score[~mask].max()
    # two separate blobs of the same object tokens: the object side has both, the seed's component one
    two = np.zeros((8, 10), bool)
    two[1:3, 1:3] = True
    two[5:7, 6:9] = True
    tokens2, _ = _two_group_tokens(np.random.default_rng(4), (8, 10), block=two)
    _, side = ncut_foreground(tokens2, seed_component=False)
    np.testing.assert_array_equal(side, two)
    _, comp = ncut_foreground(tokens2)
    assert comp.sum() in (4, 6) and (comp <= two).all()
    with pytest.raises(ValueError, match="eps"):
        ncut_foreground(tokens, eps=0.0)
