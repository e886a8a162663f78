"""The boundary prior on synthetic tokens: border similarity, connected components, the automatic
boundary foreground and the click's border rule, each against a reference written out here (loops over
patches, scipy's labelling)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from core.segment.click import click_mask
from core.segment.foreground import boundary_foreground, ncut_foreground
from core.segment.masks import component_at, largest_component
from core.segment.similarity import border_ring, border_similarity, patch_similarity
from core.segment.threshold import otsu_threshold


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _border_similarity_reference(tokens: np.ndarray, exclude=None) -> np.ndarray:
    """Loops: for each patch, the largest cosine to a patch of the first/last row or column."""
    h, w, _ = tokens.shape
    ring = [(i, j) for i in range(h) for j in range(w) if i in (0, h - 1) or j in (0, w - 1)]
    ring = [p for p in ring if p != exclude]
    return np.array([[max(_cos(tokens[i, j], tokens[p]) for p in ring) for j in range(w)] for i in range(h)])


def _scene_tokens(rng: np.random.Generator, D: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 10x12 picture: background ``bg`` everywhere, an object ``obj`` inside it (rows 3-6, columns 4-8)
    and a different, brighter distractor ``dis`` cut by the left border (rows 2-7, columns 0-1), the way a
    scene's own object is cut by a crop. Returns tokens ``[10, 12, D]``, the object and distractor masks."""
    basis = np.eye(D) * 5.0
    obj_mask = np.zeros((10, 12), bool)
    obj_mask[3:7, 4:9] = True
    dis_mask = np.zeros((10, 12), bool)
    dis_mask[2:8, 0:2] = True
    t = np.where(obj_mask[..., None], basis[0], np.where(dis_mask[..., None], basis[2] * 1.5, basis[1]))
    return (t + rng.normal(scale=0.3, size=t.shape)).astype(np.float32), obj_mask, dis_mask


# ---- similarity to the border ------------------------------------------------------------------
@pytest.mark.parametrize("grid,exclude", [((4, 5), None), ((6, 3), (0, 1)), ((7, 7), (3, 3))])
def test_border_similarity_matches_loops(grid, exclude) -> None:
    tokens = np.random.default_rng(0).normal(size=(*grid, 8)).astype(np.float32)
    got = border_similarity(torch.from_numpy(tokens), exclude=exclude)
    np.testing.assert_allclose(got, _border_similarity_reference(tokens, exclude), atol=1e-5)
    ring = border_ring(grid)
    assert ring.sum() == 2 * (grid[0] + grid[1]) - 4 and not ring[1:-1, 1:-1].any()
    on_ring = ring.copy()
    if exclude is not None:
        on_ring[exclude] = False
    np.testing.assert_allclose(got[on_ring], 1.0, atol=1e-5)  # a border patch is its own nearest border patch
    with pytest.raises(ValueError, match="outside"):
        border_similarity(tokens, exclude=(grid[0], 0))


# ---- connected components ------------------------------------------------------------------------
def test_components_match_scipy_labels() -> None:
    m = np.random.default_rng(1).random((9, 11)) > 0.55
    labels, n = ndimage.label(m)  # 4-connectivity
    sizes = [(labels == k).sum() for k in range(1, n + 1)]
    np.testing.assert_array_equal(largest_component(m), labels == 1 + int(np.argmax(sizes)))
    for ij in [(0, 0), (4, 5), (8, 10)]:
        ref = labels == labels[ij] if m[ij] else np.zeros_like(m)
        np.testing.assert_array_equal(component_at(m, ij), ref)
    diag = np.eye(3, dtype=bool)  # diagonal neighbours are not 4-connected
    assert component_at(diag, (1, 1)).sum() == 1 and largest_component(diag).sum() == 1
    assert not largest_component(np.zeros((3, 3), bool)).any()
    with pytest.raises(ValueError, match="outside"):
        component_at(m, (9, 0))


# ---- automatic: boundary foreground --------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundary_foreground_is_the_written_out_rule(seed: int) -> None:
    tokens, obj, _ = _scene_tokens(np.random.default_rng(seed))
    tokens += np.random.default_rng(seed + 10).normal(scale=2.0, size=tokens.shape).astype(np.float32)  # noisy
    score, fg = boundary_foreground(tokens)
    ref = 1.0 - _border_similarity_reference(tokens)
    np.testing.assert_allclose(score, ref, atol=1e-5)
    labels, n = ndimage.label(ref >= otsu_threshold(ref))
    sizes = [(labels == k).sum() for k in range(1, n + 1)]
    np.testing.assert_array_equal(fg, labels == 1 + int(np.argmax(sizes)))


def test_boundary_foreground_ignores_an_object_cut_by_the_border() -> None:
    tokens, obj, dis = _scene_tokens(np.random.default_rng(3))
    _, fg = boundary_foreground(tokens)
    np.testing.assert_array_equal(fg, obj)  # the distractor is on the border: background
    # the normalized cut's seed, by contrast, lands on the distractor (the failure seen on the scenes)
    assert (ncut_foreground(tokens)[1] == dis).all()
    with pytest.raises(ValueError, match="3x3"):
        boundary_foreground(tokens[:2])


# ---- click: the border rule ------------------------------------------------------------------------
def test_click_border_rule_is_nearest_exemplar_then_the_clicked_component() -> None:
    rng = np.random.default_rng(5)
    tokens, obj, dis = _scene_tokens(rng)
    tokens += rng.normal(scale=1.5, size=tokens.shape).astype(np.float32)
    q = (4, 6)
    c = click_mask(tokens, q, rule="border")
    sim = patch_similarity(tokens, q)
    bg = _border_similarity_reference(tokens, exclude=q)
    np.testing.assert_allclose(c.background, bg, atol=1e-5)
    # reference: nearest exemplar with the click, then with the mean direction of the mask, to a fixed point
    unit = tokens / np.linalg.norm(tokens, axis=-1, keepdims=True)
    labels, _ = ndimage.label(sim > bg)
    ref = labels == labels[q]
    first = ref.copy()
    for _ in range(20):
        p = unit[ref].mean(0)
        labels, _ = ndimage.label(unit @ (p / np.linalg.norm(p)) > bg)
        new = labels == labels[q] if labels[q] else np.zeros_like(ref)
        if not new.any() or (new == ref).all():
            break
        ref = new
    np.testing.assert_array_equal(c.mask, ref)
    assert not np.array_equal(ref, first)  # the noisy tokens make the exemplar update matter here
    assert c.rule == "border" and c.mask[q] and c.threshold == c.otsu == otsu_threshold(sim)
    assert click_mask(tokens, q).rule == "threshold" and click_mask(tokens, q).background is None


def test_click_border_rule_separates_what_a_threshold_joins() -> None:
    # a second blob of object tokens, apart from the clicked one: a threshold takes both, the rule one
    tokens, obj, _ = _scene_tokens(np.random.default_rng(6))
    twin = np.zeros_like(obj)
    twin[7:9, 9:11] = True
    tokens[twin] = tokens[obj][: twin.sum()]
    c = click_mask(tokens, (4, 6), rule="border")
    np.testing.assert_array_equal(c.mask, obj)
    assert click_mask(tokens, (4, 6)).mask[twin].all()
    # a click on the border: that patch is not background for itself
    edge = click_mask(tokens, (5, 0), rule="border")
    assert edge.mask[5, 0]
    with pytest.raises(ValueError, match="no threshold"):
        click_mask(tokens, (4, 6), 0.5, rule="border")
    with pytest.raises(ValueError, match="unknown click rule"):
        click_mask(tokens, (4, 6), rule="otsu")
