"""A saliency score against its control, in one line: does the method beat the random map, or can the two
not be told apart?

Both maps are scored on the same images (or steps), so the comparison is paired: the mean of the
per-image differences ``method - control`` with a percentile bootstrap interval over the pairs (images
drawn with replacement, ``n_boot`` times). The method **beats** the control when the interval lies
wholly on the better side of 0 (below for a lower-is-better score such as deletion AUC, above for
insertion AUC or ROAD), is **worse** when it lies wholly on the other side, and **cannot be told apart**
when it holds 0 (or fewer than :data:`MIN_PAIRS` pairs are finite).

Plain arrays in, a :class:`ControlVerdict` out: the report card (:mod:`core.explain.report`), the Saliency
page and the CLI can all call it. Nothing here imports torch or Streamlit.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from core.explain.report_stats import bootstrap_mean_ci

__all__ = ["MIN_PAIRS", "Outcome", "ControlVerdict", "paired_bootstrap", "against_control", "control_verdicts"]

MIN_PAIRS = 3  # fewer finite pairs than this: no verdict but "cannot be told apart"
Outcome = Literal["better", "worse", "indistinguishable"]
METRIC_LABELS: dict[str, str] = {"deletion_auc": "deletion", "insertion_auc": "insertion", "road": "ROAD",
                                 "mprt_spearman": "the randomisation test (Spearman)",
                                 "mprt_ssim": "the randomisation test (SSIM)", "pointing_game": "the pointing game",
                                 "relevance_mass": "relevance mass"}


@dataclass(frozen=True)
class ControlVerdict:
    """One method against the control on one score.

    Attributes:
        method / control: names; metric: the score's name.
        higher_is_better: the score's direction.
        mean / control_mean: the two means over the paired images.
        difference: mean of ``method - control`` over the pairs.
        ci_low / ci_high: its percentile bootstrap interval (``confidence``).
        n: finite pairs used.
        outcome: ``"better"``, ``"worse"`` or ``"indistinguishable"``.
        sentence: the one-line verdict for the page.
    """

    method: str
    control: str
    metric: str
    higher_is_better: bool
    mean: float
    control_mean: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    outcome: Outcome
    sentence: str


def paired_bootstrap(a: ArrayLike, b: ArrayLike, *, n_boot: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """``(mean difference, low, high)``: the mean of ``a - b`` over pairs ``[n]`` and its percentile bootstrap
    interval (:func:`core.explain.report_stats.bootstrap_mean_ci` of the differences: pairs resampled with
    replacement ``n_boot`` times, ``numpy.quantile`` of the resampled means).

    Raises:
        ValueError: shapes differ, no pair, a non-finite value, or bad ``n_boot`` / ``confidence``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be 1-D of the same length, got {a.shape} and {b.shape}")
    if len(a) == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired_bootstrap needs at least one pair of finite scores")
    if n_boot < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n_boot >= 1 and confidence in (0, 1), got {n_boot} and {confidence}")
    return bootstrap_mean_ci(a - b, n_boot, confidence, seed)


def against_control(scores: ArrayLike, control: ArrayLike, *, method: str, metric: str, higher_is_better: bool,
                    control_name: str = "the random map", n_boot: int = 2000, confidence: float = 0.95,
                    seed: int = 0) -> ControlVerdict:
    """The verdict of ``scores [n]`` against ``control [n]`` (same images, same order; NaN pairs dropped).

    Example sentence: "Grad-CAM beats the random map on deletion (lower is better): 0.415 vs 0.437,
    difference -0.022 (95 % interval -0.041 to -0.004, excludes 0; 8 images)."
    """
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"{method} and {control_name}: scores must be 1-D of the same length, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b, n = a[ok], b[ok], int(ok.sum())
    label = METRIC_LABELS.get(metric, metric)
    how = "higher" if higher_is_better else "lower"
    if n < MIN_PAIRS:
        nan = float("nan")
        means = (float(a.mean()), float(b.mean())) if n else (nan, nan)
        return ControlVerdict(method, control_name, metric, higher_is_better, *means, nan, nan, nan, confidence, n,
                              "indistinguishable", f"{method} cannot be told apart from {control_name} on {label}: "
                              f"only {n} image{'' if n == 1 else 's'} scored by both (at least {MIN_PAIRS} needed).")
    diff, lo, hi = paired_bootstrap(a, b, n_boot=n_boot, confidence=confidence, seed=seed)
    outcome: Outcome
    if lo <= 0.0 <= hi:
        outcome = "indistinguishable"
    elif (lo > 0.0) == higher_is_better:
        outcome = "better"
    else:
        outcome = "worse"
    verb = {"better": "beats", "worse": "does worse than", "indistinguishable": "cannot be told apart from"}[outcome]
    holds = "includes 0" if outcome == "indistinguishable" else "excludes 0"
    sentence = (f"{method} {verb} {control_name} on {label} ({how} is better): {a.mean():.3f} vs {b.mean():.3f}, "
                f"difference {diff:+.3f} ({100 * confidence:g} % interval {lo:+.3f} to {hi:+.3f}, {holds}; "
                f"{n} image{'' if n == 1 else 's'}).")
    return ControlVerdict(method, control_name, metric, higher_is_better, float(a.mean()), float(b.mean()), diff, lo,
                          hi, confidence, n, outcome, sentence)


def control_verdicts(scores: Mapping[str, Mapping[str, Sequence[float]]], higher_is_better: Mapping[str, bool],
                     control: str, *, metrics: Sequence[str] | None = None, control_name: str = "the random map",
                     n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> list[ControlVerdict]:
    """Every method of a table against its control, one :class:`ControlVerdict` per (method, metric).

    Args:
        scores: ``{method: {metric: [value per image]}}``, the shape of ``ReportCard.scores`` (NaN where a
            score does not apply); ``control`` must be one of the methods.
        higher_is_better: ``{metric: bool}`` (e.g. ``core.explain.report.HIGHER_IS_BETTER``).
        control: the control's key in ``scores`` (e.g. ``core.explain.methods.RANDOM``).
        metrics: which scores (default: every metric of ``higher_is_better`` the control has).

    Raises:
        KeyError: ``control`` is not in ``scores``.
    """
    if control not in scores:
        raise KeyError(f"the control {control!r} is not among the scored methods {list(scores)}")
    ref = scores[control]
    metrics = [m for m in higher_is_better if m in ref] if metrics is None else list(metrics)
    out = []
    for method, per in scores.items():
        if method == control:
            continue
        for m in metrics:
            if m in per and m in ref and np.any(np.isfinite(np.asarray(per[m], dtype=np.float64))):
                out.append(against_control(per[m], ref[m], method=method, metric=m, higher_is_better=higher_is_better[m],
                                           control_name=control_name, n_boot=n_boot, confidence=confidence, seed=seed))
    return out
