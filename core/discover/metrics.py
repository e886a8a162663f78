"""Clustering accuracy under Hungarian matching, as the generalized category discovery papers report it.

A clustering names its clusters arbitrarily, so it is scored after the best one-to-one matching of
clusters to classes (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`). All / Old / New
follow the GCD code's ``split_cluster_acc_v2`` (``sgvaze/generalized-category-discovery``,
``project_utils/cluster_and_log_utils.py``): ONE matching over all scored images, then the share of
correctly matched images among those of the old (labelled) classes and among those of the new ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment


def contingency(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of (cluster, class) pairs.

    Args:
        y_true: ``[N]`` classes (any labels).
        y_pred: ``[N]`` cluster ids (any labels).

    Returns:
        ``(W [P, T], clusters [P], classes [T])``: ``W[p, t]`` images of class ``classes[t]`` in cluster
        ``clusters[p]`` (both sorted unique values).
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.shape != t.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got shapes {t.shape} and {p.shape}")
    if len(t) == 0:
        raise ValueError("clustering accuracy needs at least one image")
    classes, ti = np.unique(t, return_inverse=True)
    clusters, pi = np.unique(p, return_inverse=True)
    W = np.bincount(pi * len(classes) + ti, minlength=len(clusters) * len(classes))
    return W.reshape(len(clusters), len(classes)).astype(np.int64), clusters, classes  # [P, T]


def _match(W: np.ndarray) -> np.ndarray:
    """``[T]`` row of ``W [P, T]`` matched to each class (-1: unmatched, when there are fewer clusters
    than classes); the matching maximises the matched counts."""
    rows, cols = linear_sum_assignment(W, maximize=True)
    out = np.full(W.shape[1], -1, dtype=np.int64)
    out[cols] = rows
    return out


def cluster_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy: the share of images whose cluster is matched to their class by the best
    one-to-one matching of clusters to classes (``cluster_acc`` of the GCD code)."""
    W, _, _ = contingency(y_true, y_pred)
    m = _match(W)
    hit = m >= 0
    return float(W[m[hit], np.flatnonzero(hit)].sum() / W.sum())


@dataclass(frozen=True)
class SplitAccuracy:
    """Clustering accuracy on All / Old / New images (NaN where a subset is empty).

    Attributes:
        all: accuracy over every scored image.
        old: over the images of the old (labelled) classes.
        new: over the images of the new (hidden) classes.
        n_old / n_new: how many images each subset holds.
    """

    all: float
    old: float
    new: float
    n_old: int
    n_new: int

    def as_dict(self) -> dict[str, float | None]:
        """``{"all", "old", "new"}`` with NaN as None (JSON has no NaN)."""
        return {k: (None if np.isnan(v) else round(float(v), 6)) for k, v in
                (("all", self.all), ("old", self.old), ("new", self.new))}


def split_cluster_accuracy(y_true: ArrayLike, y_pred: ArrayLike, old_mask: ArrayLike) -> SplitAccuracy:
    """All / Old / New clustering accuracy from one Hungarian matching over all images.

    Args:
        y_true: ``[N]`` true classes of the scored (unlabelled) images.
        y_pred: ``[N]`` their clusters.
        old_mask: ``[N]`` True for an image of an old (labelled) class.
    """
    W, _, classes = contingency(y_true, y_pred)
    old = np.asarray(old_mask, dtype=bool)
    if old.shape != np.asarray(y_true).shape:
        raise ValueError(f"old_mask has shape {old.shape}, y_true {np.asarray(y_true).shape}")
    t = np.asarray(y_true)
    old_classes = np.isin(classes, t[old])  # [T]
    if np.any(old_classes & np.isin(classes, t[~old])):
        raise ValueError("a class cannot be both old and new: old_mask must be a function of the class")
    m = _match(W)
    per_class = np.where(m >= 0, W[np.maximum(m, 0), np.arange(len(classes))], 0)  # [T] matched images
    size = W.sum(0)  # [T]

    def acc(sel: np.ndarray) -> float:
        n = size[sel].sum()
        return float(per_class[sel].sum() / n) if n else float("nan")

    return SplitAccuracy(all=acc(np.ones(len(classes), bool)), old=acc(old_classes), new=acc(~old_classes),
                         n_old=int(old.sum()), n_new=int((~old).sum()))
