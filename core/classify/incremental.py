"""Exemplar-free class-incremental learning on a frozen backbone: class statistics are added task by task
and no old image is revisited (NMC / SimpleCIL prototypes, or any registered classifier with
``partial_fit``: naive Bayes, LDA, RanPAC, FeCAM)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from core.classify import evaluation
from core.classify.classifiers import classifier_info, make_classifier
from core.classify.evaluation import Protocol, capped_split
from core.geometry.vectors import Metric, as_features, as_labels


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
        n_train / n_test: training images added over all tasks / test images scored (at most
            :data:`core.classify.evaluation.INCREMENTAL_MAX_TEST` in the split protocol, a stratified sample).
    """

    task_classes: list[np.ndarray]
    step_accuracies: np.ndarray
    task_accuracy: np.ndarray
    n_seen_classes: np.ndarray
    average_incremental_accuracy: float
    final_accuracy: float
    protocol: Protocol
    n_train: int
    n_test: int


def class_order(classes: Sequence[Any], mode: str = "sorted", seed: int = 0) -> list[Any]:
    """The arrival order of the classes: ``"sorted"`` (as given, e.g. sorted labels) or ``"shuffled"``
    (a seeded permutation)."""
    if mode == "sorted":
        return list(classes)
    if mode == "shuffled":
        return list(np.random.default_rng(seed).permutation(np.asarray(classes)))
    raise ValueError(f"unknown class order {mode!r}; choose 'sorted' or 'shuffled'")


def _score_step(t: int, correct: np.ndarray, task_of: np.ndarray, step_acc: np.ndarray,
                task_acc: np.ndarray) -> None:
    """Fill step ``t`` of ``step_acc [T]`` and ``task_acc [T, T]`` from ``correct [n]`` (each test image of
    the classes seen so far) and ``task_of [n]`` (its task)."""
    step_acc[t] = correct.mean()
    for j in range(t + 1):
        in_j = task_of == j
        task_acc[t, j] = correct[in_j].mean() if in_j.any() else np.nan


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
    method: str = "nmc",
    classifier_kw: dict[str, Any] | None = None,
) -> IncrementalResult:
    """Exemplar-free class-incremental learning with NMC / SimpleCIL prototypes or another
    incremental classifier.

    Classes (``class_order`` or sorted) are cut into ``n_tasks`` consecutive groups
    (``np.array_split``). At step t the statistics of task t's classes are added from their
    training images only (``partial_fit``; no exemplars kept, old images never revisited); the
    model is then tested on the test images of all classes seen so far.

    Args:
        X: features ``[N, D]``; training images (all of them when ``X_test`` is given).
        y: labels ``[N]``.
        n_tasks: number of tasks, ``1 <= n_tasks <= K``.
        class_order: a permutation of the classes; default sorted.
        test_size: per-class hold-out fraction when no test set is given.
        seed: seed of the split.
        metric: NMC metric (ignored by the other methods).
        X_test / y_test: optional explicit test set.
        method: a registered classifier whose ``incremental`` flag is set (default ``"nmc"``).
        classifier_kw: passed to :func:`make_classifier` (e.g. ``{"M": 2000}`` for RanPAC).

    Returns:
        an :class:`IncrementalResult`.
    """
    X = as_features(X)
    y = as_labels(y, len(X))
    if not classifier_info(method).incremental:
        raise ValueError(f"{method!r} has no partial_fit that adds classes; use one of the incremental classifiers")
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
        Xte = as_features(X_test, "X_test")
        yte = as_labels(y_test, len(Xte), "y_test")  # type: ignore[arg-type]  # given with X_test (checked above)
        if Xte.shape[1] != X.shape[1]:
            raise ValueError(f"X_test has D={Xte.shape[1]} but X has D={X.shape[1]}")
        protocol: Protocol = "given"
    else:
        tr, te = capped_split(np.searchsorted(classes, y), test_size, seed, classifier_info(method).max_train,
                              evaluation.INCREMENTAL_MAX_TEST)  # read at call time: one value for core and pages
        Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]
        protocol = "split"

    tasks = [np.asarray(g) for g in np.array_split(order, n_tasks)]
    task_of_test = np.full(len(yte), -1)  # [T_test] task index, -1 for classes not in any task
    for j, g in enumerate(tasks):
        task_of_test[np.isin(yte, g)] = j

    kw = dict(classifier_kw or {})
    if method == "nmc":
        kw.setdefault("metric", metric)
    clf = make_classifier(method, **kw)
    step_acc = np.empty(n_tasks)
    task_acc = np.full((n_tasks, n_tasks), np.nan)
    n_seen = np.empty(n_tasks, dtype=int)
    # A classifier whose class columns never change once added (NMC, FeCAM) is scored once, after the
    # last task: step t's prediction is the best of the first n_seen[t] columns, exactly as if it had
    # been scored then. The others are scored after every task, their test images embedded once
    # (IncrementalClassifier.embed: RanPAC's random projection).
    once = bool(getattr(clf, "fixed_class_scores", False))
    embed = getattr(clf, "embed", None)  # IncrementalClassifier's fixed map; NMC has none (it is scored once)
    Zte = None
    for t, g in enumerate(tasks):
        m = np.isin(ytr, g)
        clf.partial_fit(Xtr[m], ytr[m])
        n_seen[t] = len(clf.classes_)
        seen = (task_of_test >= 0) & (task_of_test <= t)
        if not seen.any():
            raise ValueError(f"no test images for the classes of tasks 0..{t}")
        if not once:
            if embed is None:
                pred = clf.predict(Xte[seen])
            else:
                Zte = embed(Xte) if Zte is None else Zte  # the test images through the fixed map, once
                pred = clf.classes_[np.argmax(clf.scores_of(Zte[seen]), axis=1)]
            _score_step(t, pred == yte[seen], task_of_test[seen], step_acc, task_acc)
    if once:
        in_any = task_of_test >= 0
        S = clf.decision_function(Xte[in_any])  # [T_test, K], columns in the order the classes arrived
        tasks_in, y_in = task_of_test[in_any], yte[in_any]
        for t in range(n_tasks):
            seen = tasks_in <= t
            pred = clf.classes_[np.argmax(S[seen, : n_seen[t]], axis=1)]
            _score_step(t, pred == y_in[seen], tasks_in[seen], step_acc, task_acc)
    return IncrementalResult(
        task_classes=tasks,
        step_accuracies=step_acc,
        task_accuracy=task_acc,
        n_seen_classes=n_seen,
        average_incremental_accuracy=float(step_acc.mean()),
        final_accuracy=float(step_acc[-1]),
        protocol=protocol,
        n_train=len(ytr),
        n_test=int((task_of_test >= 0).sum()),
    )
