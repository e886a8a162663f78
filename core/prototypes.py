"""Class prototypes on frozen features: nearest-mean, k-NN, linear-probe and naive-Bayes classifiers,
their evaluation protocols, few-shot curves, exemplar-free class-incremental learning, TEEN prototype
calibration and CLIP-style zero-shot prototypes.

Everything works on plain arrays: features ``X [N, D]`` (one row per image) and labels ``y [N]``
(strings or ints). Class order is always ``np.unique(y)`` (sorted) unless stated otherwise.

References:
    NMC / SimpleCIL: Janson et al., "A Simple Baseline that Questions the Use of Pretrained-Models
    in Continual Learning" (2022); Zhou et al., "Revisiting Class-Incremental Learning with
    Pre-Trained Models: Generalizability and Adaptivity are All You Need" (SimpleCIL, 2023).
    TEEN: Wang et al., "Few-Shot Class-Incremental Learning via Training-Free Prototype
    Calibration", NeurIPS 2023. Generative vs discriminative regimes: Ng & Jordan, "On
    Discriminative vs. Generative Classifiers" (2001) and its revisit for pretrained features.
    Linear probes on off-the-shelf features: Razavian et al., "CNN Features off-the-shelf" (2014).
    Zero-shot prompt ensembles: Radford et al., CLIP (2021).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from core.vectors import l2_normalize

Metric = Literal["cosine", "euclidean"]
Protocol = Literal["split", "loo", "given"]
METRICS: tuple[str, ...] = ("cosine", "euclidean")

# The 7 prompt templates of CLIP's ImageNet prompt-engineering notebook, plus the plain one.
CLIP_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


# ---- input checks ----------------------------------------------------------------------------------
def _as_features(X: ArrayLike, name: str = "X") -> np.ndarray:
    """Validate a feature matrix ``[N, D]`` (finite, numeric, non-empty)."""
    a = np.asarray(X)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D feature array [N, D], got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); it needs at least one row and one feature")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _as_labels(y: ArrayLike, n: int, name: str = "y") -> np.ndarray:
    """Validate labels ``[N]`` matching ``n`` feature rows."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D label array [N], got shape {a.shape}")
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} labels but the features have {n} rows")
    return a


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")


# ---- prototypes and distances -----------------------------------------------------------------------
def class_prototypes(X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Class means of the features.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.

    Returns:
        ``(classes [K], P [K, D])``: sorted unique labels and the mean feature of each (float64
        accumulation, returned in ``X``'s float dtype, float32 for integer input).
    """
    X = _as_features(X)
    y = _as_labels(y, len(X))
    classes, y_idx = np.unique(y, return_inverse=True)  # [K], [N]
    counts = np.bincount(y_idx, minlength=len(classes))  # [K]
    sums = np.zeros((len(classes), X.shape[1]), dtype=np.float64)  # [K, D]
    np.add.at(sums, y_idx, X)
    out_dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float32
    return classes, (sums / counts[:, None]).astype(out_dtype)


def distances(A: ArrayLike, B: ArrayLike, metric: Metric = "cosine") -> np.ndarray:
    """Pairwise distances between rows, computed in float64.

    Args:
        A: ``[N, D]``.
        B: ``[K, D]`` (e.g. prototypes).
        metric: ``"cosine"`` (``1 - cos``, in ``[0, 2]``) or ``"euclidean"``.

    Returns:
        ``[N, K]`` float64 distances.
    """
    _check_metric(metric)
    A, B = _as_features(A, "A"), _as_features(B, "B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"feature dims differ: A has D={A.shape[1]}, B has D={B.shape[1]}")
    if metric == "cosine":
        return 1.0 - l2_normalize(A) @ l2_normalize(B).T  # [N, K]
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    sq = (A64 * A64).sum(1)[:, None] + (B64 * B64).sum(1)[None, :] - 2.0 * (A64 @ B64.T)  # [N, K]
    return np.sqrt(np.maximum(sq, 0.0))


# ---- classifiers ------------------------------------------------------------------------------------
class NearestMeanClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class mean (NMC) / SimpleCIL prototype classifier.

    Each class is its mean feature; an image goes to the nearest prototype. ``partial_fit`` adds
    prototypes for new classes without touching the old ones, which is exemplar-free
    class-incremental learning on a frozen backbone (NMC, SimpleCIL).

    Attributes (after fit):
        classes_: ``[K]`` labels, in the order prototypes were added (sorted within each call).
        prototypes_: ``[K, D]`` class means.
        class_counts_: ``[K]`` number of training images behind each prototype.
    """

    def __init__(self, metric: Metric = "cosine"):
        self.metric = metric

    def fit(self, X: ArrayLike, y: ArrayLike) -> "NearestMeanClassifier":
        """Build one prototype per class from scratch (forgets earlier calls)."""
        _check_metric(self.metric)
        X = _as_features(X)
        y = _as_labels(y, len(X))
        self.classes_, self.prototypes_ = class_prototypes(X, y)
        self.class_counts_ = np.unique(y, return_counts=True)[1]
        self.n_features_in_ = X.shape[1]
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> "NearestMeanClassifier":
        """Add prototypes for the (new) classes in ``y``; existing prototypes are not changed.

        Raises:
            ValueError: if a class in ``y`` already has a prototype (no class is revisited in
                class-incremental learning; call ``fit`` to rebuild everything instead).
        """
        if not hasattr(self, "prototypes_"):
            return self.fit(X, y)
        X = _as_features(X)
        y = _as_labels(y, len(X))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has D={X.shape[1]} features but the classifier was fitted with "
                             f"D={self.n_features_in_}")
        if (y.dtype.kind in "USO") != (self.classes_.dtype.kind in "USO"):
            raise ValueError(f"label type {y.dtype} does not match the fitted labels ({self.classes_.dtype})")
        new = np.unique(y)
        seen = new[np.isin(new, self.classes_)]
        if len(seen):
            raise ValueError(f"partial_fit only adds new classes, but {seen.tolist()} already have a prototype; "
                             "use fit() to rebuild all prototypes")
        classes, P = class_prototypes(X, y)
        self.classes_ = np.concatenate([self.classes_, classes])
        self.prototypes_ = np.concatenate([self.prototypes_, P.astype(self.prototypes_.dtype)])
        self.class_counts_ = np.concatenate([self.class_counts_, np.unique(y, return_counts=True)[1]])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "prototypes_"):
            raise ValueError("NearestMeanClassifier is not fitted; call fit(X, y) first")

    def distances(self, X: ArrayLike) -> np.ndarray:
        """Distances to every prototype ``[N, K]``."""
        self._check_fitted()
        return distances(X, self.prototypes_, self.metric)

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Scores ``[N, K]``: negative distance to each prototype (higher is better)."""
        return -self.distances(X)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Label of the nearest prototype ``[N]``."""
        return self.classes_[np.argmin(self.distances(X), axis=1)]


_FACTORIES: dict[str, Callable[..., Any]] = {}


def _register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _FACTORIES:
            raise ValueError(f"classifier {name!r} is already registered")
        _FACTORIES[name] = fn
        return fn
    return deco


@_register("nmc")
def _make_nmc(n_train: int | None = None, metric: Metric = "cosine") -> NearestMeanClassifier:
    return NearestMeanClassifier(metric=metric)


@_register("knn")
def _make_knn(n_train: int | None = None, n_neighbors: int = 5, **kw: Any) -> KNeighborsClassifier:
    k = n_neighbors if n_train is None else max(1, min(n_neighbors, n_train))
    return KNeighborsClassifier(n_neighbors=k, metric="cosine", **kw)


@_register("linear")
def _make_linear(n_train: int | None = None, C: float = 1.0, max_iter: int = 5000, **kw: Any) -> Any:
    # L2-normalised features make C comparable across backbones; lbfgs converges well within 5000.
    return make_pipeline(Normalizer(norm="l2"), LogisticRegression(C=C, max_iter=max_iter, **kw))


@_register("nb")
def _make_nb(n_train: int | None = None, **kw: Any) -> GaussianNB:
    return GaussianNB(**kw)


CLASSIFIERS: tuple[str, ...] = tuple(_FACTORIES)


def make_classifier(method: str, *, n_train: int | None = None, **kw: Any) -> Any:
    """Build an unfitted sklearn-style classifier by name.

    Args:
        method: ``"nmc"`` (NearestMeanClassifier, cosine unless ``metric=`` is given),
            ``"knn"`` (KNeighborsClassifier, cosine metric, ``k = min(5, n_train)``),
            ``"linear"`` (L2 normalisation then LogisticRegression, ``C=1.0``) or
            ``"nb"`` (GaussianNB).
        n_train: size of the training set it will be fitted on (caps k for k-NN).
        **kw: passed to the estimator (e.g. ``metric``, ``n_neighbors``, ``C``).

    Returns:
        an object with ``fit(X, y)`` and ``predict(X)``.
    """
    if method not in _FACTORIES:
        raise ValueError(f"unknown classifier {method!r}; choose one of {list(CLASSIFIERS)}")
    return _FACTORIES[method](n_train=n_train, **kw)


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
        n_test = int(np.clip(round(test_size * len(idx)), 1, len(idx) - 1))
        test.append(idx[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y_idx)), test_idx)
    return train_idx, test_idx


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
          train and one test image per class), seeded.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.
        method: a name from :data:`CLASSIFIERS`.
        test_size: hold-out fraction for ``"split"``.
        seed: seed of the split.
        X_test / y_test: optional explicit test set ``[T, D]`` / ``[T]``.
        **classifier_kw: passed to :func:`make_classifier`.

    Returns:
        an :class:`EvalResult`.
    """
    X = _as_features(X)
    y = _as_labels(y, len(X))
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if method not in _FACTORIES:
        raise ValueError(f"unknown classifier {method!r}; choose one of {list(CLASSIFIERS)}")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes to evaluate a classifier, got {len(classes)}")

    if X_test is not None:
        Xt = _as_features(X_test, "X_test")
        yt = _as_labels(y_test, len(Xt), "y_test")
        if Xt.shape[1] != X.shape[1]:
            raise ValueError(f"X_test has D={Xt.shape[1]} but X has D={X.shape[1]}")
        protocol: Protocol = "given"
        y_pred = make_classifier(method, n_train=len(X), **classifier_kw).fit(X, y).predict(Xt)
        y_true, test_idx, n_train = yt, np.arange(len(Xt)), len(X)
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
        tr, te = _stratified_split(y_idx, test_size, np.random.default_rng(seed))
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
    """One point of the few-shot curve: accuracy of ``method`` with ``shots`` train images per class."""

    method: str
    shots: int
    mean_acc: float
    std_acc: float
    n_draws: int


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
    remaining images are the test set; every method sees the same draws. A shot value that
    leaves some class without a test image (class size <= k) is skipped. The draws of a shot value
    depend only on ``(seed, k)``.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.
        shots: train images per class.
        methods: names from :data:`CLASSIFIERS`.
        draws: random draws per shot value.
        seed: base seed.

    Returns:
        rows sorted by (method order, shots); ``std_acc`` is the std over draws.
    """
    X = _as_features(X)
    y = _as_labels(y, len(X))
    methods = list(dict.fromkeys(methods))  # unique, in order
    for m in methods:
        if m not in _FACTORIES:
            raise ValueError(f"unknown classifier {m!r}; choose one of {list(CLASSIFIERS)}")
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
    for k in sorted({int(s) for s in shots}):
        if k >= smallest:
            continue  # some class would have no test image
        rng = np.random.default_rng([seed, k])
        for _ in range(draws):
            train = np.concatenate([rng.choice(p, k, replace=False) for p in per_class])  # [K * k]
            test = np.setdiff1d(np.arange(len(y)), train)
            for m in methods:
                clf = make_classifier(m, n_train=len(train)).fit(X[train], y[train])
                accs.setdefault((m, k), []).append(float(np.mean(clf.predict(X[test]) == y[test])))
    ks = sorted({k for _, k in accs})
    return [FewShotRow(m, k, float(np.mean(accs[m, k])), float(np.std(accs[m, k])), len(accs[m, k]))
            for m in methods for k in ks]


# ---- class-incremental learning ---------------------------------------------------------------------
@dataclass(frozen=True)
class IncrementalResult:
    """Outcome of :func:`class_incremental`.

    Attributes:
        task_classes: the labels of each task, in order.
        step_accuracies: ``[T]`` accuracy on the test images of all classes seen after step t.
        task_accuracy: ``[T, T]`` accuracy on task j's test images after step t (NaN for j > t).
        n_seen_classes: ``[T]`` number of classes with a prototype after step t.
        average_incremental_accuracy: mean of ``step_accuracies``.
        final_accuracy: ``step_accuracies[-1]``.
        protocol: ``"split"`` or ``"given"``.
    """

    task_classes: list[np.ndarray]
    step_accuracies: np.ndarray
    task_accuracy: np.ndarray
    n_seen_classes: np.ndarray
    average_incremental_accuracy: float
    final_accuracy: float
    protocol: Protocol


def class_incremental(
    X: ArrayLike,
    y: ArrayLike,
    n_tasks: int,
    class_order: Sequence[Any] | None = None,
    test_size: float = 0.3,
    seed: int = 0,
    *,
    metric: Metric = "cosine",
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
) -> IncrementalResult:
    """Exemplar-free class-incremental learning with NMC / SimpleCIL prototypes.

    Classes (``class_order`` or sorted) are cut into ``n_tasks`` consecutive groups
    (``np.array_split``). At step t the prototypes of task t's classes are added from their
    training images only (old prototypes are never updated, no exemplars kept); the model is then
    tested on the test images of all classes seen so far.

    Args:
        X: features ``[N, D]``; training images (all of them when ``X_test`` is given).
        y: labels ``[N]``.
        n_tasks: number of tasks, ``1 <= n_tasks <= K``.
        class_order: a permutation of the classes; default sorted.
        test_size: per-class hold-out fraction when no test set is given.
        seed: seed of the split.
        metric: NMC metric.
        X_test / y_test: optional explicit test set.

    Returns:
        an :class:`IncrementalResult`.
    """
    X = _as_features(X)
    y = _as_labels(y, len(X))
    classes = np.unique(y)
    if class_order is None:
        order = classes
    else:
        order = np.asarray(class_order)
        if len(order) != len(classes) or len(np.unique(order)) != len(order) or not np.all(np.isin(order, classes)):
            raise ValueError(f"class_order must be a permutation of the {len(classes)} classes in y, "
                             f"got {order.tolist()}")
    if not 1 <= n_tasks <= len(classes):
        raise ValueError(f"n_tasks must be between 1 and the number of classes ({len(classes)}), got {n_tasks}")

    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is not None:
        Xtr, ytr = X, y
        Xte = _as_features(X_test, "X_test")
        yte = _as_labels(y_test, len(Xte), "y_test")
        if Xte.shape[1] != X.shape[1]:
            raise ValueError(f"X_test has D={Xte.shape[1]} but X has D={X.shape[1]}")
        protocol: Protocol = "given"
    else:
        tr, te = _stratified_split(np.searchsorted(classes, y), test_size, np.random.default_rng(seed))
        Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]
        protocol = "split"

    tasks = [np.asarray(g) for g in np.array_split(order, n_tasks)]
    task_of_test = np.full(len(yte), -1)  # [T_test] task index, -1 for classes not in any task
    for j, g in enumerate(tasks):
        task_of_test[np.isin(yte, g)] = j

    clf = NearestMeanClassifier(metric=metric)
    step_acc = np.empty(n_tasks)
    task_acc = np.full((n_tasks, n_tasks), np.nan)
    n_seen = np.empty(n_tasks, dtype=int)
    for t, g in enumerate(tasks):
        m = np.isin(ytr, g)
        clf.partial_fit(Xtr[m], ytr[m])
        seen = (task_of_test >= 0) & (task_of_test <= t)
        if not seen.any():
            raise ValueError(f"no test images for the classes of tasks 0..{t}")
        correct = clf.predict(Xte[seen]) == yte[seen]
        step_acc[t] = correct.mean()
        for j in range(t + 1):
            in_j = task_of_test[seen] == j
            task_acc[t, j] = correct[in_j].mean() if in_j.any() else np.nan
        n_seen[t] = len(clf.classes_)
    return IncrementalResult(
        task_classes=tasks,
        step_accuracies=step_acc,
        task_accuracy=task_acc,
        n_seen_classes=n_seen,
        average_incremental_accuracy=float(step_acc.mean()),
        final_accuracy=float(step_acc[-1]),
        protocol=protocol,
    )


# ---- TEEN prototype calibration ---------------------------------------------------------------------
def teen_calibrate(
    base_protos: ArrayLike,
    new_protos: ArrayLike,
    alpha: float = 0.5,
    tau: float = 16.0,
    *,
    normalize: bool = True,
) -> np.ndarray:
    """TEEN: pull few-shot prototypes towards similar, well-estimated base prototypes.

    With ``S_{n,b} = cos(p_n, p_b)`` and ``w_{n,b} = exp(tau S_{n,b}) / sum_b' exp(tau S_{n,b'})``
    (a softmax over the B base classes), the paper's calibrated prototype is::

        p^_n = alpha * p_n + (1 - alpha) * sum_b w_{n,b} p_b

    ``normalize=True`` (default) follows the official code (wangkiw/TEEN, ``soft_calibration``):
    all prototypes are L2-normalised first and the shift ``sum_b w_{n,b} p_b`` is re-normalised
    before mixing, i.e. ``p^_n = alpha * p_n/|p_n| + (1 - alpha) * d_n/|d_n|`` with
    ``d_n = sum_b w_{n,b} p_b/|p_b|``. The code's ``shift_weight`` is ``1 - alpha``; its defaults
    are ``softmax_t = tau = 16``, ``shift_weight = 0.5`` (0.1 in its CIFAR-100 script).
    ``normalize=False`` is the formula above on the raw prototypes.

    Args:
        base_protos: ``[B, D]`` base-class prototypes.
        new_protos: ``[K, D]`` few-shot prototypes.
        alpha: weight of the original prototype, in ``[0, 1]`` (1 = no calibration).
        tau: softmax temperature (>= 0; larger = only the most similar base classes).
        normalize: official-code normalisation (see above).

    Returns:
        ``[K, D]`` calibrated prototypes (float64).
    """
    Pb = _as_features(base_protos, "base_protos").astype(np.float64)  # [B, D]
    Pn = _as_features(new_protos, "new_protos").astype(np.float64)  # [K, D]
    if Pb.shape[1] != Pn.shape[1]:
        raise ValueError(f"base_protos has D={Pb.shape[1]} but new_protos has D={Pn.shape[1]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    Pb_n, Pn_n = l2_normalize(Pb), l2_normalize(Pn)
    logits = tau * (Pn_n @ Pb_n.T)  # [K, B] scaled cosine similarities
    W = np.exp(logits - logits.max(axis=1, keepdims=True))
    W /= W.sum(axis=1, keepdims=True)  # [K, B] softmax over base classes
    if normalize:
        shift = l2_normalize(W @ Pb_n)  # [K, D]
        return alpha * Pn_n + (1.0 - alpha) * shift
    return alpha * Pn + (1.0 - alpha) * (W @ Pb)


def teen_experiment(
    X: ArrayLike,
    y: ArrayLike,
    base_classes: Sequence[Any],
    k_shot: int = 5,
    alpha: float = 0.5,
    tau: float = 16.0,
    seed: int = 0,
    test_size: float = 0.3,
) -> dict[str, Any]:
    """Few-shot new classes with and without TEEN calibration, cosine NMC on frozen features.

    Every class is split into train/test (stratified, ``test_size``). Base prototypes use all the
    training images of the base classes; each other ("new") class gets a prototype from
    ``k_shot`` random training images. Both prototype sets are then scored on the same test images.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.
        base_classes: the labels treated as base classes; the rest are new classes.
        k_shot: training images per new class.
        alpha / tau: TEEN parameters (see :func:`teen_calibrate`).
        seed: seed of the split and of the shot sampling.
        test_size: per-class hold-out fraction.

    Returns:
        ``{"plain": {"base", "new", "all"}, "calibrated": {"base", "new", "all"}}`` accuracies,
        plus ``n_base_classes``, ``n_new_classes``, ``n_test_base``, ``n_test_new``, ``k_shot``,
        ``alpha``, ``tau``.
    """
    X = _as_features(X)
    y = _as_labels(y, len(X))
    classes = np.unique(y)
    base = np.unique(np.asarray(base_classes))
    unknown = base[~np.isin(base, classes)]
    if len(unknown):
        raise ValueError(f"base_classes {unknown.tolist()} do not occur in y")
    new = classes[~np.isin(classes, base)]
    if len(base) == 0 or len(new) == 0:
        raise ValueError(f"need at least one base and one new class, got {len(base)} base and {len(new)} new")
    if k_shot < 1:
        raise ValueError(f"k_shot must be >= 1, got {k_shot}")

    rng = np.random.default_rng(seed)
    tr, te = _stratified_split(np.searchsorted(classes, y), test_size, rng)
    is_base_tr = np.isin(y[tr], base)
    _, P_base = class_prototypes(X[tr][is_base_tr], y[tr][is_base_tr])  # [B, D], order = base
    P_new = []
    for c in new:
        idx = tr[y[tr] == c]
        if len(idx) < k_shot:
            raise ValueError(f"class {c!r} has only {len(idx)} training images after the split, "
                             f"fewer than k_shot={k_shot}")
        P_new.append(X[rng.choice(idx, k_shot, replace=False)].astype(np.float64).mean(axis=0))
    P_new = np.stack(P_new)  # [K, D]
    labels = np.concatenate([base, new])  # [B + K]

    Xte, yte = X[te], y[te]
    is_base_te = np.isin(yte, base)
    out: dict[str, Any] = {}
    for name, P in (("plain", np.vstack([P_base, P_new])),
                    ("calibrated", np.vstack([P_base, teen_calibrate(P_base, P_new, alpha, tau)]))):
        correct = labels[np.argmin(distances(Xte, P, "cosine"), axis=1)] == yte
        out[name] = {"base": float(correct[is_base_te].mean()),
                     "new": float(correct[~is_base_te].mean()),
                     "all": float(correct.mean())}
    out.update(n_base_classes=len(base), n_new_classes=len(new), n_test_base=int(is_base_te.sum()),
               n_test_new=int((~is_base_te).sum()), k_shot=k_shot, alpha=alpha, tau=tau)
    return out


# ---- zero-shot prototypes ---------------------------------------------------------------------------
def prompt_prototypes(
    encode_text: Callable[[list[str]], np.ndarray],
    classes: Sequence[str],
    templates: Sequence[str] = CLIP_TEMPLATES,
) -> np.ndarray:
    """CLIP prompt-ensemble text prototypes.

    For every template, ``encode_text([template.format(c) for c in classes])`` gives ``[K, D]``;
    rows are L2-normalised, averaged over templates and re-normalised.

    Args:
        encode_text: texts ``[M]`` -> embeddings ``[M, D]``.
        classes: class names ``[K]``.
        templates: format strings with one ``{}``.

    Returns:
        ``[K, D]`` unit-norm text prototypes (float64).
    """
    if len(classes) == 0 or len(templates) == 0:
        raise ValueError("need at least one class name and one template")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' placeholder; bad: {bad}")
    acc = None
    for t in templates:
        E = _as_features(encode_text([t.format(c) for c in classes]), "encode_text output")  # [K, D]
        if len(E) != len(classes):
            raise ValueError(f"encode_text returned {len(E)} rows for {len(classes)} texts")
        acc = l2_normalize(E) if acc is None else acc + l2_normalize(E)
    return l2_normalize(acc / len(templates))


def mix_prototypes(text_protos: ArrayLike, image_protos: ArrayLike, mix: float = 0.5) -> np.ndarray:
    """Blend text and image prototypes: ``normalise((1 - mix) * t/|t| + mix * i/|i|)``.

    Args:
        text_protos: ``[K, D]``.
        image_protos: ``[K, D]`` (same class order).
        mix: 0 = text only, 1 = image only.

    Returns:
        ``[K, D]`` unit-norm prototypes.
    """
    T = _as_features(text_protos, "text_protos")
    I = _as_features(image_protos, "image_protos")
    if T.shape != I.shape:
        raise ValueError(f"text_protos {T.shape} and image_protos {I.shape} must have the same shape [K, D]")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    return l2_normalize((1.0 - mix) * l2_normalize(T) + mix * l2_normalize(I))


def zero_shot(
    image_emb: ArrayLike,
    text_protos: ArrayLike,
    image_protos: ArrayLike | None = None,
    mix: float = 0.5,
) -> np.ndarray:
    """Nearest prototype by cosine: text prototypes (zero-shot), or their mix with image prototypes.

    Args:
        image_emb: ``[N, D]`` image embeddings (same space as the text tower).
        text_protos: ``[K, D]`` e.g. from :func:`prompt_prototypes`.
        image_protos: optional ``[K, D]`` class means of image embeddings.
        mix: blend weight when ``image_protos`` is given (see :func:`mix_prototypes`).

    Returns:
        ``[N]`` predicted class index into the K prototypes.
    """
    if image_protos is None:
        P = _as_features(text_protos, "text_protos")  # [K, D]
    else:
        P = mix_prototypes(text_protos, image_protos, mix)  # [K, D]
    return np.argmin(distances(image_emb, P, "cosine"), axis=1)


def per_class_margin(D_img_proto: ArrayLike, y_idx: ArrayLike) -> np.ndarray:
    """Margin of each image: distance to the nearest wrong prototype minus distance to its own.

    Args:
        D_img_proto: ``[N, K]`` image-to-prototype distances (e.g. :func:`distances`).
        y_idx: ``[N]`` index of each image's true class in ``0..K-1``.

    Returns:
        ``[N]`` margins; positive = correctly classified by NMC with that much room.
    """
    Dm = _as_features(D_img_proto, "D_img_proto").astype(np.float64)
    yi = np.asarray(y_idx)
    if yi.shape != (len(Dm),) or not np.issubdtype(yi.dtype, np.integer):
        raise ValueError(f"y_idx must be an integer array of shape ({len(Dm)},), got {yi.dtype} {yi.shape}")
    if Dm.shape[1] < 2:
        raise ValueError("a margin needs at least 2 prototypes")
    if yi.min() < 0 or yi.max() >= Dm.shape[1]:
        raise ValueError(f"y_idx values must be in [0, {Dm.shape[1] - 1}]")
    rows = np.arange(len(Dm))
    own = Dm[rows, yi]  # [N]
    others = Dm.copy()
    others[rows, yi] = np.inf
    return others.min(axis=1) - own
