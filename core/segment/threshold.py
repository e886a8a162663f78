"""Thresholds that turn a score map into a mask: a fixed cut and Otsu's threshold."""
from __future__ import annotations

import numpy as np
import torch


def threshold_mask(sim: np.ndarray | torch.Tensor, thr: float) -> np.ndarray:
    """``sim >= thr`` as a boolean ``[h, w]`` mask."""
    s = np.asarray(sim)
    if s.ndim != 2:
        raise ValueError(f"sim must be [h, w], got shape {s.shape}")
    return s >= thr


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut maximising the between-class variance of ``values`` (any shape).

    When an empty gap between the two modes makes several cuts equally good, the middle of the gap is
    returned. A constant input returns its value (everything is ``>=`` it).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("otsu_threshold needs a non-empty finite array")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = hist / hist.sum()  # [bins]
    centres = (edges[:-1] + edges[1:]) / 2
    n0 = np.cumsum(hist)  # values at or below each cut (integers: no round-off at the ends)
    w0 = n0 / hist.sum()  # weight of the class below each cut
    mu = np.cumsum(p * centres)
    w1 = 1.0 - w0
    valid = (n0 > 0) & (n0 < hist.sum())
    between = np.zeros_like(w0)
    between[valid] = (mu[-1] * w0[valid] - mu[valid]) ** 2 / (w0[valid] * w1[valid])
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))  # a plateau when the modes leave a gap
    return float((edges[best[0] + 1] + edges[best[-1] + 1]) / 2)  # its middle; values >= this are the upper class
