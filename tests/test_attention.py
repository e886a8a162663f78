"""Attention maps and rollout against explicit reference loops (synthetic attention)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.explain.attention import attention_rollout, cls_attention_maps, cls_rows_to_maps, rollout_cls_map


def _random_attention(rng: np.random.Generator, L: int, H: int, T: int) -> np.ndarray:
    """Row-stochastic random attention ``[L, H, T, T]``."""
    logits = rng.normal(size=(L, H, T, T)) * 2.0
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reference_rollout(attn: np.ndarray, fusion: str, discard: float, start: int) -> np.ndarray:
    """Abnar & Zuidema rollout written out layer by layer, head by head, row by row."""
    L, H, T, _ = attn.shape
    result = np.eye(T)
    for layer in range(start, L):
        fused = attn[layer, 0].astype(np.float64).copy()
        for head in range(1, H):
            if fusion == "mean":
                fused = fused + attn[layer, head]
            elif fusion == "max":
                fused = np.maximum(fused, attn[layer, head])
            else:
                fused = np.minimum(fused, attn[layer, head])
        if fusion == "mean":
            fused = fused / H
        n_drop = int(T * T * discard)
        if n_drop > 0:
            cutoff = np.sort(fused.ravel())[n_drop - 1]  # the n_drop-th smallest value (values are distinct)
            cls_cls = fused[0, 0]
            fused = np.where(fused <= cutoff, 0.0, fused)
            fused[0, 0] = cls_cls  # CLS->CLS is never discarded
        a = fused + np.eye(T)
        for r in range(T):
            a[r] = a[r] / a[r].sum()
        result = a @ result
    return result


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("start", [0, 2, -1])
def test_rollout_matches_reference(fusion: str, discard: float, start: int) -> None:
    rng = np.random.default_rng(0)
    L, H, T = 4, 3, 1 + 2 * 3
    attn = _random_attention(rng, L, H, T)
    got = attention_rollout(attn, head_fusion=fusion, discard_ratio=discard, start_layer=start)
    want = _reference_rollout(attn, fusion, discard, start % L)
    assert got.shape == (T, T)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-5)  # product of row-stochastic matrices


def test_rollout_never_discards_cls_to_cls() -> None:
    rng = np.random.default_rng(1)
    attn = _random_attention(rng, 2, 2, 5)
    attn[:, :, 0, 0] = 1e-9  # the smallest entry: a naive discard would drop it
    got = attention_rollout(attn, discard_ratio=0.5)
    np.testing.assert_allclose(got, _reference_rollout(attn, "mean", 0.5, 0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_prefix", [1, 2, 5])
@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_cls_map_with_registers(num_prefix: int, fusion: str) -> None:
    rng = np.random.default_rng(2)
    grid = (3, 4)
    T = num_prefix + grid[0] * grid[1]
    attn = _random_attention(rng, 3, 2, T)
    got = rollout_cls_map(attn, num_prefix, grid, head_fusion=fusion, discard_ratio=0.2, start_layer=1)
    row = _reference_rollout(attn, fusion, 0.2, 1)[0, num_prefix:]  # CLS row over patches only
    want = ((row - row.min()) / (row.max() - row.min())).reshape(grid)
    assert got.shape == grid
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_rollout_cls_map_peaks_at_attended_patch() -> None:
    num_prefix, grid, peak = 5, (3, 5), (2, 1)
    T = num_prefix + grid[0] * grid[1]
    attn = np.full((4, 2, T, T), 1.0 / T)
    tok = num_prefix + peak[0] * grid[1] + peak[1]
    attn[:, :, 0, :] = 0.01 / (T - 1)
    attn[:, :, 0, tok] = 0.99
    m = rollout_cls_map(attn, num_prefix, grid)
    assert np.unravel_index(np.argmax(m), grid) == peak
    assert m.min() == 0.0 and m.max() == 1.0


def _peaked_attention(L: int, H: int, num_prefix: int, grid: tuple[int, int], peak: tuple[int, int]) -> np.ndarray:
    """Attention where the CLS query attends only to patch ``peak`` (and registers are loud elsewhere)."""
    T = num_prefix + grid[0] * grid[1]
    attn = np.zeros((L, H, T, T), dtype=np.float32)
    attn[..., :, 1:num_prefix] = 0.5  # registers: must be skipped, not read as patches
    attn[..., 0, :] = 0.0
    attn[..., 0, num_prefix + peak[0] * grid[1] + peak[1]] = 1.0
    return attn


@pytest.mark.parametrize("num_prefix", [1, 5])
@pytest.mark.parametrize("peak", [(0, 0), (1, 4), (2, 3)])
def test_cls_attention_maps_prefix_offset(num_prefix: int, peak: tuple[int, int]) -> None:
    grid = (3, 5)  # non-square
    attn = _peaked_attention(2, 3, num_prefix, grid, peak)
    maps = cls_attention_maps(attn, num_prefix, grid)
    assert maps.shape == (2, 3, *grid)
    for layer in range(2):
        for head in range(3):
            m = maps[layer, head]
            assert np.unravel_index(np.argmax(m), grid) == peak
            assert m[peak] == 1.0 and m.sum() == 1.0


def test_cls_attention_maps_batched_and_torch() -> None:
    grid, num_prefix = (2, 3), 2
    batch = np.stack([_peaked_attention(1, 2, num_prefix, grid, p) for p in [(0, 1), (1, 2)]])  # [2, 1, 2, T, T]
    maps = cls_attention_maps(torch.from_numpy(batch), num_prefix, grid)
    assert maps.shape == (2, 1, 2, *grid)
    assert maps[0, 0, 0, 0, 1] == 1.0 and maps[1, 0, 1, 1, 2] == 1.0


def test_cls_rows_to_maps_matches_full_maps() -> None:
    grid, num_prefix = (3, 5), 5
    attn = _peaked_attention(2, 2, num_prefix, grid, (1, 3))
    rows = attn[..., 0, num_prefix:]  # what Backbone.extract(want=("attention_cls",)) returns, per image
    np.testing.assert_array_equal(cls_rows_to_maps(rows, grid), cls_attention_maps(attn, num_prefix, grid))


def test_layout_errors_are_explicit() -> None:
    attn = np.zeros((1, 1, 1 + 12, 1 + 12))
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        cls_attention_maps(attn, 1, (4, 4))
    with pytest.raises(ValueError, match="grid"):
        cls_attention_maps(attn, 2, (3, 4))
    with pytest.raises(ValueError, match="attn must be"):
        cls_attention_maps(attn[0], 1, (3, 4))
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(attn + 1.0, head_fusion="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_rollout(attn + 1.0, discard_ratio=1.0)
    with pytest.raises(ValueError, match="start_layer"):
        attention_rollout(attn + 1.0, start_layer=3)
