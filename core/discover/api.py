"""One call each for the Discover view and ``backbone-lens discover``: find the classes the labels do not
name (:func:`discover`), and score that on a labelled set with some classes hidden
(:func:`evaluate_discovery`, the GCD protocol, beside plain k-means on all images)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from core.cancel import CancelLike
from core.discover.choose_k import MAX_FIT as K_MAX_FIT
from core.discover.choose_k import RUNS, KCurve, estimate_k
from core.discover.clusters import N_CENTRAL, NewCluster, describe_clusters, named_labels
from core.discover.metrics import SplitAccuracy, split_cluster_accuracy
from core.discover.protocol import LABELLED_SHARE, GCDSplit, hide_classes
from core.discover.ssk import MAX_FIT, N_INIT, KMeansFit, kmeans, semi_supervised_kmeans
from core.geometry.vectors import as_features, as_labels, l2_normalize

K = int | str  # a number of new clusters, or "auto"
Progress = Callable[[int, int, str], None]  # progress(done, total, stage) of one stage of the work
STAGE_K, STAGE_SSK, STAGE_KMEANS = "choosing k", "semi-supervised k-means", "k-means on all images"


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` for one stage, reported as ``progress(done, total, stage)``."""
    return None if progress is None else (lambda done, total: progress(done, total, stage))


@dataclass(frozen=True)
class Discovery:
    """The result of :func:`discover`.

    Attributes:
        labels: ``[N]`` the input labels (``""``: unlabelled).
        known_classes: ``[K_L]`` labelled classes, sorted; cluster ``j < K_L`` is ``known_classes[j]``.
        unlabelled: ``[N_u]`` row indices of the unlabelled images.
        assignment: ``[N]`` every image's cluster: a labelled image its own class, an unlabelled one a
            known class (``< K_L``) or a new cluster (``>= K_L``).
        clusters: the new clusters, largest first (:class:`~core.discover.clusters.NewCluster`).
        known_counts: unlabelled images put into each known class.
        fit: the SS-k-means fit (centres, inertia, rows fitted on).
        k_curve: the curve behind ``k="auto"`` (None when ``k`` was given).
    """

    labels: np.ndarray
    known_classes: np.ndarray
    unlabelled: np.ndarray
    assignment: np.ndarray
    clusters: list[NewCluster]
    known_counts: dict[str, int]
    fit: KMeansFit
    k_curve: KCurve | None

    @property
    def k_new(self) -> int:
        return self.fit.k_new

    def cluster_names(self) -> list[str]:
        """``[K]`` the display name of every cluster id: known classes, then ``"new i"``."""
        names = [str(c) for c in self.known_classes] + [""] * self.k_new
        for c in self.clusters:
            names[c.id] = c.name
        return names

    def display_labels(self) -> np.ndarray:
        """``[N]`` each image's cluster name (a labelled image: its class), e.g. to colour a map."""
        return np.asarray(self.cluster_names(), dtype=object)[self.assignment].astype(str)

    def named_labels(self, names: Mapping[int | str, str], keep_known: bool = False) -> np.ndarray:
        """``[N]`` labels once new clusters are named (:func:`~core.discover.clusters.named_labels`)."""
        return named_labels(self.labels, self.assignment, self.known_classes, self.clusters, names, keep_known)


def _check_k(k: K, n_unlabelled: int) -> None:
    if isinstance(k, str):
        if k != "auto":
            raise ValueError(f"k must be a whole number or 'auto', got {k!r}")
        return
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"k (new clusters) must be a whole number, 0 or more, or 'auto'; got {k!r}")
    if k > n_unlabelled:
        raise ValueError(f"k={k} new clusters but only {n_unlabelled} unlabelled images: k can be at most {n_unlabelled}")


def discover(
    X: ArrayLike,
    labels: ArrayLike,
    k: K = "auto",
    *,
    n_central: int = N_CENTRAL,
    seed: int = 0,
    n_init: int = N_INIT,
    max_fit: int = MAX_FIT,
    k_max: int | None = None,
    runs: int = RUNS,
    k_max_fit: int = K_MAX_FIT,
    progress: Progress | None = None,
    cancel: CancelLike | None = None,
) -> Discovery:
    """Assign every unlabelled image to a labelled class or to one of ``k`` new clusters (SS-k-means).

    Args:
        X: ``[N, D]`` features of every image, labelled or not.
        labels: ``[N]`` class names, ``""`` for an unlabelled image.
        k: number of new clusters, or ``"auto"`` (:func:`~core.discover.choose_k.estimate_k`).
        n_central: central images listed per new cluster.
        seed: seed of every random draw.
        n_init / max_fit: SS-k-means seedings and fitting sample (:mod:`core.discover.ssk`).
        k_max / runs / k_max_fit: the ``"auto"`` search (:mod:`core.discover.choose_k`).
        progress: ``progress(done, total, stage)`` per candidate of the ``"auto"`` search (stage
            :data:`STAGE_K`) and per seeding of SS-k-means (:data:`STAGE_SSK`).
        cancel: asked between those steps (:mod:`core.cancel`).

    Raises:
        Cancelled: ``cancel`` said stop.
        ValueError: fewer than two images, no labelled class, no unlabelled image, or ``k`` larger than
            the number of unlabelled images.
    """
    X = np.asarray(X)
    if X.ndim == 2 and len(X) < 2:
        raise ValueError(f"discovery needs at least two images, got {len(X)}")
    X = as_features(X)
    lab = as_labels(labels, len(X), "labels").astype(str)
    is_lab = lab != ""
    if not is_lab.any():
        raise ValueError("no labelled class: discovery needs at least one class with labelled images")
    if is_lab.all():
        raise ValueError("no unlabelled image: nothing to discover (add unlabelled images, or hide classes to evaluate)")
    rows_l, rows_u = np.flatnonzero(is_lab), np.flatnonzero(~is_lab)
    _check_k(k, len(rows_u))
    curve = None
    if k == "auto":
        curve = estimate_k(X[rows_l], lab[rows_l], X[rows_u], k_max=k_max, runs=runs, seed=seed, max_fit=k_max_fit,
                           progress=_stage(progress, STAGE_K), cancel=cancel)
        k = curve.best
    fit = semi_supervised_kmeans(X[rows_u], int(k), X[rows_l], lab[rows_l], n_init=n_init, seed=seed, max_fit=max_fit,
                                 progress=_stage(progress, STAGE_SSK), cancel=cancel)
    classes = fit.classes
    assignment = np.empty(len(X), dtype=np.int64)
    assignment[rows_l] = np.searchsorted(classes, lab[rows_l])
    assignment[rows_u] = fit.labels
    dt = np.float32 if X.dtype == np.float32 else np.float64
    U = l2_normalize(X[rows_u], dtype=dt)  # [N_u, D]
    prototypes = l2_normalize(_known_means(X, rows_l, assignment[rows_l], len(classes)))  # [K_L, D]
    clusters = describe_clusters(U, rows_u, fit.labels, fit.centres, prototypes, classes, n_central)
    counts = np.bincount(fit.labels, minlength=len(fit.centres))
    return Discovery(labels=lab, known_classes=classes, unlabelled=rows_u, assignment=assignment, clusters=clusters,
                     known_counts={str(c): int(counts[j]) for j, c in enumerate(classes)}, fit=fit, k_curve=curve)


def _known_means(X: np.ndarray, rows_l: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """``[K_L, D]`` mean of each labelled class's L2-normalised features (SS-k-means' known seeds)."""
    out = np.zeros((k, X.shape[1]))
    for j in range(k):
        out[j] = l2_normalize(X[rows_l[codes == j]]).mean(0)
    return out


@dataclass(frozen=True)
class DiscoveryScores:
    """The result of :func:`evaluate_discovery`.

    Attributes:
        ss_kmeans: All / Old / New accuracy of SS-k-means on the unlabelled images.
        kmeans_all: the same for plain k-means on all images (labels unused) with the same number of
            clusters, scored on the same images.
        k_new: new clusters used; k_new_true: classes hidden.
        split: which labels the method saw.
        discovery: the SS-k-means result itself (clusters, curve).
    """

    ss_kmeans: SplitAccuracy
    kmeans_all: SplitAccuracy
    k_new: int
    k_new_true: int
    split: GCDSplit
    discovery: Discovery

    def as_dict(self) -> dict:
        """JSON-ready: ``all``, ``old``, ``new``, ``kmeans_all`` and how they were obtained."""
        curve = self.discovery.k_curve
        return {**self.ss_kmeans.as_dict(), "kmeans_all": self.kmeans_all.as_dict(),
                "k_new": self.k_new, "k_new_true": self.k_new_true, "k_auto": curve is not None,
                "k_curve": curve.points() if curve is not None else None,
                "known_classes": list(self.split.known_classes), "unknown_classes": list(self.split.unknown_classes),
                "labelled_share": self.split.share, "n_labelled": int(self.split.labelled.sum()),
                "n_unlabelled": int((~self.split.labelled).sum()), "n_unlabelled_old": self.ss_kmeans.n_old,
                "n_unlabelled_new": self.ss_kmeans.n_new, "fitted_on": self.discovery.fit.n_fit}


def evaluate_discovery(
    X: ArrayLike,
    y: ArrayLike,
    unknown: Iterable[str],
    k: K | None = None,
    *,
    labelled_share: float = LABELLED_SHARE,
    seed: int = 0,
    n_init: int = N_INIT,
    max_fit: int = MAX_FIT,
    k_max: int | None = None,
    runs: int = RUNS,
    k_max_fit: int = K_MAX_FIT,
    progress: Progress | None = None,
    cancel: CancelLike | None = None,
) -> DiscoveryScores:
    """Hide ``unknown`` classes (and ``1 - labelled_share`` of the others' images), discover, and score
    All / Old / New clustering accuracy on the unlabelled images (:mod:`core.discover.metrics`), beside
    plain k-means on all images.

    Args:
        X: ``[N, D]`` features; y: ``[N]`` true classes of every image.
        unknown: classes treated as unknown.
        k: new clusters; None = the number of hidden classes (the GCD protocol's known k), or ``"auto"``.
        labelled_share / seed: :func:`~core.discover.protocol.hide_classes`.
        progress / cancel: as :func:`discover`, then per seeding of ``kmeans_all`` (:data:`STAGE_KMEANS`).
        the rest: as :func:`discover`.
    """
    X = as_features(X)
    y = as_labels(y, len(X)).astype(str)
    split = hide_classes(y, unknown, labelled_share, seed)
    k_true = len(split.unknown_classes)
    shown = np.where(split.labelled, y, "")
    d = discover(X, shown, k_true if k is None else k, seed=seed, n_init=n_init, max_fit=max_fit, k_max=k_max,
                 runs=runs, k_max_fit=k_max_fit, progress=progress, cancel=cancel)
    u = d.unlabelled
    ss = split_cluster_accuracy(y[u], d.assignment[u], split.old[u])
    base = kmeans(X, len(d.known_classes) + d.k_new, n_init=n_init, seed=seed, max_fit=max_fit,
                  progress=_stage(progress, STAGE_KMEANS), cancel=cancel)
    km = split_cluster_accuracy(y[u], base.labels[u], split.old[u])
    return DiscoveryScores(ss_kmeans=ss, kmeans_all=km, k_new=d.k_new, k_new_true=k_true, split=split, discovery=d)
