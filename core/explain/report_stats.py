"""Uncertainty of report-card scores: percentile bootstrap intervals over images, and paired comparisons.

Each score of a method is a mean over the sampled images. Its 95% interval resamples the images with
replacement (``n_boot`` draws, seeded) and takes the 2.5th and 97.5th percentiles of the resampled means
(Efron's percentile interval). Two methods are compared on the SAME images: the interval of the mean of
the per-image differences ``a_i - b_i`` (images where either score is undefined are left out); when it
excludes 0 (and at least :data:`MIN_PAIRED` images were compared), one method beats the other on that
score at that level. Pairing removes the spread between
images that both methods share, so it separates methods that overlapping per-method intervals cannot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
MIN_PAIRED = 5  # fewer images give no verdict: a bootstrap of 2-4 values spans little more than their range


def resampled_means(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``[n_boot]`` means of ``values [n]`` resampled with replacement (seeded), drawn in blocks of at most about
    4 million indices (32 MB), so a whole-dataset card of 100,000 images needs no 1.6 GB index array."""
    v = np.asarray(values, dtype=np.float64)
    if n_boot < 1 or v.ndim != 1 or v.size == 0:
        raise ValueError(f"need n_boot >= 1 and a non-empty 1-D array, got {n_boot} and shape {v.shape}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 4_000_000 // v.size)  # resamples per block
    for s in range(0, n_boot, step):
        idx = rng.integers(0, v.size, size=(min(step, n_boot - s), v.size))  # [B, n]
        means[s:s + len(idx)] = v[idx].mean(axis=1)
    return means


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL,
                      seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the finite ``values [n]``: the percentile bootstrap interval of the mean.

    NaN everywhere when no value is finite; one value gives ``(v, v, v)``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size == 1:
        return mean, mean, mean
    lo, hi = np.quantile(resampled_means(v, n_boot, seed), [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return mean, float(lo), float(hi)


@dataclass(frozen=True)
class PairedComparison:
    """Method ``a`` against method ``b`` on one score, over the images where both are defined.

    Attributes:
        diff / low / high: mean of ``a_i - b_i`` and its bootstrap interval.
        n: images compared.
        winner: the better method when the interval excludes 0 (given the score's direction) on at least
            :data:`MIN_PAIRED` images, else None.
    """

    a: str
    b: str
    metric: str
    higher_is_better: bool
    n: int
    diff: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def winner(self) -> str | None:
        if self.n < MIN_PAIRED or not (self.low > 0 or self.high < 0):
            return None
        a_higher = self.low > 0
        return self.a if a_higher == self.higher_is_better else self.b

    def statement(self) -> str:
        """One sentence, e.g. ``"Grad-CAM beats Attention rollout on road: difference 0.031 [0.012, 0.050],
        the 95% interval excludes 0 (8 images)"``."""
        if not self.n:
            return f"{self.a} and {self.b} share no image where {self.metric} is defined"
        interval = f"difference {self.diff:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"
        pct = f"{self.level:.0%}"
        if self.n < MIN_PAIRED:
            return f"{self.a} vs {self.b} on {self.metric}: {interval}; too few images ({self.n}) for a verdict"
        if self.winner is None:
            return (f"{self.a} and {self.b} cannot be told apart on {self.metric}: {interval}, the {pct} interval "
                    f"includes 0 ({self.n} images)")
        loser = self.b if self.winner == self.a else self.a
        return f"{self.winner} beats {loser} on {self.metric}: {interval}, the {pct} interval excludes 0 ({self.n} images)"


def paired_comparison(a_values: np.ndarray, b_values: np.ndarray, *, a: str, b: str, metric: str,
                      higher_is_better: bool, n_boot: int = N_BOOT, level: float = LEVEL,
                      seed: int = 0) -> PairedComparison:
    """Compare two methods' per-image scores ``[n]`` (the same images in the same order)."""
    x = np.asarray(a_values, dtype=np.float64)
    y = np.asarray(b_values, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same images: {x.shape} vs {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    diff, lo, hi = bootstrap_mean_ci(d, n_boot, level, seed)
    return PairedComparison(a, b, metric, higher_is_better, int(ok.sum()), diff, lo, hi, level)
