"""core.geometry.regions: which map points a box or lasso holds, against matplotlib's Path.contains_points."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from core.geometry.regions import points_in_polygon


def _star_shaped(rng, m: int) -> np.ndarray:
    """A simple (not self-crossing) polygon: random radii at sorted angles around a centre."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, m))
    r = rng.uniform(0.3, 1.0, m)
    return np.c_[0.2 + r * np.cos(ang), -0.1 + r * np.sin(ang)]


@pytest.mark.parametrize("m", [3, 4, 12, 200])
def test_simple_polygons_equal_matplotlib(m):
    rng = np.random.default_rng(m)
    pts = rng.uniform(-1.3, 1.3, size=(20_000, 2))
    poly = _star_shaped(rng, m)
    got = points_in_polygon(pts, poly)
    ref = MplPath(poly).contains_points(pts)
    assert np.array_equal(got, ref) and 0 < got.sum() < len(pts)  # random points: none on the outline


def test_box_and_even_odd_rule():
    pts = np.array([[0.5, 0.5], [2.0, 0.5], [-0.1, 0.2], [0.0, 0.0]])
    box = [[0, 0], [1, 0], [1, 1], [0, 1]]
    assert points_in_polygon(pts[:3], box).tolist() == [True, False, False]
    # a pentagram drawn in one stroke: its centre is wound twice, outside by the even-odd rule
    k = np.arange(5) * 4 * np.pi / 5
    star = np.c_[np.sin(k), np.cos(k)]
    assert points_in_polygon([[0.0, 0.0], [0.0, 0.7], [3.0, 0.0]], star).tolist() == [False, True, False]


def test_bad_polygons_are_refused():
    with pytest.raises(ValueError, match="at least 3 corners"):
        points_in_polygon(np.zeros((3, 2)), [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="NaN"):
        points_in_polygon(np.zeros((3, 2)), [[0, 0], [1, np.nan], [1, 0]])
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        points_in_polygon(np.zeros((3, 3)), [[0, 0], [1, 1], [1, 0]])


def test_a_million_points_in_a_lasso_of_200_corners_is_quick_enough_to_test():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(1_000_000, 2)).astype(np.float32)
    poly = _star_shaped(rng, 200)
    inside = points_in_polygon(pts, poly)
    ref = MplPath(poly).contains_points(pts[:50_000])
    assert np.array_equal(inside[:50_000], ref)
