"""Regions of a 2-D map: which points a box or lasso selection holds."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_BLOCK = 1 << 20  # points per pass: the crossing tests hold a few [block] arrays at a time


def points_in_polygon(xy: ArrayLike, polygon: ArrayLike) -> np.ndarray:
    """``[N]`` whether each point of ``xy [N, 2]`` lies inside ``polygon [M, 2]`` (closed implicitly; a box is
    its 4 corners). Even-odd rule by ray casting: a point is inside when a ray to its right crosses the
    outline an odd number of times (the rule of matplotlib's ``Path.contains_points`` and of SVG's
    ``evenodd``), so a lasso that crosses itself leaves its doubly wound parts out. Points on the outline
    may fall either side. Only the points in the polygon's bounding box are tested, one edge at a time.

    Raises:
        ValueError: fewer than 3 vertices, or arrays of the wrong shape or not finite.
    """
    P = np.asarray(xy, dtype=np.float64)
    V = np.asarray(polygon, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 2:
        raise ValueError(f"points must be [N, 2], got shape {P.shape}")
    if V.ndim != 2 or V.shape[1] != 2 or len(V) < 3:
        raise ValueError(f"a selection needs a polygon of at least 3 corners [M, 2], got shape {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("the polygon has a NaN or infinite corner")
    inside = np.zeros(len(P), dtype=bool)
    (x0, y0), (x1, y1) = V.min(axis=0), V.max(axis=0)
    cand = np.flatnonzero((P[:, 0] >= x0) & (P[:, 0] <= x1) & (P[:, 1] >= y0) & (P[:, 1] <= y1))  # [C]
    ax, ay = V[:, 0], V[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)  # each edge a -> b
    for s in range(0, len(cand), _BLOCK):
        c = cand[s:s + _BLOCK]
        px, py = P[c, 0], P[c, 1]
        odd = np.zeros(len(c), dtype=bool)
        for j in range(len(V)):
            if ay[j] == by[j]:
                continue  # a horizontal edge is never crossed by a horizontal ray
            straddles = (ay[j] > py) != (by[j] > py)
            x_cross = ax[j] + (py - ay[j]) * (bx[j] - ax[j]) / (by[j] - ay[j])  # where the edge meets y = py
            odd ^= straddles & (px < x_cross)
        inside[c] = odd
    return inside
