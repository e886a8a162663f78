"""Where images sit relative to the class prototypes: the distance tables and margins of a labelled
set, the misclassified images with the nearest prototype of another class, and new (uploaded)
images against every prototype. The numbers the Prototypes page draws, one call each.

Nothing here imports Streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from core.classify.evaluation import EvalResult
from core.classify.prototypes import class_prototypes, per_class_margin
from core.classify.tables import class_sorted_order, nearest_wrong_prototypes, prototype_exemplars, train_indices
from core.geometry.vectors import Metric, as_features, as_labels, distances


@dataclass(frozen=True)
class PrototypeDistances:
    """Prototypes of a labelled set and every distance the Prototypes tab shows.

    Attributes:
        classes: ``[K]`` sorted class labels; P: ``[K, D]`` prototypes (class means).
        order: ``[N]`` rows of X grouped by class (stable within a class).
        D_pp: ``[K, K]`` prototype-to-prototype distances.
        D_ip: ``[N, K]`` image-to-prototype distances, rows in ``order``.
        margin: ``[N]`` per-image margin (:func:`core.classify.prototypes.per_class_margin`), rows in ``order``.
        own: ``[N]`` column of each row's own class, rows in ``order``.
        nearest: ``[N]`` column of each row's nearest prototype, rows in ``order``.
    """

    classes: np.ndarray
    P: np.ndarray
    order: np.ndarray
    D_pp: np.ndarray
    D_ip: np.ndarray
    margin: np.ndarray
    own: np.ndarray
    nearest: np.ndarray

    @property
    def wrong_rows(self) -> np.ndarray:
        """Positions in ``order`` whose nearest prototype is another class."""
        return np.flatnonzero(self.nearest != self.own)


def prototype_distances(X: ArrayLike, y: ArrayLike, metric: Metric = "cosine") -> PrototypeDistances:
    """Class means of ``X [N, D]`` with labels ``y [N]`` (in-sample), their distances to each other and
    to every image, and every image's margin, with rows grouped by class."""
    y = np.asarray(y)
    classes, P = class_prototypes(X, y)  # [K], [K, D]
    order = class_sorted_order(y.tolist())  # [N]
    Xa = as_features(X)
    D_pp = distances(P, P, metric)  # [K, K]
    D_ip = distances(Xa[order], P, metric)  # [N, K]
    own = np.searchsorted(classes, y[order])  # [N]
    return PrototypeDistances(classes, P, order, D_pp, D_ip, per_class_margin(D_ip, own), own,
                              np.argmin(D_ip, axis=1))


@dataclass(frozen=True)
class Misclassified:
    """The misclassified test images of one evaluation, each beside the nearest wrong prototype.

    Attributes:
        rows: ``[W]`` rows of X that were misclassified (test order).
        predicted: ``[W]`` predicted labels.
        wrong_label / d_wrong / d_own: ``[W]`` the nearest prototype of another class, its distance, and
            the distance to the image's own prototype (prototypes of the training part).
        exemplar: ``[W]`` row of X standing for that wrong prototype (its training image nearest the mean).
    """

    rows: np.ndarray
    predicted: np.ndarray
    wrong_label: np.ndarray
    d_wrong: np.ndarray
    d_own: np.ndarray
    exemplar: np.ndarray


def misclassified(X: ArrayLike, y: ArrayLike, result: EvalResult, metric: Metric = "cosine") -> Misclassified:
    """Explain the mistakes of ``result`` (an evaluation on ``X [N, D]``, ``y [N]``) by prototypes of its
    training part (all images for leave-one-out)."""
    Xa = as_features(X)
    y = as_labels(y, len(Xa))
    wrong = np.asarray(result.misclassified, dtype=np.int64)
    pred_of = dict(zip(result.test_indices.tolist(), result.y_pred.tolist()))
    if len(wrong) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Misclassified(empty, np.zeros(0, dtype=y.dtype), np.zeros(0, dtype=y.dtype), np.zeros(0), np.zeros(0),
                             empty)
    tr = train_indices(result, len(y))
    classes, P = class_prototypes(Xa[tr], y[tr])
    wlab, d_wrong, d_own = nearest_wrong_prototypes(Xa[wrong], y[wrong], classes, P, metric)
    ex = prototype_exemplars(Xa[tr], y[tr], classes, P, metric)  # [K] rows of X[tr]
    exemplar = tr[ex[np.searchsorted(classes, wlab)]]  # [W] rows of X
    return Misclassified(wrong, np.asarray([pred_of[int(i)] for i in wrong]), wlab, d_wrong, d_own, exemplar)


@dataclass(frozen=True)
class NewImageDistances:
    """New images against the prototypes of a labelled set.

    Attributes:
        classes: ``[K]``; P: ``[K, D]`` prototypes of all the labelled images.
        D: ``[M, K]`` distance of each new image to each prototype.
        ranking: ``[M, K]`` prototype columns, nearest first (``classes[ranking[:, 0]]`` = prediction).
        share_as_far: ``[M]`` share of the labelled images at least as far from their own prototype as
            the new image is from its nearest one (small: the image may belong to none of the classes).
    """

    classes: np.ndarray
    P: np.ndarray
    D: np.ndarray
    ranking: np.ndarray
    share_as_far: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return self.classes[self.ranking[:, 0]]

    @property
    def runner_up_gap(self) -> np.ndarray:
        """``[M]`` distance to the second nearest prototype minus distance to the nearest."""
        rows = np.arange(len(self.D))
        return self.D[rows, self.ranking[:, 1]] - self.D[rows, self.ranking[:, 0]]


def new_image_distances(X: ArrayLike, y: ArrayLike, U: ArrayLike, metric: Metric = "cosine") -> NewImageDistances:
    """Distances of new images ``U [M, D]`` to the prototypes of ``X [N, D]`` / ``y [N]``, their ranking,
    and how unusual the nearest distance is among the labelled images' distances to their own prototype."""
    y = np.asarray(y)
    classes, P = class_prototypes(X, y)
    D = distances(U, P, metric)  # [M, K]
    own = distances(X, P, metric)[np.arange(len(y)), np.searchsorted(classes, y)]  # [N]
    ranking = np.argsort(D, axis=1)  # [M, K]
    nearest = D[np.arange(len(D)), ranking[:, 0]]  # [M]
    share = (own[None, :] >= nearest[:, None]).mean(axis=1)  # [M]
    return NewImageDistances(classes, P, D, ranking, share)
