"""Evaluation protocols for one classifier: a stratified hold-out split, leave-one-out for tiny sets
or a given test set (``evaluate``), and the few-shot curve (the "two regimes" plot: Ng & Jordan,
"On Discriminative vs. Generative Classifiers", 2001, and its revisit for pretrained features)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import confusion_matrix

from core.classify.classifiers import check_classifier, classifier_info, make_classifier
from core.classify.intervals import wilson_interval
from core.classify.prototypes import class_prototypes
from core.geometry.vectors import as_features, as_labels, distances, l2_normalize

Protocol = Literal["split", "loo", "given"]

# ---- evaluation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalResult:
    """Outcome of :func:`evaluate`. Test arrays are aligned: entry ``t`` is test item ``test_indices[t]``.

    Attributes:
        method: classifier name.
        protocol: ``"split"`` (stratified hold-out), ``"loo"`` (leave-one-out) or ``"given"``.
        accuracy: fraction of test items predicted correctly.
        n_train: training-set size (per fold for ``"loo"``: ``N - 1``).
        n_test: number of predictions.
        classes: ``[K]`` all labels seen in train or test, sorted.
        y_true / y_pred: ``[T]`` labels.
        confusion: ``[K, K]`` counts, rows true class, columns predicted class (order ``classes``).
        test_indices: ``[T]`` row of each test item in ``X`` (in ``X_test`` for ``"given"``).
        misclassified: ``[M]`` the subset of ``test_indices`` predicted wrongly (same index space).
        ci_low / ci_high: the 95 % Wilson interval of ``accuracy`` over the ``n_test`` predictions
            (properties, :func:`core.classify.intervals.wilson_interval`).
    """

    method: str
    protocol: Protocol
    accuracy: float
    n_train: int
    n_test: int
    classes: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray
    test_indices: np.ndarray
    misclassified: np.ndarray

    @property
    def n_correct(self) -> int:
        return self.n_test - len(self.misclassified)

    @property
    def ci_low(self) -> float:
        return wilson_interval(self.n_correct, self.n_test)[0]

    @property
    def ci_high(self) -> float:
        return wilson_interval(self.n_correct, self.n_test)[1]


def n_test_of_class(n: int, test_size: float) -> int:
    """Test images a class of ``n`` images gives to a stratified hold-out: ``round(test_size * n)``
    clipped to ``[1, n - 1]`` (every class keeps a training and a test image)."""
    return int(np.clip(round(test_size * n), 1, n - 1))


def _stratified_split(y_idx: np.ndarray, test_size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random hold-out: ``round(test_size * n_c)`` test items per class, clipped to
    ``[1, n_c - 1]`` so that every class has at least one train and one test image.

    Returns:
        ``(train_idx, test_idx)``, each sorted.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    counts = np.bincount(y_idx)
    if counts.min() < 2:
        raise ValueError("every class needs at least 2 images for a train/test split "
                         f"(smallest class has {counts.min()}); drop that class or provide a test set")
    test = []
    for c in range(len(counts)):
        idx = rng.permutation(np.flatnonzero(y_idx == c))
        test.append(idx[:n_test_of_class(len(idx), test_size)])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y_idx)), test_idx)
    return train_idx, test_idx


MAX_TEST = 10_000  # held-out images scored per evaluation (a seeded stratified sample above): +-0.5 % at most
FEW_SHOT_MAX_TEST = 5_000  # per few-shot draw (tens of draws x methods; the spread over draws dominates)
INCREMENTAL_MAX_TEST = 5_000  # per class-incremental run (every task scores the seen classes' images again)


def stratified_cap(idx: np.ndarray, y_idx: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """``cap`` of the rows ``idx`` (sorted), each class keeping its share of them (at least one row of
    every class present, so more than ``cap`` only when there are more classes than that); ``idx``
    itself when it is small enough or ``cap`` is None."""
    if cap is None or len(idx) <= cap:
        return idx
    codes = y_idx[idx]
    present, counts = np.unique(codes, return_counts=True)
    quota = cap * counts / len(idx)  # each class's share of the cap
    take = np.maximum(np.floor(quota).astype(int), 1)
    spare = cap - take.sum()
    if spare > 0:  # largest remainders first (Hamilton's rule): exactly ``cap`` in all
        take[np.argsort(-(quota - np.floor(quota)), kind="stable")[:spare]] += 1
    keep = [rng.choice(idx[codes == c], t, replace=False) for c, t in zip(present, np.minimum(take, counts))]
    return np.sort(np.concatenate(keep))


def capped_split(y_idx: np.ndarray, test_size: float, seed: int, max_train: int | None,
                 max_test: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_stratified_split` of ``seed``, then at most ``max_train`` training rows and ``max_test``
    (default :data:`MAX_TEST`) test rows kept (:func:`stratified_cap`, same generator): the split every
    evaluation protocol uses."""
    rng = np.random.default_rng(seed)
    tr, te = _stratified_split(y_idx, test_size, rng)
    return (stratified_cap(tr, y_idx, max_train, rng),
            stratified_cap(te, y_idx, MAX_TEST if max_test is None else max_test, rng))


def _is_tiny(y: np.ndarray) -> bool:
    """Too small for a hold-out split: N < 20 or some class with fewer than 3 images."""
    return len(y) < 20 or np.unique(y, return_counts=True)[1].min() < 3


def _loo_predict(X: np.ndarray, y: np.ndarray, method: str, **kw: Any) -> np.ndarray:
    """Leave-one-out predictions ``[N]``: refit without item i, predict item i.

    NMC uses the exact closed form (the held-out item's class mean becomes
    ``(n_c p_c - x_i) / (n_c - 1)``; the other prototypes are unchanged), so it costs one fit.
    A class with a single image cannot be predicted when that image is held out.
    """
    if method == "nmc":
        metric = kw.get("metric", "cosine")
        classes, P = class_prototypes(X, y)  # [K], [K, D]
        y_idx = np.searchsorted(classes, y)  # [N]
        n_c = np.bincount(y_idx, minlength=len(classes))[y_idx].astype(np.float64)  # [N]
        Dm = distances(X, P, metric)  # [N, K]
        alone = n_c == 1
        P_own = (n_c[:, None] * P[y_idx].astype(np.float64) - X) / np.maximum(n_c - 1.0, 1.0)[:, None]  # [N, D]
        if metric == "cosine":
            d_own = 1.0 - np.sum(l2_normalize(X) * l2_normalize(P_own), axis=1)
        else:
            d_own = np.linalg.norm(X.astype(np.float64) - P_own, axis=1)
        rows = np.arange(len(X))
        Dm[rows, y_idx] = np.where(alone, np.inf, d_own)
        return classes[np.argmin(Dm, axis=1)]
    pred = np.empty(len(X), dtype=y.dtype)
    keep = np.ones(len(X), dtype=bool)
    for i in range(len(X)):
        keep[i] = False
        clf = make_classifier(method, n_train=len(X) - 1, **kw).fit(X[keep], y[keep])
        pred[i] = clf.predict(X[i : i + 1])[0]
        keep[i] = True
    return pred


def evaluate(
    X: ArrayLike,
    y: ArrayLike,
    method: str = "nmc",
    *,
    test_size: float = 0.3,
    seed: int = 0,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    **classifier_kw: Any,
) -> EvalResult:
    """Accuracy and confusion of one classifier on frozen features.

    Protocol:
        * ``"given"``: ``X_test, y_test`` supplied; train on all of ``X``.
        * ``"loo"``: tiny sets (``N < 20`` or any class with fewer than 3 images), leave-one-out
          over all N images; every image is predicted once by a model that never saw it. NMC is
          exact and instant; other methods refit N times.
        * ``"split"``: otherwise a stratified hold-out of ``test_size`` per class (at least one
          train and one test image per class), seeded; at most :data:`MAX_TEST` of the held-out
          images are scored (a seeded stratified sample).
        In both the split and the given protocol a method with a ``max_train``
        (:class:`core.classify.classifiers.ClassifierInfo`) is fitted on at most that many
        training images (stratified sample); ``n_train`` / ``n_test`` say how many were used.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.
        method: a name from :func:`core.classify.classifiers.classifier_names`.
        test_size: hold-out fraction for ``"split"``.
        seed: seed of the split.
        X_test / y_test: optional explicit test set ``[T, D]`` / ``[T]``.
        **classifier_kw: passed to :func:`make_classifier`.

    Returns:
        an :class:`EvalResult`.
    """
    X = as_features(X)
    y = as_labels(y, len(X))
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    check_classifier(method)
    max_train = classifier_info(method).max_train
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes to evaluate a classifier, got {len(classes)}")

    if X_test is not None:
        Xt = as_features(X_test, "X_test")
        yt = as_labels(y_test, len(Xt), "y_test")  # type: ignore[arg-type]  # given with X_test (checked above)
        if Xt.shape[1] != X.shape[1]:
            raise ValueError(f"X_test has D={Xt.shape[1]} but X has D={X.shape[1]}")
        protocol: Protocol = "given"
        tr = stratified_cap(np.arange(len(X)), np.searchsorted(classes, y), max_train, np.random.default_rng(seed))
        y_pred = make_classifier(method, n_train=len(tr), **classifier_kw).fit(X[tr], y[tr]).predict(Xt)
        y_true, test_idx, n_train = yt, np.arange(len(Xt)), len(tr)
        classes = np.unique(np.concatenate([classes, np.unique(yt)]))
    elif _is_tiny(y):
        counts = np.unique(y, return_counts=True)[1]
        if method != "nmc" and len(classes) == 2 and counts.min() == 1:
            raise ValueError("leave-one-out needs two classes in every training fold; with 2 classes "
                             "each class needs at least 2 images")
        protocol = "loo"
        y_pred = _loo_predict(X, y, method, **classifier_kw)
        y_true, test_idx, n_train = y, np.arange(len(X)), len(X) - 1
    else:
        protocol = "split"
        y_idx = np.searchsorted(classes, y)
        tr, te = capped_split(y_idx, test_size, seed, max_train)
        y_pred = make_classifier(method, n_train=len(tr), **classifier_kw).fit(X[tr], y[tr]).predict(X[te])
        y_true, test_idx, n_train = y[te], te, len(tr)

    wrong = y_pred != y_true  # [T]
    return EvalResult(
        method=method,
        protocol=protocol,
        accuracy=float(np.mean(~wrong)),
        n_train=int(n_train),
        n_test=int(len(y_true)),
        classes=classes,
        y_true=y_true,
        y_pred=y_pred,
        confusion=confusion_matrix(y_true, y_pred, labels=classes),
        test_indices=test_idx,
        misclassified=test_idx[wrong],
    )


# ---- few-shot curve ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FewShotRow:
    """One point of the few-shot curve: accuracy of ``method`` with ``shots`` train images per class.

    Attributes:
        mean_acc / std_acc: mean and std of the accuracy over the draws.
        n_draws: draws.
        n_test: test images of each draw (every draw scores the same number).
        ci_low / ci_high: 95 % Wilson interval of ``mean_acc`` taken as a proportion of ONE draw's
            ``n_test`` images (properties). The draws reuse the same few images of a small dataset as
            test images, so more draws do not make the accuracy on this data better known than one
            test set of that size does; the std over draws (training-set luck) is not in it.
    """

    method: str
    shots: int
    mean_acc: float
    std_acc: float
    n_draws: int
    n_test: int

    @property
    def ci_low(self) -> float:
        return wilson_interval(self.mean_acc * self.n_test, self.n_test)[0]

    @property
    def ci_high(self) -> float:
        return wilson_interval(self.mean_acc * self.n_test, self.n_test)[1]


def few_shot_curve(
    X: ArrayLike,
    y: ArrayLike,
    shots: Sequence[int] = (1, 2, 5, 10),
    methods: Sequence[str] = ("nmc", "linear", "nb"),
    draws: int = 10,
    seed: int = 0,
) -> list[FewShotRow]:
    """Accuracy against the number of training images per class (the "two regimes" plot).

    For each shot value k and each draw, k random training images are picked per class and all
    remaining images are the test set (at most :data:`FEW_SHOT_MAX_TEST` of them, a stratified sample); every
    method sees the same draws. A shot value that leaves some class without a test image (class
    size <= k) is skipped, and a method has no row at shot values below its ``min_shots`` (LDA and
    FeCAM need two images per class for a covariance). The draws of a shot value depend only on ``(seed, k)``.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.
        shots: train images per class.
        methods: names from :func:`core.classify.classifiers.classifier_names`.
        draws: random draws per shot value.
        seed: base seed.

    Returns:
        rows sorted by (method order, shots); ``std_acc`` is the std over draws, ``ci_low`` / ``ci_high``
        a 95 % Wilson interval (see :class:`FewShotRow`).
    """
    X = as_features(X)
    y = as_labels(y, len(X))
    methods = list(dict.fromkeys(methods))  # unique, in order
    for m in methods:
        check_classifier(m)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if any(int(k) != k or k < 1 for k in shots):
        raise ValueError(f"shots must be positive integers, got {list(shots)}")
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes, got {len(classes)}")
    per_class = [np.flatnonzero(y_idx == c) for c in range(len(classes))]
    smallest = min(len(p) for p in per_class)

    accs: dict[tuple[str, int], list[float]] = {}
    n_test: dict[int, int] = {}
    for k in sorted({int(s) for s in shots}):
        if k >= smallest:
            continue  # some class would have no test image
        rng = np.random.default_rng([seed, k])
        for _ in range(draws):
            train = np.concatenate([rng.choice(p, k, replace=False) for p in per_class])  # [K * k]
            test = stratified_cap(np.setdiff1d(np.arange(len(y)), train), y_idx, FEW_SHOT_MAX_TEST, rng)
            n_test[k] = len(test)
            for m in methods:
                if k < classifier_info(m).min_shots:
                    continue
                clf = make_classifier(m, n_train=len(train)).fit(X[train], y[train])
                accs.setdefault((m, k), []).append(float(np.mean(clf.predict(X[test]) == y[test])))
    ks = sorted({k for _, k in accs})
    return [FewShotRow(m, k, float(np.mean(accs[m, k])), float(np.std(accs[m, k])), len(accs[m, k]), n_test[k])
            for m in methods for k in ks if (m, k) in accs]
