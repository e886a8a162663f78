"""Intervals on the numbers a reader compares: Wilson intervals on accuracies (core.classify.intervals and the
results that carry them) and the paired bootstrap verdict of a saliency score against its control
(core.explain.verdict)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap, norm

from core.classify.evaluation import evaluate, few_shot_curve
from core.classify.intervals import wilson_interval
from core.classify.tables import eval_summary, evaluate_shots
from core.explain.verdict import MIN_PAIRS, against_control, control_verdicts, paired_bootstrap


def _statsmodels_wilson(count: float, nobs: float, alpha: float = 0.05) -> tuple[float, float]:
    """statsmodels.stats.proportion.proportion_confint(method="wilson"), written out."""
    q = count / nobs
    crit = norm.isf(alpha / 2.0)
    crit2 = crit ** 2
    denom = 1.0 + crit2 / nobs
    center = (q + crit2 / (2 * nobs)) / denom
    dist = crit * np.sqrt(q * (1.0 - q) / nobs + crit2 / (4.0 * nobs ** 2)) / denom
    return center - dist, center + dist


@pytest.mark.parametrize("n", [1, 5, 8, 16, 37, 1000])
def test_wilson_matches_scipy_and_statsmodels(n):
    for k in range(0, n + 1, max(1, n // 9)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k, n)
        assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
        assert (lo, hi) == pytest.approx(_statsmodels_wilson(k, n), abs=1e-12)
    ref = binomtest(3, 8).proportion_ci(confidence_level=0.9, method="wilson")
    assert wilson_interval(3, 8, 0.9) == pytest.approx((ref.low, ref.high), abs=1e-12)
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)


def _blobs(n_per=12, k=4, d=8, seed=0, spread=2.0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n_per, d)) + spread * rng.normal(size=d) for _ in range(k)])
    y = np.repeat(np.array([f"c{i}" for i in range(k)]), n_per)
    return X.astype(np.float32), y


def test_accuracies_carry_their_wilson_interval():
    X, y = _blobs()
    res = evaluate(X, y, "nmc", seed=1)
    k = int(np.sum(res.y_pred == res.y_true))
    assert res.n_correct == k and (res.ci_low, res.ci_high) == wilson_interval(k, res.n_test)
    assert res.ci_low <= res.accuracy <= res.ci_high
    out = eval_summary(res)
    assert (out["ci_low"], out["ci_high"], out["n_correct"]) == (res.ci_low, res.ci_high, k)
    rows = few_shot_curve(X, y, shots=(1, 3), methods=("nmc",), draws=3)
    for r in rows:
        assert r.n_test == len(y) - r.shots * 4  # every image not drawn for training
        assert (r.ci_low, r.ci_high) == pytest.approx(wilson_interval(r.mean_acc * r.n_test, r.n_test))
    se = evaluate_shots(X, y, "nmc", 3, draws=3)
    assert (se.ci_low, se.ci_high) == pytest.approx((rows[1].ci_low, rows[1].ci_high))


def test_paired_bootstrap_against_the_loop_written_out_and_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(0.40, 0.05, size=24)
    b = a + rng.normal(0.02, 0.03, size=24)
    diff, lo, hi = paired_bootstrap(a, b, n_boot=4000, seed=7)
    d = a - b
    g = np.random.default_rng(7)
    means = d[g.integers(0, 24, size=(4000, 24))].mean(axis=1)  # the same draws, one block
    assert diff == pytest.approx(d.mean()) and (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    ref = bootstrap((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), paired=True, n_resamples=4000,
                    method="percentile", random_state=1).confidence_interval
    sd = d.std() / np.sqrt(len(d))
    assert abs(lo - ref.low) < 0.2 * sd and abs(hi - ref.high) < 0.2 * sd


def test_verdicts_against_the_random_map():
    rng = np.random.default_rng(0)
    random_map = rng.uniform(0.40, 0.48, size=12)
    # deletion AUC, lower is better: clearly lower, about equal, clearly higher
    good = against_control(random_map - 0.05 + rng.normal(0, 0.01, 12), random_map, method="Grad-CAM",
                           metric="deletion_auc", higher_is_better=False)
    assert good.outcome == "better" and good.ci_high < 0
    assert good.sentence.startswith("Grad-CAM beats the random map on deletion (lower is better)") and "excludes 0" in good.sentence
    same = against_control(random_map + rng.normal(0, 0.03, 12), random_map, method="Grad-CAM", metric="deletion_auc",
                           higher_is_better=False)
    assert same.outcome == "indistinguishable" and same.ci_low < 0 < same.ci_high
    assert "cannot be told apart from the random map" in same.sentence and "includes 0" in same.sentence
    worse = against_control(random_map + 0.05, random_map, method="EigenCAM", metric="deletion_auc", higher_is_better=False)
    assert worse.outcome == "worse" and worse.sentence.startswith("EigenCAM does worse than the random map")
    ins = against_control(random_map + 0.05, random_map, method="EigenCAM", metric="insertion_auc", higher_is_better=True)
    assert ins.outcome == "better"
    few = against_control([0.1, np.nan, 0.2], [0.3, 0.3, np.nan], method="m", metric="road", higher_is_better=True)
    assert few.outcome == "indistinguishable" and few.n == 1 < MIN_PAIRS and "only 1 image" in few.sentence


def test_control_verdicts_over_a_report_card_table():
    rng = np.random.default_rng(1)
    ctrl = {"deletion_auc": list(rng.uniform(0.4, 0.5, 8)), "insertion_auc": list(rng.uniform(0.4, 0.5, 8)),
            "pointing_game": [np.nan] * 8}
    scores = {"Grad-CAM": {"deletion_auc": [v - 0.1 for v in ctrl["deletion_auc"]],
                           "insertion_auc": [v + 0.001 * (-1) ** i for i, v in enumerate(ctrl["insertion_auc"])],
                           "pointing_game": [np.nan] * 8},
              "Random map (baseline)": ctrl}
    hib = {"deletion_auc": False, "insertion_auc": True, "pointing_game": True}
    out = control_verdicts(scores, hib, "Random map (baseline)")
    assert [(v.method, v.metric, v.outcome) for v in out] == [("Grad-CAM", "deletion_auc", "better"),
                                                              ("Grad-CAM", "insertion_auc", "indistinguishable")]
    with pytest.raises(KeyError, match="control"):
        control_verdicts(scores, hib, "nope")


# ---- paired accuracies: McNemar's exact test, and the Compare table's verdicts ------------------------------
def _mcnemar_by_formula(b: int, c: int) -> float:
    """The exact two-sided McNemar p-value written out: 2 * sum_{i <= min(b, c)} C(b + c, i) / 2^(b + c), at most 1."""
    from math import comb

    n = b + c
    return 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n)


@pytest.mark.parametrize("b,c", [(0, 0), (3, 0), (0, 7), (5, 5), (12, 3), (40, 61), (600, 520)])
def test_mcnemar_exact_matches_the_formula_and_scipy(b, c):
    from core.classify.intervals import mcnemar_exact

    both, neither = 9, 4  # concordant pairs do not enter the test
    a = np.array([True] * b + [False] * c + [True] * both + [False] * neither)
    bb = np.array([False] * b + [True] * c + [True] * both + [False] * neither)
    rng = np.random.default_rng(b * 1000 + c)
    order = rng.permutation(len(a))
    got = mcnemar_exact(a[order], bb[order])
    assert got[:2] == (b, c)
    assert got[2] == pytest.approx(_mcnemar_by_formula(b, c), rel=1e-9)
    if b + c:
        assert got[2] == pytest.approx(binomtest(b, b + c).pvalue, rel=1e-9)
    with pytest.raises(ValueError):
        mcnemar_exact(a, bb[:-1])


def test_accuracy_verdicts_are_paired_over_the_same_test_images():
    """Two sources on one split: nearly the same errors tell 0.90 from 0.80 apart (McNemar), though their
    Wilson intervals overlap; a third source erring on other images at 0.85 cannot be told apart from 0.90."""
    from core.compare.metrics import FeatureMetrics, accuracy_verdicts, source_row

    rng = np.random.default_rng(0)
    n_class, per = 4, 100
    y = np.repeat(np.arange(n_class), per)
    centres = rng.normal(size=(n_class, 32)) * 3
    X = centres[y] + rng.normal(size=(len(y), 32)) * 3.2
    fm = FeatureMetrics({m: evaluate(X, y, m) for m in ("nmc", "knn", "linear")}, {}, 0.0)
    row = source_row("a", X, y, fm)
    ev = fm.evals["nmc"]
    lo, hi = wilson_interval(ev.n_correct, ev.n_test)
    assert row.accuracy_ci["nmc"] == (lo, hi) and row.as_dict()["nmc_accuracy_low"] == lo
    T = ev.n_test
    idx, correct = row.test_correct["nmc"]
    assert np.array_equal(idx, ev.test_indices) and correct.sum() == ev.n_correct
    verdicts = accuracy_verdicts([row, source_row("b", X, y, fm)])  # the same source twice: never apart
    assert len(verdicts) == 3 and all("cannot be told apart" in v and "McNemar p = 1" in v for v in verdicts)

    def fake(name: str, correct: np.ndarray):
        r = source_row(name, X, y, fm)
        return r.__class__(**{**r.__dict__, "nmc_accuracy": correct.mean(), "test_correct": {"nmc": (idx, correct)}})

    base = np.zeros(T, dtype=bool)
    base[: int(0.9 * T)] = True  # 0.90
    worse = base.copy()
    worse[: int(0.1 * T)] = False  # 0.80: a subset of base's hits, the same errors and more
    other = np.roll(base, int(0.15 * T))  # 0.90 shifted: errors elsewhere
    other[np.flatnonzero(other)[: int(0.05 * T)]] = False  # 0.85
    a_lo, _ = wilson_interval(base.sum(), T)
    _, w_hi = wilson_interval(worse.sum(), T)
    assert w_hi > a_lo  # the intervals overlap ...
    (v,) = accuracy_verdicts([fake("worse", worse), fake("best", base)])
    assert v.startswith("NMC: best is more accurate than worse")  # ... but the pairs tell them apart
    (v,) = accuracy_verdicts([fake("best", base), fake("other", other)])
    assert v.startswith("NMC: the best two, best and other, cannot be told apart")
    shifted = fake("shifted", base)
    shifted = shifted.__class__(**{**shifted.__dict__, "test_correct": {"nmc": (idx[::-1], base)}})
    assert accuracy_verdicts([fake("best", base), shifted]) == []  # other test images: no pairs, no verdict
