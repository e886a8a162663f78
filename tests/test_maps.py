"""Map utilities, prototype maps, overlays and the deletion / insertion metric."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from core.explain.faithfulness import deletion_insertion
from core.explain.maps import normalize01, upsample
from core.explain.prototype_maps import prototype_maps
from core.render import ColorScale, fast_overlay


def test_normalize01() -> None:
    m = normalize01(np.array([[2.0, 4.0], [6.0, 3.0]]))
    np.testing.assert_allclose(m, [[0.0, 0.5], [1.0, 0.25]])
    np.testing.assert_array_equal(normalize01(np.full((2, 3), 7.0)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        normalize01(np.array([1.0, np.nan]))


def test_upsample_shape_and_values() -> None:
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    up = upsample(torch.from_numpy(m), (30, 20))  # (H, W)
    assert up.shape == (30, 20) and up.dtype == np.float32
    assert m.min() - 1e-5 <= up.min() and up.max() <= m.max() + 1e-5  # bilinear never overshoots
    np.testing.assert_allclose(upsample(np.full((2, 5), 0.3), (7, 9)), 0.3, rtol=1e-6)
    assert up[0, 0] == pytest.approx(0.0) and up[-1, -1] == pytest.approx(11.0)  # corners keep corner patches
    with pytest.raises(ValueError, match=r"\[h, w\]"):
        upsample(np.zeros((2, 2, 2)), (4, 4))


def test_prototype_maps() -> None:
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(4, 8)).astype(np.float32)
    tokens = rng.normal(size=(3, 5, 8)).astype(np.float32)
    tokens[1, 2] = 2.0 * protos[3]  # this patch *is* class 3
    out = prototype_maps(tokens, protos, (3, 1))
    assert set(out) == {"a", "b", "diff"}
    assert all(v.shape == (3, 5) for v in out.values())
    assert out["a"][1, 2] == pytest.approx(1.0, abs=1e-6)
    assert np.unravel_index(np.argmax(out["a"]), (3, 5)) == (1, 2)
    np.testing.assert_allclose(out["diff"], out["a"] - out["b"])
    cos = tokens[0, 0] @ protos[1] / np.linalg.norm(tokens[0, 0]) / np.linalg.norm(protos[1])
    assert out["b"][0, 0] == pytest.approx(cos, abs=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        prototype_maps(tokens, protos, (0, 4))
    with pytest.raises(ValueError, match="dim"):
        prototype_maps(tokens, protos[:, :4], (0, 1))


def test_overlay() -> None:
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, size=(40, 60, 3), dtype=np.uint8))
    heat = np.random.default_rng(2).normal(size=(4, 6))
    out = fast_overlay(img, heat, ColorScale(float(heat.min()), float(heat.max())), alpha=0.5)
    assert out.size == img.size and out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(fast_overlay(img, heat, ColorScale(0.0, 1.0), alpha=0.0)), np.asarray(img))
    # alpha=1 shows only colours; below vmin everything maps to the colormap's first colour
    full = np.asarray(fast_overlay(img, heat, ColorScale(100.0, 101.0, "viridis"), alpha=1.0))
    first = np.round(np.array(matplotlib.colormaps["viridis"](0.0)[:3]) * 255).astype(np.uint8)
    assert (full == first).all()
    with pytest.raises(ValueError, match="colormap"):
        fast_overlay(img, heat, ColorScale(0.0, 1.0, "not-a-cmap"))


def _region_image(H: int = 48, W: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = 0.1 + 0.05 * rng.random((H, W, 3))
    region = np.zeros((H, W), dtype=bool)
    region[12:36, 8:32] = True
    image[region] = 0.9 + 0.05 * rng.random((region.sum(), 3))
    return image.astype(np.float32), region


class _RegionMean:
    """score = mean intensity of a known region; counts calls and batch sizes."""

    def __init__(self, region: np.ndarray):
        self.region = region
        self.batch_sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(batch.shape[0])
        return batch[:, self.region].mean(axis=(1, 2))


@pytest.mark.parametrize("baseline", ["blur", "zero", "mean"])
def test_deletion_insertion_prefers_the_right_map(baseline: str) -> None:
    image, region = _region_image()
    good = region.astype(np.float32) + 0.01 * np.random.default_rng(4).random(region.shape)
    bad = 1.0 - good  # points everywhere except the region
    score = _RegionMean(region)
    r_good = deletion_insertion(score, image, good, steps=10, baseline=baseline)
    assert score.batch_sizes == [11, 11]  # one batch of steps+1 images per curve
    r_bad = deletion_insertion(score, image, bad, steps=10, baseline=baseline)
    assert r_good["deletion_auc"] < r_bad["deletion_auc"] - 0.05
    assert r_good["insertion_auc"] > r_bad["insertion_auc"] + 0.05
    for r in (r_good, r_bad):
        assert r["deletion_curve"].shape == r["insertion_curve"].shape == (11,)
        np.testing.assert_allclose(r["fractions"], np.linspace(0, 1, 11))
        assert r["deletion_curve"][0] == pytest.approx(1.0)  # unperturbed image, normalised
        assert r["insertion_curve"][-1] == pytest.approx(1.0)


def test_deletion_insertion_raw_scores_and_auc() -> None:
    image, region = _region_image()
    r = deletion_insertion(_RegionMean(region), image, region.astype(float), steps=4, baseline="zero", normalize=False)
    full = image[region].mean()
    assert r["full_score"] == pytest.approx(full, rel=1e-5)
    assert r["deletion_curve"][0] == pytest.approx(full, rel=1e-5)
    assert r["deletion_curve"][-1] == 0.0 and r["insertion_curve"][0] == 0.0
    y, x = r["deletion_curve"], r["fractions"]
    assert r["deletion_auc"] == pytest.approx(float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x))))


def test_deletion_insertion_errors() -> None:
    image, region = _region_image()
    score = _RegionMean(region)
    with pytest.raises(ValueError, match="upsample"):
        deletion_insertion(score, image, np.ones((3, 4)))
    with pytest.raises(ValueError, match="positive score"):
        deletion_insertion(lambda b: -np.ones(len(b)), image, region.astype(float))
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        deletion_insertion(lambda b: np.ones((len(b), 2)), image, region.astype(float))
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(score, image, region.astype(float), baseline="noise")  # type: ignore[arg-type]
