"""The saliency report card: every method of the saliency table scored on a small sample of images.

One table per backbone, one row per method (the random control included), each score as mean and
standard deviation over the sampled images:

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
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.cancel import CancelLike, raise_if_cancelled
from core.explain.faithfulness import faithfulness, road_score
from core.explain.inputs import SaliencyInput
from core.explain.localisation import mask_at, pointing_game, relevance_mass
from core.explain.methods import available_methods
from core.explain.prototype_maps import PrototypeSet
from core.explain.registry import get_saliency_method
from core.explain.sanity import CascadeUnit, cascade_units, mprt
from core.explain.targets import CamTarget, default_target
from core.io.images import ImageRecord, decode_alpha
from core.io.store import FeatureStore
from core.models.base import Backbone

METRICS = ("mprt_spearman", "mprt_ssim", "road", "deletion_auc", "insertion_auc", "pointing_game", "relevance_mass")
HIGHER_IS_BETTER = {"mprt_spearman": False, "mprt_ssim": False, "road": True, "deletion_auc": False,
                    "insertion_auc": True, "pointing_game": True, "relevance_mass": True}

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ReportSettings:
    """How the card is computed (stated beside it).

    Attributes:
        size: input side (None: the spec's).
        limit: images sampled (round robin over the classes, in name order).
        deletion_steps / baseline: deletion / insertion settings.
        road_percentiles: ROAD thresholds (pytorch-grad-cam's default is 10..90; three keep it affordable).
        seed: seeds the re-initialisation of the randomised model and ROAD's noise.
    """

    size: int | None = None
    limit: int = 8
    deletion_steps: int = 10
    baseline: str = "blur"
    road_percentiles: tuple[int, ...] = (20, 50, 80)
    seed: int = 0


@dataclass
class ReportCard:
    """Scores of every method on one backbone.

    Attributes:
        backbone: name.
        size: input side used.
        images: names of the sampled images; ``n_masks`` of them carry an object mask.
        scores: ``{method: {metric: [value per image]}}`` (NaN where a score does not apply).
        skipped: ``{method: reason}`` for methods that could not run here.
        settings: what was computed.
        seconds: wall time.
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

    def rows(self) -> list[dict[str, Any]]:
        """One row per method: ``method``, ``family``, ``n`` and ``<metric>_mean`` / ``<metric>_std``."""
        out = []
        for method, per in self.scores.items():
            row: dict[str, Any] = {"method": method, "family": self.families.get(method, ""), "n": len(self.images)}
            for m in METRICS:
                v = np.asarray(per.get(m, []), dtype=np.float64)
                v = v[np.isfinite(v)]
                row[f"{m}_mean"] = float(v.mean()) if v.size else math.nan
                row[f"{m}_std"] = float(v.std()) if v.size else math.nan
            out.append(row)
        return out

    def to_json(self) -> str:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return json.dumps(clean({"backbone": self.backbone, "size": self.size, "images": self.images,
                                 "n_masks": self.n_masks, "settings": asdict(self.settings), "seconds": self.seconds,
                                 "rows": self.rows(), "skipped": self.skipped}))

    def table(self) -> dict[str, list[str]]:
        """Columns for display: ``method`` and one ``mean ± std`` string per metric (``n/a`` where none)."""
        rows = self.rows()
        return {"method": [r["method"] for r in rows],
                **{m: [_cell(r[f"{m}_mean"], r[f"{m}_std"]) for r in rows] for m in METRICS}}

    def text(self) -> str:
        """The table as plain text, ``mean ± std`` per cell."""
        cols = self.table()
        lines = [list(cols)] + [list(r) for r in zip(*cols.values())]
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        body = ["  ".join(s.ljust(w) for s, w in zip(line, widths)) for line in lines]
        head = (f"{self.backbone} at {self.size} px: {len(self.images)} images ({self.n_masks} with an object mask), "
                f"{self.seconds:.0f} s")
        note = (f"lower is better: {', '.join(m for m in METRICS if not HIGHER_IS_BETTER[m])}; "
                f"higher is better: {', '.join(m for m in METRICS if HIGHER_IS_BETTER[m])}")
        skipped = [f"skipped {m}: {why}" for m, why in self.skipped.items()]
        return "\n".join([head, *body, note, *skipped])


def _cell(mean: float, std: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.3f} ± {std:.3f}"


def sample_records(records: Sequence[ImageRecord], limit: int) -> list[ImageRecord]:
    """``limit`` records taken round robin over the labels (each label's records in name order)."""
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


def saliency_report(b: Backbone, records: Sequence[ImageRecord], *, methods: Sequence[str] | None = None,
                    settings: ReportSettings = ReportSettings(), store: FeatureStore | None = None,
                    progress: Progress | None = None, cancel: CancelLike | None = None) -> ReportCard:
    """Score every saliency method (or ``methods``) on a sample of ``records``.

    Args:
        b: the backbone (never changed: the randomisation test works on a copy).
        records: the dataset; labels (two classes or more) enable prototype targets and prototype maps.
        methods: registry names (None: every method that runs on this backbone).
        settings: sample size, input size and metric settings.
        store: feature cache for the class means (None: computed, not cached).
        progress: ``progress(done, total, message)`` after each image and after the randomisation test.
        cancel: a ``threading.Event`` or a callable returning True to stop (:mod:`core.cancel`), asked
            before each image and before the randomisation test.

    Returns:
        The :class:`ReportCard`.

    Raises:
        Cancelled: ``cancel`` said stop.
    """
    t0 = time.perf_counter()
    size = b.spec.check_size(settings.size or b.spec.input_size)
    sample = sample_records(records, settings.limit)
    names = [m.name for m in available_methods(b.spec)] if methods is None else list(methods)
    for n in names:
        get_saliency_method(n)  # unknown names raise with the list
    labelled = len({r.label for r in records if r.label}) >= 2
    skipped: dict[str, str] = {}
    E_final = E_map = None
    if labelled:
        E_final = _embeddings(b, records, -1, size, store, cancel)  # [N, D] prototype targets
        E_map = _embeddings(b, records, None, size, store, cancel)  # [N, D] prototype maps, the default embedding block
    for n in names:
        m = get_saliency_method(n)
        if "prototypes" in m.needs and not labelled:
            skipped[n] = "needs class labels (a folder per class, two classes or more)"
        if "target" in m.needs and not labelled and not b.spec.has_classifier:
            skipped[n] = "no classifier head and no class labels for a prototype target"
    run = [n for n in names if n not in skipped]
    if not labelled and not b.spec.has_classifier:
        raise ValueError(f"{b.spec.name} has no classifier head: the report needs class labels (a folder per class) "
                         "to explain the nearest class prototype")

    index = {r.sha256: i for i, r in enumerate(records)}
    scores: dict[str, dict[str, list[float]]] = {n: {k: [] for k in METRICS} for n in run}
    inputs: list[SaliencyInput] = []
    targets: list[CamTarget] = []
    map_params: list[dict[str, dict[str, Any]]] = []
    total = len(sample) + 1
    n_masks = 0
    for i, r in enumerate(sample):
        raise_if_cancelled(cancel, f"report card cancelled after {i} of {len(sample)} images")
        img = r.decode()
        inp = SaliencyInput.from_image(b, img, size)
        same = [j for j, q in enumerate(records) if q.sha256 == r.sha256] if r.sha256 in index else []
        protos_final = PrototypeSet.from_embeddings(E_final, [q.label for q in records], same) if E_final is not None else None
        protos_map = PrototypeSet.from_embeddings(E_map, [q.label for q in records], same) if E_map is not None else None
        target = default_target(inp, protos_final)
        params = {n: {"prototypes": protos_map, "layer": b.spec.embed_layer} for n in run
                  if get_saliency_method(n).family == "prototype"}
        mask = _object_mask(r)
        mask_s = mask_at(mask, size) if mask is not None else None
        n_masks += mask is not None
        for n in run:
            sal = get_saliency_method(n)(inp, target, **params.get(n, {}))
            fa = faithfulness(b, img, sal, target, size, steps=settings.deletion_steps, baseline=settings.baseline)  # type: ignore[arg-type]
            ro = road_score(b, inp.x, sal, target, settings.road_percentiles, seed=settings.seed + i)
            s = scores[n]
            s["deletion_auc"].append(float(fa["deletion_auc"]))
            s["insertion_auc"].append(float(fa["insertion_auc"]))
            s["road"].append(float(ro["road"]))
            s["pointing_game"].append(pointing_game(sal, mask_s) if mask_s is not None else math.nan)
            s["relevance_mass"].append(relevance_mass(sal, mask_s) if mask_s is not None else math.nan)
        inputs.append(inp)
        targets.append(target)
        map_params.append(params)
        if progress is not None:
            progress(i + 1, total, f"scored {r.name}")

    raise_if_cancelled(cancel, f"report card cancelled after scoring {len(sample)} images, before the randomisation test")
    # model-parameter randomisation: every unit re-initialised at once (the end of the cascade)
    everything = CascadeUnit("all", tuple(p for u in cascade_units(b) for p in u.modules))
    curves = mprt(inputs, run, targets, params=map_params, seed=settings.seed, units=[everything])
    for n in run:
        scores[n]["mprt_spearman"] = [float(v) for v in curves[n].spearman_all[-1]]
        scores[n]["mprt_ssim"] = [float(v) for v in curves[n].ssim_all[-1]]
    if progress is not None:
        progress(total, total, "randomisation test done")
    families: dict[str, str] = {n: get_saliency_method(n).family for n in run}
    return ReportCard(b.spec.name, size, [r.name for r in sample], n_masks, scores, skipped, settings,
                      time.perf_counter() - t0, families)
