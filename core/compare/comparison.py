"""Several backbones (or any embedding sources, :func:`compare_sources`) on the same images: one metrics
row per backbone (:mod:`core.compare.metrics`),
speed (:mod:`core.compare.speed`), CKA between them (:mod:`core.compare.cka`), NMC agreement
(:mod:`core.compare.agreement`), the whole comparison as JSON, and the saliency method each backbone
supports. Layer-by-layer CKA is :mod:`core.compare.layers`; nearest neighbours come from
:mod:`core.geometry.neighbours`.

Nothing here imports Streamlit.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.compare.agreement import PairAgreement, agreement
from core.compare.cka import Kind as CkaKind
from core.compare.cka import cka_matrix
from core.compare.indices import INDICES, IndexMatrix, index_matrices, index_names
from core.compare.metrics import (
    DEFAULT_SHOTS,
    FeatureMetrics,
    MetricsRow,
    count_parameters,
    feature_metrics,
    metrics_row,
    source_row,
)
from core.compare.sources import MIN_SHARED, AlignedSources, EmbeddingSource, align_sources
from core.compare.speed import Speed, measure_speed
from core.io.images import ImageRecord
from core.io.store import FeatureStore
from core.models.base import Backbone
from core.models.extract import FeatureSet, extract_features

StepProgress = Callable[[int, int, str], None]  # (steps done, steps in all, the step now starting)


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
    indices: dict[str, IndexMatrix] = field(default_factory=dict)
    alignment: dict[str, Any] | None = None  # sources: AlignedSources.as_dict() (key, n_shared, images per source)

    def to_json(self) -> list[dict[str, Any]]:
        """A list with one object per backbone: the row's fields (:meth:`MetricsRow.as_dict`), plus
        ``cka`` = this backbone's row of the CKA matrix, ``cka_order`` = the backbone each entry of
        ``cka`` refers to (the same list in every object) and ``cka_kind``; then, for every similarity
        index computed (a name of :data:`core.compare.indices.INDICES`), this backbone's row of its matrix
        under the index's name (same order as ``cka``), and ``index_details[name]`` with the rows of ``ci_low``, ``ci_high``, ``baseline``,
        ``baseline_high``, ``p_value`` and the settings (``k``, ``n_boot``, ``n_perm``, ``level``,
        ``n_images``). A comparison of sources (:func:`compare_sources`) adds ``aligned_by``, ``n_shared``
        and ``n_images_per_source`` to each object. NaN becomes None (``params`` and ``images_per_s`` of an
        imported set)."""
        out = []
        for i, r in enumerate(self.rows):
            d = {k: _json_value(v) for k, v in r.as_dict().items()}
            if self.alignment is not None:
                d.update(self.alignment)
            d.update(cka=[float(v) for v in self.cka[i]], cka_order=list(self.backbones), cka_kind=self.cka_kind)
            details: dict[str, dict[str, Any]] = {}
            for name, m in self.indices.items():
                d[name] = [_json_value(v) for v in m.value[i]]
                e = next(iter(m.estimates.values()))
                details[name] = {f: [_json_value(v) for v in getattr(m, f)[i]]
                                 for f in ("ci_low", "ci_high", "baseline", "baseline_high", "p_value")}
                details[name].update(k=e.k, n_boot=e.n_boot, n_perm=e.n_perm, level=e.level, n_images=e.n_images)
            if details:
                d["index_details"] = details
            out.append(d)
        return out


def _json_value(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def similarity_indices(fsets: Sequence[FeatureSet], names: Sequence[str] | None = None,
                       **index_kw: Any) -> dict[str, IndexMatrix]:
    """:func:`core.compare.indices.index_matrices` (every index in ``names``, None = every registered one;
    each pair's shared work made once) between the global embeddings of aligned feature sets
    (``index_kw``: ``k``, ``n_boot``, ``n_perm``, ``level``, ``seed``)."""
    check_aligned(fsets)
    feats, backbones = [fs["embedding"] for fs in fsets], [fs.backbone for fs in fsets]
    return index_matrices(index_names() if names is None else names, feats, backbones, **index_kw)


def build_comparison(backbones: Sequence[Backbone], fsets: Sequence[FeatureSet], speeds: Sequence[Speed], *,
                     cka_kind: CkaKind = "linear", sigma_frac: float = 0.5, shots: Sequence[int] = DEFAULT_SHOTS,
                     indices: Sequence[str] = (), index_kw: dict[str, Any] | None = None,
                     **metric_kw: Any) -> Comparison:
    """Metrics rows, CKA and agreement from already extracted features.

    Args:
        backbones / fsets / speeds: one each per backbone, same order; the feature sets hold the
            same labelled images (``"embedding"``).
        cka_kind / sigma_frac: see :func:`core.compare.cka.cka_matrix`.
        shots: few-shot columns.
        indices: similarity indices to add (:func:`core.compare.indices.index_names`; none by default).
        index_kw: ``k``, ``n_boot``, ``n_perm``, ``level``, ``seed`` for the indices.
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
    return _compare(names, [fs["embedding"] for fs in fsets], fsets[0].labels, fsets[0].names,
                    lambda i, fm: metrics_row(backbones[i], fsets[i], speeds[i], fm), cka_kind=cka_kind,
                    sigma_frac=sigma_frac, shots=shots, indices=indices, index_kw=index_kw, **metric_kw)


def _compare(names: list[str], feats: Sequence[np.ndarray], labels: Sequence[str] | np.ndarray, image_names: Sequence[str],
             row: Callable[[int, FeatureMetrics], MetricsRow], *, cka_kind: CkaKind, sigma_frac: float,
             shots: Sequence[int], indices: Sequence[str], index_kw: dict[str, Any] | None,
             alignment: dict[str, Any] | None = None, progress: StepProgress | None = None,
             **metric_kw: Any) -> Comparison:
    """The comparison of ``B`` representations ``feats`` (each ``[N, D_b]``, the same N labelled images):
    ``row(b, metrics)`` makes representation b's table row. ``progress(done, total, step)`` before each
    representation's metrics, before CKA, before the indices and at the end."""
    labels = list(labels) if not isinstance(labels, np.ndarray) else labels
    if len(labels) == 0 or not all(str(v) for v in labels):
        raise ValueError("the metrics need a labelled image set (every image in a class folder: root/<class>/<image>, "
                         "or an imported set with a label for every point)")
    steps = len(names) + 1 + (1 if indices else 0)

    def step(done: int, what: str) -> None:
        if progress is not None:
            progress(done, steps, what)

    metrics = {}
    for i, (n, X) in enumerate(zip(names, feats)):
        step(i, f"metrics of {n}")
        metrics[n] = feature_metrics(X, labels, shots=shots, **metric_kw)
    rows = [row(i, metrics[n]) for i, n in enumerate(names)]
    step(len(names), f"{cka_kind} CKA")
    cka = cka_matrix(list(feats), kind=cka_kind, sigma_frac=sigma_frac)
    agree = agreement({n: metrics[n].evals["nmc"] for n in names}, list(image_names))
    if indices:
        step(len(names) + 1, "similarity indices")
    sims = index_matrices(indices, list(feats), names, **(index_kw or {})) if indices else {}
    step(steps, "done")
    return Comparison(names, rows, metrics, cka, cka_kind, agree, tuple(int(k) for k in shots), sims, alignment)


def compare_sources(sources: Sequence[EmbeddingSource] | AlignedSources, *, cka_kind: CkaKind = "linear",
                    sigma_frac: float = 0.5, shots: Sequence[int] = DEFAULT_SHOTS,
                    indices: Sequence[str] = tuple(INDICES), index_kw: dict[str, Any] | None = None,
                    min_shared: int = MIN_SHARED, progress: StepProgress | None = None,
                    **metric_kw: Any) -> Comparison:
    """The comparison of two to four embedding sources (imported sets and / or backbones run on a folder,
    :mod:`core.compare.sources`) on the images they share: metrics rows (a source without a model has
    NaN params and speed), CKA, NMC agreement and the similarity indices, every number on the shared
    images only, in the first source's order.

    Args:
        sources: the sources, or their :func:`~core.compare.sources.align_sources` result.
        min_shared: fewest shared images accepted.
        progress: ``progress(done, total, step)`` before each source's metrics (accuracies, few-shot
            draws, silhouette: most of the time), before CKA and the indices, and at the end.
        cka_kind / sigma_frac / shots / indices / index_kw / **metric_kw: as :func:`build_comparison`
            (but every index by default, as :func:`compare_backbones`).

    Raises:
        ValueError: fewer than ``min_shared`` shared images, disagreeing or missing labels (one line).
    """
    al = sources if isinstance(sources, AlignedSources) else align_sources(sources, min_shared=min_shared)
    srcs = al.sources

    def row(i: int, fm: FeatureMetrics) -> MetricsRow:
        s = srcs[i]
        params = count_parameters(s.backbone) if s.backbone is not None else math.nan
        return source_row(s.name, al.features[i], al.labels, fm, family=s.family, params=params, speed=s.speed)

    return _compare(al.source_names, al.features, al.labels, al.names, row, cka_kind=cka_kind, sigma_frac=sigma_frac,
                    shots=shots, indices=indices, index_kw=index_kw, alignment=al.as_dict(), progress=progress,
                    **metric_kw)


def compare_backbones(backbones: Sequence[Backbone], records: Sequence[ImageRecord], *,
                      store: FeatureStore | None = None, batch_size: int = 16, cka_kind: CkaKind = "linear",
                      sigma_frac: float = 0.5, progress: Callable[[str, int, int], None] | None = None,
                      indices: Sequence[str] | None = None, index_kw: dict[str, Any] | None = None,
                      **metric_kw: Any) -> tuple[Comparison, list[FeatureSet]]:
    """Extract (or reload) every backbone's embeddings of ``records`` and compare them.

    Each backbone runs at its spec's input size and default embedding block.

    Args:
        progress: called as ``progress(backbone name, done, total)`` during each extraction.
        indices / index_kw: similarity indices (None: every registered one, :func:`core.compare.indices.index_names`)
            and their settings, see :func:`build_comparison`.

    Returns:
        the :class:`Comparison` and the feature sets (their ``failures`` list skipped files).
    """
    fsets, speeds = [], []
    for b in backbones:
        cb = (lambda d, t, n=b.spec.name: progress(n, d, t)) if progress else None
        fs = extract_features(b, records, kinds=("embedding",), batch_size=batch_size, store=store, progress=cb)
        fsets.append(fs)
        speeds.append(measure_speed(b, fs))
    indices = index_names() if indices is None else indices
    return build_comparison(backbones, fsets, speeds, cka_kind=cka_kind, sigma_frac=sigma_frac, indices=indices,
                            index_kw=index_kw, **metric_kw), fsets


# ---- saliency: the method each backbone supports ----------------------------------------------------
@dataclass(frozen=True)
class SaliencyView:
    """One backbone's saliency map of one picture.

    Attributes:
        map: ``[h, w]`` (rollout, patch grid) or ``[S, S]`` (Grad-CAM, input pixels), in ``[0, 1]``.
        method: the saliency registry name (:func:`core.explain.methods.default_method`).
        target: what the map explains, for display.
    """

    map: np.ndarray
    method: str
    target: str


def default_saliency(backbone: Backbone, image, size: int | None = None, prototypes=None) -> SaliencyView:
    """The backbone's default saliency method (:func:`core.explain.methods.default_method`: attention
    rollout with :data:`core.explain.attention.DEFAULT_ROLLOUT`, else Grad-CAM) explaining the default
    target (:func:`core.explain.targets.default_target`: the head's top class, else the nearest prototype).

    Args:
        backbone: the model (not changed).
        image: an RGB ``PIL.Image``.
        size: input side (None: the spec's).
        prototypes: :class:`core.explain.prototype_maps.PrototypeSet` of the *final* embeddings, needed only
            for backbones with neither attention nor a classifier head.
    """
    from core.explain.inputs import SaliencyInput
    from core.explain.methods import default_method
    from core.explain.targets import default_target

    inp = SaliencyInput.from_image(backbone, image, size)
    method = default_method(backbone.spec)
    target = default_target(inp, prototypes) if "target" in method.needs else None
    return SaliencyView(method(inp, target), method.name, target.label if target else method.explains)
