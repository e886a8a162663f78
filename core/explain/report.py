"""The saliency report card: every method of the saliency table scored on a sample of images (or all of them).

One table per backbone, one row per method (the random control included), each score as the mean over the
sampled images with its 95% bootstrap interval (:mod:`core.explain.report_stats`):

* ``mprt_spearman`` (lower is better): Spearman correlation between the map on the trained model and the
  map after every unit of the model is re-initialised (:mod:`core.explain.sanity`); ``mprt_ssim`` beside it.
* ``road`` (higher is better): :func:`core.explain.faithfulness.road_score`.
* ``deletion_auc`` (lower is better) / ``insertion_auc`` (higher is better): :func:`core.explain.faithfulness.faithfulness`.
* ``pointing_game`` / ``relevance_mass`` (higher is better): against the image's alpha channel
  (:mod:`core.explain.localisation`), on images that carry one.

Each map explains the default target (:func:`core.explain.targets.default_target`: the head's top
class, else the nearest class prototype of the final embeddings, the image left out); maps without a
target (attention, rollout, prototype maps, the control) are scored with that target too. Prototype
maps use class means of the spec's default embedding block, the image left out.

Work per picture (why it is fast): the Grad-CAM family shares one forward and backward pass
(:func:`core.explain.cam.compute_cams`); every perturbed input of every map goes through the model in one
batched stream (:func:`core.explain.scoring.faithfulness_many`), a CNN's with its batch norms folded
(:mod:`core.models.fold`); ROAD's sparse systems are factorised on every torch thread at once; the
randomised copy of the model is made once per card and serves every method and picture; embeddings come
from the feature store. Each picture's scores are cached in the feature store under (backbone weights,
method, settings, picture sha256), so a second run, or a larger ``limit``, computes only the pictures it
has not seen.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from core.cancel import CancelLike, raise_if_cancelled
from core.explain.attention import DEFAULT_ROLLOUT
from core.explain.faithfulness import Baseline, Solver, model_view, scoring_batch
from core.explain.inputs import SaliencyInput
from core.explain.localisation import mask_at, pointing_game, relevance_mass
from core.explain.maps import upsample
from core.explain.methods import available_methods, compute_maps
from core.explain.prototype_maps import ClassSums
from core.explain.registry import get_saliency_method
from core.explain.report_stats import PairedComparison, bootstrap_mean_ci, paired_comparison
from core.explain.sanity import CascadeUnit, cascade, cascade_units, spearman, ssim
from core.explain.scoring import FaithfulnessSettings, faithfulness_many
from core.explain.targets import CamTarget, default_target, nearest_prototype_target
from core.io.images import ImageRecord, decode_alpha, rows_by_sha256
from core.io.store import FeatureKey, FeatureStore
from core.models.base import Backbone
from core.models.extract import preprocessing_id

METRICS = ("mprt_spearman", "mprt_ssim", "road", "deletion_auc", "insertion_auc", "pointing_game", "relevance_mass")
HIGHER_IS_BETTER = {"mprt_spearman": False, "mprt_ssim": False, "road": True, "deletion_auc": False,
                    "insertion_auc": True, "pointing_game": True, "relevance_mass": True}
CONTROL = "Random map (baseline)"
REPORT_VERSION = 2  # part of the cache key: bump when a score's computation changes

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ReportSettings:
    """How the card is computed (stated beside it).

    Attributes:
        size: input side (None: the spec's).
        limit: images sampled (round robin over the classes, in name order; None: the whole dataset).
        deletion_steps / baseline: deletion / insertion settings.
        road_percentiles: ROAD thresholds (pytorch-grad-cam's default is 10..90; three keep it affordable).
        seed: seeds the re-initialisation of the randomised model, ROAD's noise (with each picture's hash)
            and the bootstrap.
        solver: ROAD's imputation: ``"direct"`` (SuperLU on the CPU), ``"cg"`` (conjugate gradients on the
            model's device, all masks of a picture at once; agrees with direct to about 1e-7) or ``"auto"``
            (cg on a GPU, direct on the CPU). Not part of the cache key.
        batch_size: inputs per forward pass when scoring perturbed pictures (not part of the cache key; None:
            :func:`core.explain.faithfulness.scoring_batch`: 8 on the CPU, 32 on a GPU).
    """

    size: int | None = None
    limit: int | None = 8
    deletion_steps: int = 10
    baseline: Baseline = "blur"
    road_percentiles: tuple[int, ...] = (20, 50, 80)
    seed: int = 0
    solver: Literal["auto", "direct", "cg"] = "auto"
    batch_size: int | None = None


@dataclass(frozen=True)
class ExampleMap:
    """One method's map on one picture of a card, as the card computed it (for a page to show)."""

    method: str
    image: str
    picture: Image.Image
    map: np.ndarray  # [h, w] or [S, S]
    target: str
    scores: dict[str, float]


@dataclass
class ReportCard:
    """Scores of every method on one backbone.

    Attributes:
        backbone: name.
        size: input side used.
        images: names of the sampled images; ``labels`` their classes; ``n_masks`` of them carry an object mask.
        scores: ``{method: {metric: [value per image]}}`` (NaN where a score is undefined on that image).
        skipped: ``{method: reason}`` for requested methods that could not run here.
        settings: what was computed.
        seconds: wall time; ``n_computed`` images were scored, ``n_cached`` read from the feature store.
        families: ``{method: family}``.
        device: where the model ran.
    """

    backbone: str
    size: int
    images: list[str]
    n_masks: int
    scores: dict[str, dict[str, list[float]]]
    skipped: dict[str, str]
    settings: ReportSettings
    seconds: float = 0.0
    families: dict[str, str] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    n_computed: int = 0
    n_cached: int = 0
    device: str = "cpu"

    # ---- per-method summaries ------------------------------------------------------------------------
    def values(self, method: str, metric: str) -> np.ndarray:
        """``[n_images]`` scores of one method (NaN where undefined)."""
        return np.asarray(self.scores[method][metric], dtype=np.float64)

    def reason(self, method: str, metric: str) -> str | None:
        """Why ``metric`` has no value for ``method`` on any image (None when it has one)."""
        if np.isfinite(self.values(method, metric)).any():
            return None
        if metric in ("pointing_game", "relevance_mass") and self.n_masks == 0:
            return "no sampled image has an object mask (an alpha channel that marks an object)"
        if metric == "mprt_spearman":
            return "the map is constant on every image (its ranks carry no order)"
        if metric == "road":
            return "on every image a ROAD threshold keeps no pixel (the map is constant or has large ties)"
        return "undefined on every image"

    def rows(self) -> list[dict[str, Any]]:
        """One row per method: ``method``, ``family``, ``n`` (images) and per metric ``<metric>_mean``,
        ``_std``, ``_low`` / ``_high`` (95% bootstrap interval) and ``_n`` (images where it is defined);
        ``reasons`` says why a metric has no value."""
        out = []
        for k, method in enumerate(self.scores):
            row: dict[str, Any] = {"method": method, "family": self.families.get(method, ""), "n": len(self.images)}
            reasons = {}
            for j, m in enumerate(METRICS):
                v = self.values(method, m)
                ok = v[np.isfinite(v)]
                mean, lo, hi = bootstrap_mean_ci(v, seed=self.settings.seed + 1000 * k + j)
                row[f"{m}_mean"], row[f"{m}_low"], row[f"{m}_high"] = mean, lo, hi
                row[f"{m}_std"] = float(ok.std()) if ok.size else math.nan
                row[f"{m}_n"] = int(ok.size)
                why = self.reason(method, m)
                if why:
                    reasons[m] = why
            row["reasons"] = reasons
            out.append(row)
        return out

    def best(self) -> dict[str, str]:
        """``{metric: method}`` with the best mean (direction from :data:`HIGHER_IS_BETTER`), for highlighting."""
        out = {}
        for m in METRICS:
            means = {meth: float(np.nanmean(v)) for meth in self.scores if np.isfinite(v := self.values(meth, m)).any()}
            if means:
                out[m] = (max if HIGHER_IS_BETTER[m] else min)(means, key=lambda k: means[k])
        return out

    def compare(self, a: str, b: str, metric: str) -> PairedComparison:
        """Method ``a`` against ``b`` on ``metric``, paired over the card's images (see :mod:`core.explain.report_stats`)."""
        for name in (a, b):
            if name not in self.scores:
                raise ValueError(f"{name!r} is not in this card; methods: {', '.join(self.scores)}")
        if metric not in METRICS:
            raise ValueError(f"unknown score {metric!r}; scores: {', '.join(METRICS)}")
        return paired_comparison(self.values(a, metric), self.values(b, metric), a=a, b=b, metric=metric,
                                 higher_is_better=HIGHER_IS_BETTER[metric], seed=self.settings.seed)

    def verdicts(self) -> list[PairedComparison]:
        """Per metric: the best method against the runner-up and against the random control."""
        out = []
        for m, top in self.best().items():
            means = {k: float(np.nanmean(v)) for k in self.scores if k != top and np.isfinite(v := self.values(k, m)).any()}
            if not means:
                continue
            runner = (max if HIGHER_IS_BETTER[m] else min)(means, key=lambda k: means[k])
            out.append(self.compare(top, runner, m))
            if CONTROL in means and CONTROL != runner:
                out.append(self.compare(top, CONTROL, m))
        return out

    def per_class(self) -> list[dict[str, Any]]:
        """One row per (class, method): ``class``, ``method``, ``n`` and ``<metric>_mean``."""
        out = []
        for c in sorted(set(self.labels)):
            idx = [i for i, lab in enumerate(self.labels) if lab == c]
            for method in self.scores:
                row: dict[str, Any] = {"class": c, "method": method, "n": len(idx)}
                for m in METRICS:
                    v = self.values(method, m)[idx]
                    row[f"{m}_mean"] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else math.nan
                out.append(row)
        return out

    # ---- output --------------------------------------------------------------------------------------
    def to_json(self) -> str:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return json.dumps(clean({
            "backbone": self.backbone, "size": self.size, "device": self.device, "images": self.images,
            "labels": self.labels, "n_masks": self.n_masks, "settings": asdict(self.settings),
            "seconds": self.seconds, "n_computed": self.n_computed, "n_cached": self.n_cached,
            "rows": self.rows(), "skipped": self.skipped, "best": self.best(),
            "comparisons": [{**asdict(c), "winner": c.winner, "statement": c.statement()} for c in self.verdicts()],
            "per_class": self.per_class(), "per_image": self.scores}))

    def table(self) -> dict[str, list[str]]:
        """Columns for display: ``method`` and one ``mean [low, high]`` string per metric (``n/a`` where none)."""
        rows = self.rows()
        return {"method": [r["method"] for r in rows],
                **{m: [_cell(r[f"{m}_mean"], r[f"{m}_low"], r[f"{m}_high"]) for r in rows] for m in METRICS}}

    def text(self, per_class: bool = False) -> str:
        """The table as plain text (``mean [95% interval]`` per cell), the verdicts, and optionally the per-class means."""
        cols = self.table()
        head = (f"{self.backbone} at {self.size} px on {self.device}: {len(self.images)} images "
                f"({self.n_masks} with an object mask), {self.seconds:.0f} s ({self.n_computed} scored, "
                f"{self.n_cached} from the cache)")
        note = ("mean [95% bootstrap interval] over the images; lower is better: mprt_spearman, mprt_ssim, deletion_auc; "
                "higher is better: road, insertion_auc, pointing_game, relevance_mass")
        lines = [head, *_aligned(cols), note]
        lines += [f"n/a for {r['method']}, {m}: {why}" for r in self.rows() for m, why in r["reasons"].items()]
        lines += [f"skipped {m}: {why}" for m, why in self.skipped.items()]
        best = self.best()
        if best:
            lines.append("best per score: " + "; ".join(f"{m}: {k}" for m, k in best.items()))
        lines += [c.statement() for c in self.verdicts()]
        if per_class:
            pc = self.per_class()
            lines.append("per class (mean):")
            lines += _aligned({"class": [r["class"] for r in pc], "method": [r["method"] for r in pc],
                               "n": [str(r["n"]) for r in pc],
                               **{m: ["n/a" if not math.isfinite(r[f"{m}_mean"]) else f"{r[f'{m}_mean']:.3f}" for r in pc]
                                  for m in METRICS}})
        return "\n".join(lines)


def _cell(mean: float, lo: float, hi: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def _aligned(cols: dict[str, list[str]]) -> list[str]:
    lines = [list(cols)] + [list(r) for r in zip(*cols.values())]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return ["  ".join(s.ljust(w) for s, w in zip(line, widths)).rstrip() for line in lines]


def sample_records(records: Sequence[ImageRecord], limit: int) -> list[ImageRecord]:
    """``limit`` records taken round robin over the labels (each label's records in name order); the sample
    for a limit is a prefix of the sample for any larger one."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    by_label: dict[str, list[ImageRecord]] = {}
    for r in sorted(records, key=lambda r: r.name):
        by_label.setdefault(r.label, []).append(r)
    out: list[ImageRecord] = []
    queues = [list(v) for _, v in sorted(by_label.items())]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def _object_mask(r: ImageRecord) -> np.ndarray | None:
    """The alpha mask, when it marks an object (not empty, not the whole picture)."""
    m = decode_alpha(r.read_bytes(), r.name)
    if m is None or not 0.0 < float(m.mean()) < 0.99:
        return None
    return m


def _embeddings(b: Backbone, records: Sequence[ImageRecord], layer: int | None, size: int,
                store: FeatureStore | None, cancel: CancelLike | None = None) -> np.ndarray:
    from core.models.extract import extract_features

    fs = extract_features(b, records, layer=layer, size=size, store=store, cancel=cancel)
    if fs.failures:
        raise ValueError(f"cannot read {', '.join(f.name for f in fs.failures)}: remove them from the folder")
    return fs["embedding"]  # [N, D]


def _picture_seed(seed: int, r: ImageRecord) -> int:
    """ROAD's noise seed for one picture: from its content, so a cached score never depends on its position."""
    return (int(seed) + int(r.sha256[:12], 16)) % (2 ** 63)


# ---- the work of one card ------------------------------------------------------------------------------
class _Card:
    """What every picture of one card shares: targets' prototypes, the randomised copy, the cache key."""

    def __init__(self, b: Backbone, records: Sequence[ImageRecord], methods: Sequence[str] | None,
                 settings: ReportSettings, store: FeatureStore | None, cancel: CancelLike | None = None):
        self.b, self.records, self.settings, self.store, self.cancel = b, list(records), settings, store, cancel
        self.size = b.spec.check_size(settings.size or b.spec.input_size)
        if settings.deletion_steps < 1:
            raise ValueError(f"deletion_steps must be >= 1, got {settings.deletion_steps}")
        if not settings.road_percentiles or not all(0 < p < 100 for p in settings.road_percentiles):
            raise ValueError(f"road_percentiles must lie in 1..99, got {settings.road_percentiles}")
        names = [m.name for m in available_methods(b.spec)] if methods is None else list(dict.fromkeys(methods))
        if not names:
            raise ValueError("no saliency method to score: pass at least one name")
        for n in names:
            get_saliency_method(n)  # unknown names raise with the list
        self.labelled = len({r.label for r in records if r.label}) >= 2
        if not self.labelled and not b.spec.has_classifier:
            raise ValueError(f"{b.spec.name} has no classifier head: the report needs class labels (a folder per "
                             "class, two classes or more) to explain the nearest class prototype")
        self.skipped: dict[str, str] = {}
        for n in names:
            m = get_saliency_method(n)
            why = m.unsupported_reason(b.spec)
            if why:
                self.skipped[n] = why
            elif "prototypes" in m.needs and not self.labelled:
                self.skipped[n] = "needs class labels (a folder per class, two classes or more)"
        self.run = [n for n in names if n not in self.skipped]
        if not self.run:
            raise ValueError("none of the methods runs here: " + "; ".join(f"{k}: {v}" for k, v in self.skipped.items()))
        self.solver: Solver = (("cg" if b.device.type == "cuda" else "direct") if settings.solver == "auto"
                               else settings.solver)
        self.batch_size = settings.batch_size or scoring_batch(b.device)
        self.prefix = self._cache_prefix()
        self._E: tuple[np.ndarray, np.ndarray] | None = None
        self._rand: Backbone | None = None
        self.rows = rows_by_sha256(self.records)  # sha256 -> the rows of that picture (copies included)
        self._sums: tuple[ClassSums, ClassSums] | None = None

    def _cache_prefix(self) -> str:
        """The settings part of every cache key: what changes any score of a picture, nothing else."""
        s = self.settings
        context = ""
        if self.labelled:  # class prototypes (targets, prototype maps) depend on the whole labelled set
            context = hashlib.sha256("\n".join(sorted(f"{r.sha256} {r.label}" for r in self.records)).encode()).hexdigest()
        key = json.dumps({"v": REPORT_VERSION, "prep": preprocessing_id(self.b.spec, self.size),
                          "steps": s.deletion_steps, "baseline": s.baseline, "road": list(s.road_percentiles),
                          "seed": s.seed, "rollout": asdict(DEFAULT_ROLLOUT), "embed_layer": self.b.spec.embed_layer,
                          "context": context}, sort_keys=True)
        return "saliency-report:" + hashlib.sha256(key.encode()).hexdigest()[:24]

    def key(self, method: str, r: ImageRecord) -> FeatureKey:
        return FeatureKey(self.b.spec.weights_id, self.prefix, -1, f"report/{method}", r.sha256)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(final [N, D], default block [N, D'])`` embeddings of every record, read from the store."""
        if self._E is None:
            self._E = (_embeddings(self.b, self.records, -1, self.size, self.store, self.cancel),
                       _embeddings(self.b, self.records, None, self.size, self.store, self.cancel))
        return self._E

    def class_sums(self) -> tuple[ClassSums, ClassSums]:
        """Per-class sums of both embeddings (final, default block), made once: each picture's leave-one-out
        prototypes subtract its own rows instead of re-reading all ``N``."""
        if self._sums is None:
            labels = [q.label for q in self.records]
            E_final, E_map = self.embeddings()
            self._sums = ClassSums.of(E_final, labels), ClassSums.of(E_map, labels)
        return self._sums

    def randomised(self) -> Backbone:
        """The model with every unit re-initialised (the end of the cascade), made once per card."""
        if self._rand is None:
            everything = CascadeUnit("all", tuple(p for u in cascade_units(self.b) for p in u.modules))
            self._rand = next(cascade(self.b, self.settings.seed, [everything]))[1]
        return self._rand

    def prepare(self, r: ImageRecord) -> tuple[Image.Image, SaliencyInput, CamTarget, dict[str, dict[str, Any]]]:
        """The picture, its input, the target its maps explain and the methods' parameters."""
        img = r.decode()
        inp = SaliencyInput.from_image(self.b, img, self.size)
        params: dict[str, dict[str, Any]] = {}
        if not self.labelled:
            return img, inp, default_target(inp), params
        sums_final, sums_map = self.class_sums()
        same = self.rows[r.sha256]  # the image and its copies, left out
        protos_map = sums_map.without(same)
        params = {n: {"prototypes": protos_map, "layer": self.b.spec.embed_layer} for n in self.run
                  if get_saliency_method(n).family == "prototype"}
        if self.b.spec.has_classifier:
            return img, inp, default_target(inp), params
        protos_final = sums_final.without(same)
        E_final = self.embeddings()[0]
        # the nearest prototype of the picture's own final embedding, read from the store (no forward)
        return img, inp, nearest_prototype_target(protos_final, E_final[self.rows[r.sha256][-1]]), params

    def score(self, r: ImageRecord) -> dict[str, np.ndarray]:
        """``{method: [len(METRICS)] scores}`` of one picture."""
        # numpy's BLAS on one thread (small matrices: rollout, SVDs); torch keeps its own threads
        with threadpool_limits(limits=1, user_api="blas"):
            return self._score(r)

    def _score(self, r: ImageRecord) -> dict[str, np.ndarray]:
        img, inp, target, params = self.prepare(r)
        maps = compute_maps(self.run, inp, target, params)
        fs = FaithfulnessSettings(self.settings.deletion_steps, self.settings.baseline, self.settings.road_percentiles,
                                  _picture_seed(self.settings.seed, r), self.solver, self.batch_size)
        faith = faithfulness_many(self.b, model_view(img, self.size), inp.x, maps, target, fs)
        rand = compute_maps(self.run, SaliencyInput(self.randomised(), inp.x), target, params)
        mask = _object_mask(r)
        mask_s = mask_at(mask, self.size) if mask is not None else None
        out = {}
        for n in self.run:
            o, m = maps[n], rand[n]
            m = m if m.shape == o.shape else upsample(m, o.shape)
            v = {"mprt_spearman": spearman(o, m), "mprt_ssim": ssim(o, m), **faith[n],
                 "pointing_game": pointing_game(o, mask_s) if mask_s is not None else math.nan,
                 "relevance_mass": relevance_mass(o, mask_s) if mask_s is not None else math.nan}
            out[n] = np.array([v[k] for k in METRICS], dtype=np.float64)
        return out


def saliency_report(b: Backbone, records: Sequence[ImageRecord], *, methods: Sequence[str] | None = None,
                    settings: ReportSettings = ReportSettings(), store: FeatureStore | None = None,
                    progress: Progress | None = None, cancel: CancelLike | None = None) -> ReportCard:
    """Score every saliency method (or ``methods``) on a sample of ``records`` (or all of them).

    Runs on the backbone's device (``b.model.to("cuda")`` first for a GPU). Pictures already scored with the
    same weights, settings and dataset are read from ``store``; each newly scored picture is written as soon
    as it is done, so a cancelled card resumes where it stopped.

    Args:
        b: the backbone (never changed: the randomisation test works on a copy).
        records: the dataset; labels (two classes or more) enable prototype targets and prototype maps.
        methods: registry names (None: every method that runs on this backbone).
        settings: sample size, input size and metric settings.
        store: feature cache for the embeddings and the per-picture scores (None: nothing cached).
        progress: ``progress(done, total, message)`` after the cache look-up and after each picture.
        cancel: a ``threading.Event`` or a callable returning True to stop (:mod:`core.cancel`), asked
            while the embeddings are extracted and before each picture.

    Returns:
        The :class:`ReportCard`.

    Raises:
        ValueError: an unknown method, a limit over the dataset size, no labels on a head-less backbone.
        Cancelled: ``cancel`` asked to stop.
    """
    t0 = time.perf_counter()
    if settings.limit is not None and settings.limit > len(records):
        raise ValueError(f"limit {settings.limit} is more than the {len(records)} images in the dataset; "
                         f"use {len(records)} or fewer (or no limit for all of them)")
    card = _Card(b, records, methods, settings, store, cancel)
    sample = sample_records(records, settings.limit or len(records))
    total = len(sample)
    per_image: dict[str, dict[str, np.ndarray]] = {}
    if store is not None:
        keys = {(n, r.sha256): card.key(n, r) for r in sample for n in card.run}
        found = store.get_many(keys.values())
        for r in sample:
            got = [found.get(keys[(n, r.sha256)]) for n in card.run]
            if all(g is not None and g.shape == (len(METRICS),) for g in got):
                per_image[r.sha256] = dict(zip(card.run, got))  # type: ignore[arg-type]
    n_cached = len({r.sha256 for r in sample} & set(per_image))
    todo = [r for r in sample if r.sha256 not in per_image]
    done = total - len(todo)
    if progress is not None:
        progress(done, total, f"{done} of {total} images from the cache")
    computed = 0
    for r in todo:
        if r.sha256 in per_image:  # a copy of a picture scored a moment ago
            done += 1
            continue
        raise_if_cancelled(cancel, f"saliency report cancelled after {done} of {total} images"
                           + ("; the scored images are cached" if store is not None else ""))
        per_image[r.sha256] = card.score(r)
        computed += 1
        if store is not None:
            store.put_many({card.key(n, r): v for n, v in per_image[r.sha256].items()})
        done += 1
        if progress is not None:
            progress(done, total, f"scored {r.name}")
    scores = {n: {m: [float(per_image[r.sha256][n][j]) for r in sample] for j, m in enumerate(METRICS)}
              for n in card.run}
    # a picture is scored against an object mask exactly when it has one (pointing_game is never NaN then):
    # counted from the scores, not by decoding every picture again (a 100,000-image card's cache hit)
    pg = METRICS.index("pointing_game")
    n_masks = sum(1 for r in sample if any(not math.isnan(v[pg]) for v in per_image[r.sha256].values()))
    return ReportCard(b.spec.name, card.size, [r.name for r in sample], n_masks, scores, card.skipped, settings,
                      time.perf_counter() - t0, {n: get_saliency_method(n).family for n in card.run},
                      [r.label for r in sample], computed, n_cached, str(b.device))


def example_map(b: Backbone, records: Sequence[ImageRecord], card: ReportCard, method: str,
                image: str | None = None, store: FeatureStore | None = None) -> ExampleMap:
    """The map of ``method`` on one picture of ``card`` (default: its first), with the target and the
    settings the card used, and that picture's scores: what a page shows when a row is picked.

    Raises:
        ValueError: the method or the picture is not in the card.
    """
    if method not in card.scores:
        raise ValueError(f"{method!r} is not in this card; methods: {', '.join(card.scores)}")
    name = image or card.images[0]
    if name not in card.images:
        raise ValueError(f"{name!r} is not one of the card's images")
    r = next((q for q in records if q.name == name), None)
    if r is None:
        raise ValueError(f"{name!r} is not in the dataset given")
    ctx = _Card(b, records, [method], card.settings, store)
    img, inp, target, params = ctx.prepare(r)
    i = card.images.index(name)
    return ExampleMap(method, name, img, compute_maps([method], inp, target, params)[method], target.label,
                      {m: card.scores[method][m][i] for m in METRICS})

