"""Several backbones on the same images: one metrics row per backbone, CKA between them, layer-by-layer
CKA, NMC agreement, and the saliency method each backbone supports (nearest neighbours come from
:mod:`core.geometry.neighbours`).

Every accuracy comes from :mod:`core.classify.prototypes` (``evaluate`` and ``few_shot_curve``, called with
their own defaults), so the table shows exactly what the Prototypes page and ``evaluate`` give for
the same features and split. CKA comes from :mod:`core.compare.cka`.

Definitions used in the table:

* ``dim``: the global embedding's dimension D (the backbone's default embedding block).
* ``params``: ``sum(p.numel() for p in backbone.model.parameters())`` -- the whole model object
  (for CLIP that includes the text tower).
* ``images_per_s``: measured on this machine. From the extraction statistics when the features
  were just computed (``FeatureSet.stats``: images computed / wall time of ``extract_features``,
  which includes decoding, preprocessing and cache writes); when they came from the feature cache,
  a short timed run of preprocessing + forward on a few images instead (after one warm-up image,
  fastest of two runs).
  ``speed_source`` says which one a row used.
* ``nmc/knn/linear_accuracy``: :func:`core.classify.evaluation.evaluate` with its defaults (stratified hold-out
  of 30 % per class with seed 0, or leave-one-out for tiny sets); the same split for every backbone,
  since the split depends only on the labels and the seed.
* ``nmc_{k}shot_mean / _std``: :func:`core.classify.evaluation.few_shot_curve` for NMC (its defaults: 10
  draws, seed 0); mean and standard deviation over draws; NaN when some class has too few images
  for ``k`` training shots plus one test image.
* ``silhouette``: :func:`sklearn.metrics.silhouette_score` of the class labels in feature space,
  cosine distance (the NMC metric); in ``[-1, 1]``, higher = tighter, better separated classes.

Layer-by-layer features (:func:`layer_features`): for every block, either the backbone's global
embedding at that block (``pool="embedding"``: the CLS token after the final norm for ViTs, the
global average pool of the stage for CNNs; the last block uses the model's own head pooling) or
the mean of the block's patch tokens / feature-map positions (``pool="mean"``). They are defined by
the Backbone contract (``extract_layers``, i.e. ``extract(x, layer)`` per block); timm models
compute all blocks in one forward with their own ``forward_intermediates`` (tested equal to one
``extract`` per block), other backbones call ``extract`` once per block.

Nothing here imports Streamlit.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike

from core.models.base import Backbone
from core.compare.cka import cka_matrix, layer_cka
from core.models.extract import FeatureSet, extract_features
from core.io.images import ImageRecord
from core.classify.evaluation import EvalResult, evaluate, few_shot_curve
from core.io.store import FeatureStore

CkaKind = Literal["linear", "rbf"]
Pool = Literal["embedding", "mean"]
SpeedSource = Literal["extraction", "timed forward"]
ProgressFn = Callable[[int, int], None]

DEFAULT_SHOTS: tuple[int, ...] = (1, 5)
MIN_IMAGES_FOR_STATS_SPEED = 8  # fewer freshly computed images than this: time a forward instead
TIMED_FORWARD_IMAGES = 8
TIMED_FORWARD_REPEATS = 2
LAYER_POOLS: dict[str, str] = {
    "embedding": "the backbone's global embedding at each block (ViT: CLS token after the final norm; "
                 "CNN: global average pool of the stage; last block: the model's own head pooling)",
    "mean": "the mean of each block's patch tokens (CNN: of the stage's feature-map positions)",
}


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
        Column("params", "params", "lower", "parameters of the whole model (fewest is highlighted)"),
        Column("images_per_s", "img/s", "higher", "images per second on this machine (see 'speed from')"),
        Column("speed_source", "speed from", None,
               "extraction: timed while the features were computed; timed forward: features came from the "
               f"cache, so {TIMED_FORWARD_IMAGES} images were run through preprocessing + forward "
               f"(fastest of {TIMED_FORWARD_REPEATS} runs)"),
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


# ---- speed and size ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speed:
    """Images per second, and how it was measured (see the module docstring)."""

    images_per_s: float
    source: SpeedSource
    n_images: int
    seconds: float


def count_parameters(backbone: Backbone) -> int:
    """``sum(numel)`` over the parameters of ``backbone.model``."""
    return int(sum(p.numel() for p in backbone.model.parameters()))


def extraction_speed(fs: FeatureSet, min_images: int = MIN_IMAGES_FOR_STATS_SPEED) -> Speed | None:
    """Images/s from the statistics of an extraction, or None when fewer than ``min_images`` images
    were computed (mostly cache hits: the time would not measure the model)."""
    s = fs.stats
    if s.n_computed < min_images or s.seconds <= 0:
        return None
    return Speed(s.n_computed / s.seconds, "extraction", s.n_computed, s.seconds)


def timed_forward_speed(backbone: Backbone, records: Sequence[ImageRecord], *, size: int | None = None,
                        n_images: int = TIMED_FORWARD_IMAGES, repeats: int = TIMED_FORWARD_REPEATS,
                        layer: int | None = None) -> Speed:
    """Images/s of preprocessing + one batched forward (global embedding) of ``n_images`` images.

    One image goes through first, untimed, so lazy initialisation is not counted; then the batch is
    timed ``repeats`` times and the fastest run counts (other processes on a shared machine only
    ever slow a run down). Decoding is not timed.
    """
    if not records:
        raise ValueError("need at least one image to time a forward pass")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    images = [r.decode() for r in records[:n_images]]
    size = backbone.spec.check_size(size or backbone.spec.input_size)
    backbone.extract(backbone.preprocess(images[:1], size), layer, want=("embedding",))  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        backbone.extract(backbone.preprocess(images, size), layer, want=("embedding",))
        best = min(best, time.perf_counter() - t0)
    return Speed(len(images) / best, "timed forward", len(images), best)


def measure_speed(backbone: Backbone, fs: FeatureSet, *, n_images: int = TIMED_FORWARD_IMAGES) -> Speed:
    """:func:`extraction_speed` of ``fs`` when it computed enough images, else :func:`timed_forward_speed`
    on its first ``n_images`` images (same input size)."""
    return extraction_speed(fs) or timed_forward_speed(backbone, fs.records, size=fs.size, n_images=n_images)


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

    X = np.asarray(X, dtype=np.float64)
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
    return float(silhouette_score(X, y, metric="cosine"))


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
    params: int
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

    def as_dict(self) -> dict[str, Any]:
        """Flat dict in :func:`columns` order, few-shot as ``nmc_{k}shot_mean`` / ``_std``, then
        ``protocol``, ``n_images``, ``n_classes``."""
        d: dict[str, Any] = dict(backbone=self.backbone, family=self.family, dim=self.dim, params=self.params,
                                 images_per_s=self.images_per_s, speed_source=self.speed_source,
                                 nmc_accuracy=self.nmc_accuracy, knn_accuracy=self.knn_accuracy,
                                 linear_accuracy=self.linear_accuracy)
        for k, (mean, std, _) in self.few_shot.items():
            d[f"nmc_{k}shot_mean"] = mean
            d[f"nmc_{k}shot_std"] = std
        d.update(silhouette=self.silhouette, protocol=self.protocol, n_images=self.n_images, n_classes=self.n_classes)
        return d


def metrics_row(backbone: Backbone, fs: FeatureSet, speed: Speed, fm: FeatureMetrics) -> MetricsRow:
    """Assemble a :class:`MetricsRow` from a backbone, its features, its speed and its metrics."""
    X = fs["embedding"]
    nmc = fm.evals["nmc"]
    return MetricsRow(
        backbone=backbone.spec.name, family=backbone.spec.family, dim=int(X.shape[1]),
        params=count_parameters(backbone), images_per_s=float(speed.images_per_s), speed_source=speed.source,
        nmc_accuracy=nmc.accuracy, knn_accuracy=fm.evals["knn"].accuracy, linear_accuracy=fm.evals["linear"].accuracy,
        few_shot=dict(fm.few_shot), silhouette=fm.silhouette, protocol=nmc.protocol, n_images=len(fs.records),
        n_classes=len(np.unique(fs.labels)),
    )


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


# ---- several backbones on the same images -----------------------------------------------------------
def check_aligned(fsets: Sequence[FeatureSet]) -> None:
    """Raise unless every feature set holds the same images (sha256 and label) in the same order."""
    if len(fsets) == 0:
        raise ValueError("need at least one feature set")
    ref = [(r.sha256, r.label) for r in fsets[0].records]
    for fs in fsets[1:]:
        if [(r.sha256, r.label) for r in fs.records] != ref:
            raise ValueError(f"{fs.backbone} and {fsets[0].backbone} hold different images (or orders); compare "
                             "feature sets extracted from the same records")


def cka_between(fsets: Sequence[FeatureSet], kind: CkaKind = "linear", sigma_frac: float = 0.5) -> np.ndarray:
    """CKA ``[B, B]`` between the global embeddings of ``B`` backbones on the same images."""
    check_aligned(fsets)
    return cka_matrix([fs["embedding"] for fs in fsets], kind=kind, sigma_frac=sigma_frac)


@dataclass(frozen=True)
class Disagreement:
    """A test image on which two backbones' NMC predictions differ.

    Attributes:
        index: row in the feature sets.
        name: the image's name.
        true: its label.
        pred_a / pred_b: the two predictions.
    """

    index: int
    name: str
    true: str
    pred_a: str
    pred_b: str


@dataclass(frozen=True)
class PairAgreement:
    """How often two backbones' NMC predictions agree on the same test images.

    Attributes:
        a / b: backbone names.
        n_test: test images.
        agree: share of test images with the same prediction.
        both_correct / only_a / only_b / both_wrong: counts (``only_a``: A right, B wrong).
        disagreements: the images where the predictions differ, in test order.
    """

    a: str
    b: str
    n_test: int
    agree: float
    both_correct: int
    only_a: int
    only_b: int
    both_wrong: int
    disagreements: list[Disagreement] = field(default_factory=list)


def agreement(results: Mapping[str, EvalResult], names: Sequence[str]) -> list[PairAgreement]:
    """NMC agreement for every pair of backbones (in the order of ``results``).

    Args:
        results: backbone name -> its NMC :class:`EvalResult`, all on the same test images.
        names: the image name of every row of the feature sets (``FeatureSet.names``).

    Raises:
        ValueError: the results do not predict the same test images.
    """
    keys = list(results)
    if len(keys) < 2:
        raise ValueError(f"agreement needs at least 2 backbones, got {len(keys)}")
    ref = results[keys[0]]
    for k in keys[1:]:
        r = results[k]
        if not np.array_equal(r.test_indices, ref.test_indices) or not np.array_equal(r.y_true, ref.y_true):
            raise ValueError(f"{k} and {keys[0]} were evaluated on different test images; use the same labels, "
                             "protocol and seed")
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            ra, rb = results[a], results[b]
            same = ra.y_pred == rb.y_pred  # [T]
            ca, cb = ra.y_pred == ra.y_true, rb.y_pred == rb.y_true
            dis = [Disagreement(int(ra.test_indices[t]), names[int(ra.test_indices[t])], str(ra.y_true[t]),
                                str(ra.y_pred[t]), str(rb.y_pred[t])) for t in np.flatnonzero(~same)]
            out.append(PairAgreement(a, b, int(len(same)), float(same.mean()), int((ca & cb).sum()),
                                     int((ca & ~cb).sum()), int((~ca & cb).sum()), int((~ca & ~cb).sum()), dis))
    return out


@dataclass(frozen=True)
class Comparison:
    """The whole comparison of ``B`` backbones on one labelled image set.

    Attributes:
        backbones: names, in the order of ``rows`` and of the CKA matrix.
        rows: one :class:`MetricsRow` per backbone.
        metrics: name -> :class:`FeatureMetrics` (holds the NMC predictions).
        cka: ``[B, B]`` CKA between the global embeddings.
        cka_kind: ``"linear"`` or ``"rbf"``.
        agreement: :func:`agreement` of the NMC predictions, one entry per pair.
        shots: the few-shot columns.
    """

    backbones: list[str]
    rows: list[MetricsRow]
    metrics: dict[str, FeatureMetrics]
    cka: np.ndarray
    cka_kind: str
    agreement: list[PairAgreement]
    shots: tuple[int, ...] = DEFAULT_SHOTS

    def to_json(self) -> list[dict[str, Any]]:
        """A list with one object per backbone: the row's fields (:meth:`MetricsRow.as_dict`), plus
        ``cka`` = this backbone's row of the CKA matrix, ``cka_order`` = the backbone each entry of
        ``cka`` refers to (the same list in every object) and ``cka_kind``. NaN becomes None."""
        out = []
        for i, r in enumerate(self.rows):
            d = {k: _json_value(v) for k, v in r.as_dict().items()}
            d.update(cka=[float(v) for v in self.cka[i]], cka_order=list(self.backbones), cka_kind=self.cka_kind)
            out.append(d)
        return out


def _json_value(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def build_comparison(backbones: Sequence[Backbone], fsets: Sequence[FeatureSet], speeds: Sequence[Speed], *,
                     cka_kind: CkaKind = "linear", sigma_frac: float = 0.5, shots: Sequence[int] = DEFAULT_SHOTS,
                     **metric_kw: Any) -> Comparison:
    """Metrics rows, CKA and agreement from already extracted features.

    Args:
        backbones / fsets / speeds: one each per backbone, same order; the feature sets hold the
            same labelled images (``"embedding"``).
        cka_kind / sigma_frac: see :func:`core.compare.cka.cka_matrix`.
        shots: few-shot columns.
        **metric_kw: ``test_size``, ``seed``, ``draws`` for :func:`feature_metrics`.

    Raises:
        ValueError: fewer than 2 backbones, misaligned feature sets, or unlabelled images.
    """
    if not len(backbones) == len(fsets) == len(speeds):
        raise ValueError(f"got {len(backbones)} backbones, {len(fsets)} feature sets and {len(speeds)} speeds")
    if len(backbones) < 2:
        raise ValueError(f"a comparison needs at least 2 backbones, got {len(backbones)}")
    names = [b.spec.name for b in backbones]
    if len(set(names)) != len(names):
        raise ValueError(f"each backbone may appear once, got {names}")
    check_aligned(fsets)
    labels = fsets[0].labels
    if not labels or not all(labels):
        raise ValueError("the metrics need a labelled image set (every image in a class folder: root/<class>/<image>)")
    metrics = {n: feature_metrics(fs["embedding"], labels, shots=shots, **metric_kw) for n, fs in zip(names, fsets)}
    rows = [metrics_row(b, fs, s, metrics[n]) for n, b, fs, s in zip(names, backbones, fsets, speeds)]
    cka = cka_between(fsets, cka_kind, sigma_frac)
    agree = agreement({n: metrics[n].evals["nmc"] for n in names}, fsets[0].names)
    return Comparison(names, rows, metrics, cka, cka_kind, agree, tuple(int(k) for k in shots))


def compare_backbones(backbones: Sequence[Backbone], records: Sequence[ImageRecord], *,
                      store: FeatureStore | None = None, batch_size: int = 16, cka_kind: CkaKind = "linear",
                      sigma_frac: float = 0.5, progress: Callable[[str, int, int], None] | None = None,
                      **metric_kw: Any) -> tuple[Comparison, list[FeatureSet]]:
    """Extract (or reload) every backbone's embeddings of ``records`` and compare them.

    Each backbone runs at its spec's input size and default embedding block.

    Args:
        progress: called as ``progress(backbone name, done, total)`` during each extraction.

    Returns:
        the :class:`Comparison` and the feature sets (their ``failures`` list skipped files).
    """
    fsets, speeds = [], []
    for b in backbones:
        cb = (lambda d, t, n=b.spec.name: progress(n, d, t)) if progress else None
        fs = extract_features(b, records, kinds=("embedding",), batch_size=batch_size, store=store, progress=cb)
        fsets.append(fs)
        speeds.append(measure_speed(b, fs))
    return build_comparison(backbones, fsets, speeds, cka_kind=cka_kind, sigma_frac=sigma_frac, **metric_kw), fsets


# ---- saliency: the method each backbone supports ----------------------------------------------------
@dataclass(frozen=True)
class SaliencyView:
    """One backbone's saliency map of one picture.

    Attributes:
        map: ``[h, w]`` (rollout, patch grid) or ``[S, S]`` (Grad-CAM, input pixels), in ``[0, 1]``.
        method: ``"attention rollout"`` or ``"Grad-CAM"``.
        target: what the map explains, for display.
    """

    map: np.ndarray
    method: str
    target: str


def default_saliency(backbone: Backbone, image, size: int | None = None, prototypes=None) -> SaliencyView:
    """Attention rollout (mean over heads, all blocks) for backbones with attention, else Grad-CAM of
    the head's top class, else Grad-CAM of the cosine similarity to the nearest class prototype.

    Args:
        backbone: the model (not changed; see :mod:`core.explain.saliency`).
        image: an RGB ``PIL.Image``.
        size: input side (None: the spec's).
        prototypes: :class:`core.explain.saliency.Prototypes` of the *final* embeddings, needed only for
            backbones with neither attention nor a classifier head.
    """
    from core.explain.saliency import CamTarget, compute_cam, top_classes, vit_attention

    size = backbone.spec.check_size(size or backbone.spec.input_size)
    x = backbone.preprocess([image], size)  # [1, 3, S, S]
    if backbone.spec.has_attention:
        return SaliencyView(vit_attention(backbone, x).rollout(), "attention rollout", "CLS token")
    if backbone.spec.has_classifier:
        top = top_classes(backbone, x, k=1)[0]
        target = CamTarget.imagenet_class(backbone, top.index)
        cam = compute_cam(backbone, x, "Grad-CAM", target)  # [S, S]
        return SaliencyView(cam, "Grad-CAM", f"{top.name} ({top.probability:.0%})")
    if prototypes is None:
        raise ValueError(f"{backbone.spec.name} has neither attention nor a classifier head: pass class prototypes "
                         "of its final embeddings to explain the nearest one")
    emb = backbone.embed(x, -1)[0].float().numpy()  # [D]
    sims = prototypes.vectors @ (emb / max(float(np.linalg.norm(emb)), 1e-12))  # [K]
    c = int(np.argmax(sims))
    target = CamTarget.similarity(f"prototype: {prototypes.classes[c]}", prototypes.vectors[c])
    return SaliencyView(compute_cam(backbone, x, "Grad-CAM", target), "Grad-CAM", target.label)


# ---- layer-by-layer features ------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerFeatures:
    """One representation ``[N, D_l]`` per block of one backbone, for the same N images.

    Attributes:
        backbone: name.
        layers: block indices (``0..num_layers-1``).
        pool: ``"embedding"`` or ``"mean"`` (see :data:`LAYER_POOLS`).
        features: per layer ``[N, D_l]`` float32.
        size: input side.
    """

    backbone: str
    layers: list[int]
    pool: str
    features: list[np.ndarray]
    size: int


def block_representations(backbone: Backbone, x: torch.Tensor, layers: Sequence[int],
                          pool: Pool = "mean") -> list[np.ndarray]:
    """Pooled representations of a batch ``x [N, 3, S, S]`` at each of ``layers`` -> per layer ``[N, D_l]``."""
    if pool not in LAYER_POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {list(LAYER_POOLS)}")
    idx = [backbone.resolve_layer(l) for l in layers]
    kind = "embedding" if pool == "embedding" else "patch_tokens"
    outs = backbone.extract_layers(x, sorted(set(idx)), want=(kind,))  # one forward for timm models
    by_layer = {l: o[kind] if pool == "embedding" else o[kind].mean((1, 2)) for l, o in outs.items()}  # [N, D_l]
    return [by_layer[l].float().cpu().numpy() for l in idx]


def layer_features(backbone: Backbone, records: Sequence[ImageRecord], *, layers: Sequence[int] | None = None,
                   pool: Pool = "mean", size: int | None = None, batch_size: int = 16,
                   progress: ProgressFn | None = None) -> LayerFeatures:
    """Every block's pooled representation of ``records`` (for :func:`core.compare.cka.layer_cka`).

    Args:
        backbone: the model.
        records: the images (decoded here; a file that no longer decodes raises ``ImageDecodeError``).
        layers: block indices (negative from the end); None = all blocks.
        pool: ``"embedding"`` or ``"mean"`` (:data:`LAYER_POOLS`).
        size: input side (None: the spec's).
        batch_size: images per forward.
        progress: called as ``progress(done, total)`` after each batch.
    """
    if len(records) < 2:
        raise ValueError(f"layer CKA needs at least 2 images, got {len(records)}")
    size = backbone.spec.check_size(size or backbone.spec.input_size)
    idx = [backbone.resolve_layer(l) for l in (range(backbone.spec.num_layers) if layers is None else layers)]
    chunks: list[list[np.ndarray]] = [[] for _ in idx]
    for s in range(0, len(records), batch_size):
        batch = records[s:s + batch_size]
        x = backbone.preprocess([r.decode() for r in batch], size)  # [B, 3, S, S]
        for c, f in zip(chunks, block_representations(backbone, x, idx, pool)):
            c.append(f)
        if progress:
            progress(min(s + batch_size, len(records)), len(records))
    return LayerFeatures(backbone.spec.name, idx, pool, [np.concatenate(c) for c in chunks], size)


def layer_cka_between(a: LayerFeatures, b: LayerFeatures, kind: CkaKind = "linear",
                      sigma_frac: float = 0.5) -> np.ndarray:
    """``[LA, LB]`` CKA between every block of ``a`` and every block of ``b`` (same images)."""
    return layer_cka(a.features, b.features, kind=kind, sigma_frac=sigma_frac)
