"""The metrics table: its columns (key, header, direction, tooltip) and one row per backbone.

Every accuracy comes from :mod:`core.classify.evaluation` (``evaluate`` and ``few_shot_curve``, called
with their own defaults), so the table shows exactly what the Prototypes page and ``backbone-lens
evaluate`` give for the same features and split.

Definitions used in the table:

* ``dim``: the global embedding's dimension D (the backbone's default embedding block).
* ``params``: ``sum(p.numel() for p in backbone.model.parameters())`` -- the whole model object
  (for CLIP that includes the text tower). NaN (null in JSON) for an imported set, as ``images_per_s``.
* ``images_per_s`` / ``speed_source``: see :mod:`core.compare.speed`.
* ``nmc/knn/linear_accuracy``: :func:`core.classify.evaluation.evaluate` with its defaults (stratified
  hold-out of 30 % per class with seed 0, or leave-one-out for tiny sets); the same split for every
  backbone, since the split depends only on the labels and the seed.
* ``nmc_{k}shot_mean / _std``: :func:`core.classify.evaluation.few_shot_curve` for NMC (its defaults:
  10 draws, seed 0); mean and standard deviation over draws; NaN when some class has too few images
  for ``k`` training shots plus one test image.
* ``silhouette``: :func:`sklearn.metrics.silhouette_score` of the class labels in feature space,
  cosine distance (the NMC metric); in ``[-1, 1]``, higher = tighter, better separated classes.
* ``{nmc,knn,linear}_accuracy_low / _high`` (after the columns, in JSON too): the 95 % Wilson interval of
  each accuracy over its test images (:func:`core.classify.intervals.wilson_interval`).

:func:`accuracy_verdicts` says, per classifier, whether the most accurate source can be told apart
from the runner-up: McNemar's exact test on the test images both were scored on (the split is the
same for every source, so the pairs are the same images).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from core.classify.evaluation import EvalResult, evaluate, few_shot_curve
from core.classify.intervals import mcnemar_exact
from core.compare.speed import TIMED_FORWARD_IMAGES, TIMED_FORWARD_REPEATS, Speed
from core.models.base import Backbone
from core.models.extract import FeatureSet

DEFAULT_SHOTS: tuple[int, ...] = (1, 5)
ACCURACIES: tuple[tuple[str, str], ...] = (("nmc", "NMC"), ("knn", "k-NN"), ("linear", "linear probe"))
SIGNIFICANCE = 0.05  # a verdict says "better" below this McNemar p-value


# ---- the table's columns ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One column of the metrics table.

    Attributes:
        key: the field name in :meth:`MetricsRow.as_dict` and in the CLI's JSON.
        label: short header.
        better: ``"higher"`` / ``"lower"`` when a best value exists (it is highlighted), else None.
        help: one line for a tooltip.
    """

    key: str
    label: str
    better: Literal["higher", "lower"] | None
    help: str


def columns(shots: Sequence[int] = DEFAULT_SHOTS) -> list[Column]:
    """The metrics table's columns, in display order (few-shot columns follow ``shots``)."""
    cols = [
        Column("backbone", "backbone", None, "registry name"),
        Column("family", "family", None, "vit, cnn or clip"),
        Column("dim", "dim", None, "dimension of the global embedding"),
        Column("params", "params", "lower", "parameters of the whole model (fewest is highlighted; n/a for an "
                                            "imported set: no model here)"),
        Column("images_per_s", "img/s", "higher", "images per second on this machine (see 'speed from'; n/a for an "
                                                  "imported set)"),
        Column("speed_source", "speed from", None,
               "extraction: timed while the features were computed; timed forward: features came from the "
               f"cache, so {TIMED_FORWARD_IMAGES} images were run through preprocessing + forward "
               f"(fastest of {TIMED_FORWARD_REPEATS} runs); n/a: an imported set, no model to time"),
        Column("nmc_accuracy", "NMC acc.", "higher", "nearest class mean (cosine), core.classify.evaluation.evaluate"),
        Column("knn_accuracy", "k-NN acc.", "higher", "k-nearest neighbours (cosine, k=5), core.classify.evaluation.evaluate"),
        Column("linear_accuracy", "linear acc.", "higher", "logistic regression on L2-normalised features"),
    ]
    for k in shots:
        cols += [Column(f"nmc_{k}shot_mean", f"{k}-shot NMC", "higher",
                        f"NMC accuracy with {k} training image(s) per class, mean over draws"),
                 Column(f"nmc_{k}shot_std", f"{k}-shot ±", None, "standard deviation over draws")]
    cols.append(Column("silhouette", "silhouette", "higher", "silhouette of the classes, cosine distance"))
    return cols



def count_parameters(backbone: Backbone) -> int:
    """``sum(numel)`` over the parameters of ``backbone.model``."""
    return int(sum(p.numel() for p in backbone.model.parameters()))


# ---- per-backbone metrics ---------------------------------------------------------------------------
SILHOUETTE_MAX_N = 5_000  # the silhouette needs all pairwise distances: above this, a seeded sample


def silhouette_sample_size(n: int) -> int:
    """How many of ``n`` images :func:`silhouette` uses (state it in a caption)."""
    return min(n, SILHOUETTE_MAX_N)


def silhouette(X: ArrayLike, y: ArrayLike) -> float:
    """Silhouette score of the labels ``y [N]`` in feature space ``X [N, D]`` (cosine distance),
    on a seeded sample of :func:`silhouette_sample_size` images when N is larger (O(N^2) otherwise).

    Raises:
        ValueError: fewer than 2 classes, or as many classes as images.
    """
    from sklearn.metrics import silhouette_score

    X = np.asarray(X)
    y = np.asarray(y)
    k = len(np.unique(y))
    if not 2 <= k <= len(y) - 1:
        raise ValueError(f"the silhouette needs 2 to N-1 classes, got {k} classes for {len(y)} images")
    n = silhouette_sample_size(len(y))
    if n < len(y):
        rows = np.sort(np.random.default_rng(0).choice(len(y), size=n, replace=False))
        X, y = X[rows], y[rows]
        if len(np.unique(y)) < 2:
            raise ValueError(f"the silhouette sample of {n} images holds fewer than 2 classes")
    return float(silhouette_score(X.astype(np.float64), y, metric="cosine"))  # the sample only in float64


@dataclass(frozen=True)
class FeatureMetrics:
    """Everything the table computes from one backbone's features ``X`` and labels ``y``.

    Attributes:
        evals: ``{"nmc", "knn", "linear"}`` -> :class:`core.classify.evaluation.EvalResult`.
        few_shot: ``{k: (mean, std, n_draws)}`` NMC accuracy with k shots (NaN, NaN, 0 if skipped).
        silhouette: see :func:`silhouette`.
    """

    evals: dict[str, EvalResult]
    few_shot: dict[int, tuple[float, float, int]]
    silhouette: float


def feature_metrics(X: ArrayLike, y: ArrayLike, *, shots: Sequence[int] = DEFAULT_SHOTS,
                    test_size: float | None = None, seed: int | None = None, draws: int | None = None) -> FeatureMetrics:
    """NMC, k-NN and linear-probe accuracy, few-shot NMC and the silhouette of one feature set.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.
        shots: training images per class for the few-shot columns.
        test_size / seed: passed to :func:`core.classify.evaluation.evaluate` (and ``seed`` to
            :func:`core.classify.evaluation.few_shot_curve`) only when given, so the library's own defaults
            apply otherwise.
        draws: passed to ``few_shot_curve`` when given.
    """
    ev_kw: dict[str, Any] = {k: v for k, v in (("test_size", test_size), ("seed", seed)) if v is not None}
    fs_kw: dict[str, Any] = {k: v for k, v in (("draws", draws), ("seed", seed)) if v is not None}
    evals = {m: evaluate(X, y, m, **ev_kw) for m in ("nmc", "knn", "linear")}
    rows = few_shot_curve(X, y, shots=tuple(shots), methods=("nmc",), **fs_kw)
    by_k = {r.shots: (r.mean_acc, r.std_acc, r.n_draws) for r in rows}
    few = {int(k): by_k.get(int(k), (math.nan, math.nan, 0)) for k in shots}
    return FeatureMetrics(evals, few, silhouette(X, y))


@dataclass(frozen=True)
class MetricsRow:
    """One backbone's row of the table (see the module docstring for each definition)."""

    backbone: str
    family: str
    dim: int
    params: float  # an int count for a backbone; NaN without a model
    images_per_s: float
    speed_source: str
    nmc_accuracy: float
    knn_accuracy: float
    linear_accuracy: float
    few_shot: dict[int, tuple[float, float, int]]
    silhouette: float
    protocol: str
    n_images: int
    n_classes: int
    accuracy_ci: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # "nmc" -> 95 % Wilson (low, high)
    # "nmc" -> (test_indices [T], correct [T] bool): what the paired verdicts compare; not in as_dict
    test_correct: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Flat dict in :func:`columns` order, few-shot as ``nmc_{k}shot_mean`` / ``_std``, then
        ``protocol``, ``n_images``, ``n_classes`` and each accuracy's ``_low`` / ``_high``."""
        d: dict[str, Any] = dict(backbone=self.backbone, family=self.family, dim=self.dim, params=self.params,
                                 images_per_s=self.images_per_s, speed_source=self.speed_source,
                                 nmc_accuracy=self.nmc_accuracy, knn_accuracy=self.knn_accuracy,
                                 linear_accuracy=self.linear_accuracy)
        for k, (mean, std, _) in self.few_shot.items():
            d[f"nmc_{k}shot_mean"] = mean
            d[f"nmc_{k}shot_std"] = std
        d.update(silhouette=self.silhouette, protocol=self.protocol, n_images=self.n_images, n_classes=self.n_classes)
        for m, (lo, hi) in self.accuracy_ci.items():
            d[f"{m}_accuracy_low"], d[f"{m}_accuracy_high"] = lo, hi
        return d


def metrics_row(backbone: Backbone, fs: FeatureSet, speed: Speed, fm: FeatureMetrics) -> MetricsRow:
    """Assemble a :class:`MetricsRow` from a backbone, its features, its speed and its metrics."""
    return source_row(backbone.spec.name, fs["embedding"], fs.labels, fm, family=backbone.spec.family,
                      params=count_parameters(backbone), speed=speed)


NO_MODEL = "n/a"  # speed_source of a row without a model (an imported set): params and img/s are NaN


def source_row(name: str, X: ArrayLike, labels: ArrayLike, fm: FeatureMetrics, *, family: str = "imported",
               params: float = math.nan, speed: Speed | None = None) -> MetricsRow:
    """A :class:`MetricsRow` of any source of embeddings ``X [N, D]`` with ``labels [N]``: a backbone
    gives its family, parameter count and speed; an imported set has no model, so ``params`` and
    ``images_per_s`` are NaN (null in JSON, "n/a" in a table) and ``speed_source`` is :data:`NO_MODEL`."""
    nmc = fm.evals["nmc"]
    return MetricsRow(
        backbone=name, family=family, dim=int(np.shape(X)[1]), params=params,
        images_per_s=float(speed.images_per_s) if speed is not None else math.nan,
        speed_source=speed.source if speed is not None else NO_MODEL,
        nmc_accuracy=nmc.accuracy, knn_accuracy=fm.evals["knn"].accuracy, linear_accuracy=fm.evals["linear"].accuracy,
        few_shot=dict(fm.few_shot), silhouette=fm.silhouette, protocol=nmc.protocol, n_images=int(np.shape(X)[0]),
        n_classes=len(np.unique(np.asarray(labels))),
        accuracy_ci={m: (fm.evals[m].ci_low, fm.evals[m].ci_high) for m, _ in ACCURACIES},
        test_correct={m: (np.asarray(fm.evals[m].test_indices), _correct(fm.evals[m])) for m, _ in ACCURACIES},
    )


def _correct(ev: EvalResult) -> np.ndarray:
    return np.asarray(ev.y_true) == np.asarray(ev.y_pred)


def accuracy_verdicts(rows: Sequence[MetricsRow]) -> list[str]:
    """One sentence per classifier: the most accurate source against the runner-up, paired over the same
    test images (McNemar's exact test, :func:`core.classify.intervals.mcnemar_exact`); "better" only
    where p < :data:`SIGNIFICANCE`, else "cannot be told apart". Empty with fewer than two rows, and
    a classifier is skipped when the rows were not scored on the same test images (or lack them)."""
    out: list[str] = []
    if len(rows) < 2:
        return out
    for m, name in ACCURACIES:
        if any(m not in r.test_correct for r in rows):
            continue
        order = sorted(range(len(rows)), key=lambda i: -getattr(rows[i], f"{m}_accuracy"))
        a, b = rows[order[0]], rows[order[1]]
        (ia, ca), (ib, cb) = a.test_correct[m], b.test_correct[m]
        if not np.array_equal(ia, ib):
            continue
        only_a, only_b, p = mcnemar_exact(ca, cb)
        acc_a, acc_b = getattr(a, f"{m}_accuracy"), getattr(b, f"{m}_accuracy")
        detail = (f"{acc_a:.2f} vs {acc_b:.2f} on {len(ca):,} test images; only one of the two is right on "
                  f"{only_a} and {only_b} of them, McNemar p = {p:.2g}")
        if p < SIGNIFICANCE and acc_a > acc_b:
            out.append(f"{name}: {a.backbone} is more accurate than {b.backbone} ({detail}).")
        else:
            out.append(f"{name}: the best two, {a.backbone} and {b.backbone}, cannot be told apart at this sample "
                       f"size ({detail}).")
    return out


def best_per_column(rows: Sequence[Mapping[str, Any]], cols: Sequence[Column]) -> dict[str, set[int]]:
    """Row indices holding the best value of every column with a direction (ties: all of them;
    NaN never wins; a column where all values are NaN has no best)."""
    out: dict[str, set[int]] = {}
    for c in cols:
        if c.better is None:
            continue
        vals = np.array([float(r[c.key]) for r in rows], dtype=np.float64)
        ok = ~np.isnan(vals)
        if not ok.any():
            continue
        best = np.nanmax(vals) if c.better == "higher" else np.nanmin(vals)
        out[c.key] = {i for i in range(len(rows)) if ok[i] and np.isclose(vals[i], best, rtol=0, atol=1e-12)}
    return out
