"""Evaluation views built on :mod:`core.classify.evaluation`: the numbers the Prototypes page and
``backbone-lens evaluate`` show, computed by the same functions for both.

Thin by design: every accuracy comes from ``core.classify.evaluation`` (``evaluate``, ``few_shot_curve``),
``core.classify.teen`` (``teen_experiment``) or ``core.classify.zeroshot`` (``zero_shot``); this module
only repeats, summarises and tabulates.
Nothing here imports Streamlit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from core.classify.classifiers import check_classifier, classifier_info, classifier_names
from core.classify.evaluation import EvalResult, evaluate, few_shot_curve
from core.classify.intervals import wilson_interval
from core.classify.prototypes import class_prototypes
from core.classify.teen import teen_experiment, teen_experiments
from core.classify.zeroshot import zero_shot
from core.geometry.vectors import Metric, distances

__all__ = [
    "method_label", "classifier_kwargs", "evaluate_all", "evaluate_methods", "train_indices", "eval_summary",
    "ShotEval", "evaluate_shots", "nearest_wrong_prototypes", "prototype_exemplars",
    "class_sorted_order", "teen_repeated", "teen_alpha_sweep", "zero_shot_mix_curve", "TwoRegimes", "two_regimes",
]

def method_label(method: str) -> str:
    """Human name of a registered classifier (its registry label)."""
    return classifier_info(method).label


def classifier_kwargs(method: str, metric: Metric) -> dict[str, Any]:
    """Keyword arguments for :func:`core.classify.classifiers.make_classifier`: the metric only applies to NMC."""
    check_classifier(method)
    return {"metric": metric} if method == "nmc" else {}


def evaluate_all(
    X: ArrayLike, y: ArrayLike, methods: Sequence[str] | None = None, *, metric: Metric = "cosine",
    test_size: float = 0.3, seed: int = 0,
) -> list[EvalResult]:
    """:func:`core.classify.evaluation.evaluate` for each method (default: every registered one) on the
    same split (same seed)."""
    methods = classifier_names() if methods is None else methods
    return [evaluate(X, y, m, test_size=test_size, seed=seed, **classifier_kwargs(m, metric)) for m in methods]


def evaluate_methods(
    X: ArrayLike, y: ArrayLike, methods: Sequence[str] | None = None, *, metric: Metric = "cosine",
    test_size: float = 0.3, seed: int = 0,
) -> tuple[list[EvalResult], dict[str, str]]:
    """Like :func:`evaluate_all`, but a method that cannot be fitted on this set (e.g. LDA or FeCAM with
    a one-image class) is reported instead of stopping the others.

    Returns:
        ``(results, not_run)``: the results of the methods that ran, in order, and
        ``{method: reason}`` for the others.
    """
    methods = classifier_names() if methods is None else methods
    results, not_run = [], {}
    for m in methods:
        try:
            results.append(evaluate(X, y, m, test_size=test_size, seed=seed, **classifier_kwargs(m, metric)))
        except ValueError as e:
            not_run[m] = str(e)
    return results, not_run


def train_indices(res: EvalResult, n: int) -> np.ndarray:
    """Rows of ``X`` the classifier of ``res`` was trained on (``n`` = rows of ``X``).

    ``"split"``: the complement of the test rows; ``"loo"`` and ``"given"``: every row of ``X``
    (for leave-one-out each fold leaves its own test image out).
    """
    if res.protocol == "split":
        return np.setdiff1d(np.arange(n), res.test_indices)
    return np.arange(n)


def eval_summary(res: EvalResult, **extra: Any) -> dict[str, Any]:
    """A JSON-ready dict of an :class:`EvalResult` (plus ``extra`` fields first)."""
    return {
        **extra,
        "method": res.method,
        "protocol": res.protocol,
        "accuracy": res.accuracy,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
        "n_correct": res.n_correct,
        "n_train": res.n_train,
        "n_test": res.n_test,
        "classes": [str(c) for c in res.classes],
        "confusion": res.confusion.tolist(),
    }


@dataclass(frozen=True)
class ShotEval:
    """Accuracy with ``shots`` training images per class, averaged over random draws.

    Attributes:
        method: classifier name.
        shots: training images per class.
        accuracy / accuracy_std: mean and std over draws.
        draws: number of draws.
        n_train: training images per draw (``shots * classes``).
        n_test: test images per draw.
        protocol: ``"few-shot"`` (the rest of the set is the test set, :func:`few_shot_curve`) or
            ``"few-shot/given"`` (an explicit test set).
        ci_low / ci_high: 95 % Wilson interval of ``accuracy`` as a proportion of one draw's ``n_test``
            images (properties; the reasoning of :class:`core.classify.evaluation.FewShotRow`).
    """

    method: str
    shots: int
    accuracy: float
    accuracy_std: float
    draws: int
    n_train: int
    n_test: int
    protocol: str

    @property
    def ci_low(self) -> float:
        return wilson_interval(self.accuracy * self.n_test, self.n_test)[0]

    @property
    def ci_high(self) -> float:
        return wilson_interval(self.accuracy * self.n_test, self.n_test)[1]


def evaluate_shots(
    X: ArrayLike, y: ArrayLike, method: str, shots: int, *, draws: int = 10, seed: int = 0,
    X_test: ArrayLike | None = None, y_test: ArrayLike | None = None, metric: Metric = "cosine",
) -> ShotEval:
    """``shots`` random training images per class, ``draws`` times.

    Without a test set this is one point of :func:`core.classify.evaluation.few_shot_curve` (the other
    images are the test set; cosine NMC). With ``X_test, y_test`` every draw trains on its
    subset of ``X`` and is scored by :func:`core.classify.evaluation.evaluate` on the test set; the draws
    of a shot value are seeded by ``(seed, shots)`` as in ``few_shot_curve``.

    Raises:
        ValueError: some class has too few images for ``shots`` (the message names it), or a
            Euclidean NMC is asked for without a test set (``few_shot_curve`` is cosine).
    """
    y = np.asarray(y)
    if shots < 1 or draws < 1:
        raise ValueError(f"shots and draws must be >= 1, got shots={shots}, draws={draws}")
    kw = classifier_kwargs(method, metric)
    need = classifier_info(method).min_shots
    if shots < need:
        raise ValueError(f"{method_label(method)} needs at least {need} training images per class; use --shots {need} "
                         "or more")
    classes, counts = np.unique(y, return_counts=True)
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is None:
        if kw.get("metric", "cosine") != "cosine":
            raise ValueError("the few-shot curve uses cosine NMC; give a test set to use a Euclidean NMC with shots")
        small = classes[counts <= shots]
        if len(small):
            raise ValueError(f"shots={shots} leaves no test image in class {str(small[0])!r} ({counts[classes == small[0]][0]} "
                             f"images); use fewer shots than the smallest class ({counts.min()}) or give a test set")
        rows = few_shot_curve(X, y, shots=[shots], methods=[method], draws=draws, seed=seed)
        r = rows[0]
        return ShotEval(method, shots, r.mean_acc, r.std_acc, r.n_draws, shots * len(classes),
                        len(y) - shots * len(classes), "few-shot")
    small = classes[counts < shots]
    if len(small):
        raise ValueError(f"class {str(small[0])!r} has only {counts[classes == small[0]][0]} training images, "
                         f"fewer than shots={shots}")
    X = np.asarray(X)
    per_class = [np.flatnonzero(y == c) for c in classes]
    rng = np.random.default_rng([seed, shots])
    accs, n_test = [], 0
    for _ in range(draws):
        sub = np.concatenate([rng.choice(p, shots, replace=False) for p in per_class])  # [K * shots]
        res = evaluate(X[sub], y[sub], method, X_test=X_test, y_test=y_test, **kw)
        accs.append(res.accuracy)
        n_test = res.n_test
    return ShotEval(method, shots, float(np.mean(accs)), float(np.std(accs)), draws, shots * len(classes), n_test,
                    "few-shot/given")


def nearest_wrong_prototypes(
    X: ArrayLike, y_true: ArrayLike, classes: ArrayLike, P: ArrayLike, metric: Metric = "cosine",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each image, the closest prototype of another class.

    Args:
        X: ``[M, D]`` images.
        y_true: ``[M]`` their labels (each must be in ``classes``).
        classes: ``[K]`` prototype labels; P: ``[K, D]`` prototypes.
        metric: distance.

    Returns:
        ``(wrong_label [M], d_wrong [M], d_own [M])``.
    """
    classes = np.asarray(classes)
    y_true = np.asarray(y_true)
    missing = ~np.isin(y_true, classes)
    if missing.any():
        raise ValueError(f"label {str(y_true[missing][0])!r} has no prototype")
    Dm = distances(X, P, metric)  # [M, K]
    pos = {c: i for i, c in enumerate(classes.tolist())}
    own = np.array([pos[c] for c in y_true.tolist()], dtype=np.int64)  # [M] column of the true class
    rows = np.arange(len(Dm))
    d_own = Dm[rows, own]
    Dm[rows, own] = np.inf
    j = np.argmin(Dm, axis=1)
    return classes[j], Dm[rows, j], d_own


def prototype_exemplars(X: ArrayLike, y: ArrayLike, classes: ArrayLike, P: ArrayLike,
                        metric: Metric = "cosine") -> np.ndarray:
    """``[K]`` row of ``X`` of each class that lies nearest its class prototype (a picture to stand
    for a mean that has none)."""
    y = np.asarray(y)
    Dm = distances(X, P, metric)  # [N, K]
    out = []
    for k, c in enumerate(np.asarray(classes)):
        rows = np.flatnonzero(y == c)
        if len(rows) == 0:
            raise ValueError(f"class {c!r} has no image in X")
        out.append(int(rows[np.argmin(Dm[rows, k])]))
    return np.asarray(out)


def class_sorted_order(labels: Sequence[str]) -> np.ndarray:
    """Row order that groups images by class (stable: keeps the input order within a class)."""
    return np.argsort(np.asarray(labels), kind="stable")


def teen_repeated(
    X: ArrayLike, y: ArrayLike, base_classes: Sequence[Any], k_shot: int = 1, alpha: float = 0.5,
    tau: float = 16.0, *, draws: int = 10, seed: int = 0, test_size: float = 0.3,
) -> pd.DataFrame:
    """:func:`core.classify.teen.teen_experiment` over ``draws`` seeds (``seed .. seed+draws-1``): every
    draw has its own split and shots, shared by the plain and the calibrated prototypes.

    Returns:
        rows ``prototypes`` (``"plain"`` / ``"TEEN"``), ``classes`` (``"base"`` / ``"new"`` /
        ``"all"``), ``mean``, ``std`` of the accuracy over draws.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    runs = [teen_experiment(X, y, base_classes, k_shot, alpha, tau, seed=seed + d, test_size=test_size)
            for d in range(draws)]
    rows = []
    for key, name in (("plain", "plain"), ("calibrated", "TEEN")):
        for part in ("base", "new", "all"):
            a = np.array([r[key][part] for r in runs])
            rows.append({"prototypes": name, "classes": part, "mean": float(a.mean()), "std": float(a.std())})
    return pd.DataFrame(rows)


def teen_alpha_sweep(
    X: ArrayLike, y: ArrayLike, base_classes: Sequence[Any], k_shot: int = 1, tau: float = 16.0,
    alphas: Sequence[float] = tuple(np.round(np.linspace(0, 1, 11), 2)), *, draws: int = 5, seed: int = 0,
    test_size: float = 0.3,
) -> pd.DataFrame:
    """TEEN accuracy as a function of the fusion weight ``alpha`` (``alpha = 1``: no calibration).

    Returns:
        rows ``alpha``, ``classes`` (base / new / all), ``mean``, ``std``.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    # one draw (split, shots, base prototypes) serves every alpha: the draws of teen_repeated's seeds
    runs = [teen_experiments(X, y, base_classes, k_shot, [float(a) for a in alphas], tau, seed=seed + d,
                             test_size=test_size) for d in range(draws)]  # [draws][alphas]
    rows = []
    for i, a in enumerate(alphas):
        for part in ("base", "new", "all"):
            acc = np.array([run[i]["calibrated"][part] for run in runs])
            rows.append({"alpha": float(a), "classes": part, "mean": float(acc.mean()), "std": float(acc.std())})
    return pd.DataFrame(rows)


def zero_shot_mix_curve(
    image_emb: ArrayLike, y: ArrayLike, classes: Sequence[str], text_protos: ArrayLike,
    mixes: Sequence[float] = tuple(np.round(np.linspace(0, 1, 11), 2)), *, test_size: float = 0.3, seed: int = 0,
) -> tuple[pd.DataFrame, EvalResult]:
    """Accuracy of text prototypes, image prototypes and their blends on one held-out split.

    The split is the one :func:`core.classify.evaluation.evaluate` draws for cosine NMC (same ``test_size``
    and ``seed`` as the Classifiers view); image prototypes are the class means of its training
    part, and every blend ``mix_prototypes(text, image, mix)`` is scored on its test part
    (:func:`core.classify.zeroshot.zero_shot`; ``mix = 0``: text only, the zero-shot classifier;
    ``mix = 1``: image prototypes only, i.e. cosine NMC).

    Args:
        image_emb: ``[N, D]`` image embeddings in the text tower's space.
        y: ``[N]`` labels; classes: ``[K]`` the sorted labels, in text-prototype order.
        text_protos: ``[K, D]`` (e.g. :func:`core.classify.zeroshot.prompt_prototypes`).

    Returns:
        ``(curve, nmc)``: rows ``mix``, ``accuracy``, ``n_test``; and the cosine-NMC evaluation
        that fixed the split.

    Raises:
        ValueError: the set is too small for a hold-out split (leave-one-out protocol).
    """
    E = np.asarray(image_emb)
    y = np.asarray(y)
    class_arr = np.asarray(classes)
    if not np.array_equal(class_arr, np.unique(y)):
        raise ValueError("classes must be the sorted unique labels of y (the text-prototype order)")
    nmc = evaluate(E, y, "nmc", test_size=test_size, seed=seed, metric="cosine")
    if nmc.protocol != "split":
        raise ValueError("too few images for a hold-out split (needs 20 images and 3 per class); "
                         "image and mixed prototypes need one")
    tr, te = train_indices(nmc, len(E)), nmc.test_indices
    _, P_img = class_prototypes(E[tr], y[tr])  # [K, D] in sorted class order
    rows = []
    for m in mixes:
        pred = class_arr[zero_shot(E[te], text_protos, P_img, float(m))]
        rows.append({"mix": float(m), "accuracy": float(np.mean(pred == y[te])), "n_test": len(te)})
    return pd.DataFrame(rows), nmc


@dataclass(frozen=True)
class TwoRegimes:
    """Where the generative and the discriminative few-shot curves cross (Ng & Jordan 2001; Zheng et al. 2023),
    told apart from noise by the curves' 95 % intervals.

    Attributes:
        shots: ``[S]`` shot values both methods have.
        generative / discriminative: ``[S]`` mean accuracies (e.g. ``nb`` and ``linear``).
        generative_ci / discriminative_ci: ``[S, 2]`` their 95 % intervals (``ci_low``, ``ci_high`` of the rows).
        separated: ``[S]`` +1 where the generative interval lies wholly above the discriminative one, -1
            where below, 0 where they overlap (the two cannot be told apart at that shot value).
        crossing: shots where the curves cross, interpolated linearly in ``log(shots)``, ONLY when one
            method is ahead beyond the intervals at some shot value and the other at a later one; else
            ``None`` (draw nothing).
        crossing_accuracy: the accuracy there (``None`` without a crossing).
        mean_crossing: where the mean curves cross after the first mean lead of more than ``tie`` (linear
            in ``log(shots)``), whether or not the intervals separate (for the sentence; ``None`` if they
            do not cross).
        pattern: ``"both"`` (generative ahead first, discriminative later: the two regimes),
            ``"generative"`` (only the generative one is ever clearly ahead), ``"discriminative"`` (only the
            discriminative one), ``"reversed"`` (discriminative clearly ahead first, generative later),
            ``"indistinguishable"`` (the intervals overlap at every shot value) or ``"undetermined"``
            (fewer than two shared shot values).
        sentence: one sentence: the paper's finding and whether these curves show it.
    """

    shots: np.ndarray
    generative: np.ndarray
    discriminative: np.ndarray
    generative_ci: np.ndarray
    discriminative_ci: np.ndarray
    separated: np.ndarray
    crossing: float | None
    crossing_accuracy: float | None
    mean_crossing: float | None
    pattern: str
    sentence: str


PAPER_FINDING = ("Zheng et al. (2023) found that on frozen pre-trained features naive Bayes nears its best accuracy "
                 "with far fewer training images than logistic regression, so it leads with few shots and logistic "
                 "regression catches up or overtakes it as shots grow")
NO_CROSSING = "no crossing can be told apart at this sample size"


def _log_crossing(ks: np.ndarray, diff: np.ndarray, acc: np.ndarray, i: int) -> tuple[float, float]:
    """Where ``diff`` reaches 0 between shot values ``i`` and ``i + 1``, linear in ``log(shots)``: ``(shots, acc)``."""
    t = diff[i] / (diff[i] - diff[i + 1])  # in [0, 1]
    lk = np.log(ks[i]) + t * (np.log(ks[i + 1]) - np.log(ks[i]))
    return float(np.exp(lk)), float(acc[i] + t * (acc[i + 1] - acc[i]))


def _shot_list(ks: np.ndarray) -> str:
    return f"{', '.join(map(str, ks))} shot{'' if list(ks) == [1] else 's'}"


def two_regimes(rows: Sequence[Any], generative: str = "nb", discriminative: str = "linear",
                tie: float = 0.01) -> TwoRegimes:
    """Compare two few-shot curves (rows of :func:`core.classify.evaluation.few_shot_curve`).

    One method is "ahead" at a shot value only where its 95 % interval lies wholly above the other's
    (:class:`core.classify.evaluation.FewShotRow`: Wilson intervals over one draw's test images); a
    crossing is marked only between a shot value where one is ahead so and a later one where the other
    is. Otherwise the sentence says "no crossing can be told apart at this sample size", and names where
    the mean curves cross, if they do.

    Args:
        rows: objects with ``method``, ``shots``, ``mean_acc``, ``ci_low`` and ``ci_high``.
        generative / discriminative: the two method names.
        tie: for ``mean_crossing`` only: a mean gap at or below this (one point) counts as level.

    Returns:
        a :class:`TwoRegimes`.
    """
    g = {r.shots: r for r in rows if r.method == generative}
    d = {r.shots: r for r in rows if r.method == discriminative}
    ks = np.array(sorted(set(g) & set(d)), dtype=np.int64)
    ga = np.array([g[k].mean_acc for k in ks], dtype=np.float64)
    da = np.array([d[k].mean_acc for k in ks], dtype=np.float64)
    gci = np.array([[g[k].ci_low, g[k].ci_high] for k in ks], dtype=np.float64).reshape(-1, 2)  # [S, 2]
    dci = np.array([[d[k].ci_low, d[k].ci_high] for k in ks], dtype=np.float64).reshape(-1, 2)
    short = {"nb": "naive Bayes", "nb_per_class": "per-class naive Bayes", "linear": "logistic regression",
             "linear_svm": "the linear SVM"}
    gn, dn = short.get(generative, method_label(generative)), short.get(discriminative, method_label(discriminative))
    sep = np.where(gci[:, 0] > dci[:, 1], 1, np.where(dci[:, 0] > gci[:, 1], -1, 0))  # [S]
    if len(ks) < 2:
        return TwoRegimes(ks, ga, da, gci, dci, sep, None, None, None, "undetermined",
                          f"{PAPER_FINDING}; pick at least two shot values to see whether this dataset and backbone "
                          "show it.")
    diff = ga - da  # [S] > 0: generative ahead on average
    mean_crossing = None  # the mean curves: gaps within ``tie`` are level, the first lead decides the direction
    mean_sign = np.where(diff > tie, 1, np.where(diff < -tie, -1, 0))
    if np.any(mean_sign != 0):
        lead = int(mean_sign[mean_sign != 0][0])
        start = int(np.flatnonzero(mean_sign == lead)[0])
        flips = [i for i in range(start, len(ks) - 1) if diff[i] * lead > 0 >= diff[i + 1] * lead]
        mean_crossing = _log_crossing(ks, diff, ga, flips[0])[0] if flips else None
    leads = sep[sep != 0]
    first = int(leads[0]) if len(leads) else 0
    crossing = crossing_acc = None
    if first != 0 and np.any(leads == -first):
        j = int(np.flatnonzero(sep == -first)[0])  # the first clear lead of the other method
        i = int(np.flatnonzero(sep[:j] == first)[-1])  # the last clear lead of the first one before it
        m = i + int(np.flatnonzero(diff[i:j] * first > 0)[-1])  # the mean gap changes sign after m
        crossing, crossing_acc = _log_crossing(ks, diff, ga, m)
    n_test = list(dict.fromkeys(int(g[k].n_test) for k in ks if hasattr(g[k], "n_test")))
    size = f" ({'/'.join(map(str, n_test))} test images per draw)" if n_test else ""
    means = (f"; the mean curves cross near {mean_crossing:.1f} shots, inside the intervals" if mean_crossing is not None
             else "")
    ahead = {1: _shot_list(ks[sep == 1]), -1: _shot_list(ks[sep == -1])}
    if first == 1 and crossing is not None:
        pattern = "both"
        here = (f"here {gn} is ahead beyond the 95 % intervals at {ahead[1]} and {dn} at {ahead[-1]}: they cross at about "
                f"{crossing:.1f} shots, so both regimes show")
    elif first == -1 and crossing is not None:
        pattern = "reversed"
        here = (f"here {dn} is ahead beyond the 95 % intervals at {ahead[-1]} and {gn} only at {ahead[1]}: they cross at "
                f"about {crossing:.1f} shots, the reverse of the paper's pattern")
    elif first == 1:
        pattern = "generative"
        here = (f"here {gn} is ahead beyond the 95 % intervals at {ahead[1]} and never clearly behind: the few-shot "
                f"regime shows, and {NO_CROSSING}{size}{means}")
    elif first == -1:
        pattern = "discriminative"
        here = (f"here {dn} is ahead beyond the 95 % intervals at {ahead[-1]} and never clearly behind, so this dataset "
                f"and backbone do not show the {gn} advantage; {NO_CROSSING}{size}{means}")
    else:
        pattern = "indistinguishable"
        here = (f"here the 95 % intervals of {gn} and {dn} overlap at every shot value tried, so neither is ahead and "
                f"{NO_CROSSING}{size}{means}")
    return TwoRegimes(ks, ga, da, gci, dci, sep, crossing, crossing_acc, mean_crossing, pattern,
                      f"{PAPER_FINDING}; {here}.")
