"""Faithfulness of many maps of one picture in one batch: deletion, insertion and ROAD of every map.

:func:`core.explain.faithfulness.faithfulness` and :func:`~core.explain.faithfulness.road_score` score one
map with two or three small batches of forward passes each. The report card scores a dozen maps per picture,
so here every perturbed input of every map (deletion and insertion steps, ROAD's imputed pictures) goes
through the model in ONE stream of full batches, and what all maps share is scored once:

* the intact picture and the baseline picture (both ends of every deletion and insertion curve);
* the intact input ROAD compares with;
* maps that are identical (e.g. Grad-CAM and HiResCAM behind a global-average-pooled linear head): one
  map's scores serve all of them.

The numbers are those of the one-map functions (the same pictures, the same seeded ROAD noise per map);
only the batch composition differs, which moves scores by float rounding (about 1e-6).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from core.explain.faithfulness import (
    Baseline,
    Solver,
    deletion_insertion_curves,
    deletion_insertion_images,
    impute_many,
    normalise_pictures,
    road_from_scores,
    road_map,
    road_masks,
    tensor_scorer,
)
from core.explain.maps import as_map, upsample
from core.explain.targets import CamTarget
from core.models.base import Backbone

SCORES = ("deletion_auc", "insertion_auc", "road")


@dataclass(frozen=True)
class FaithfulnessSettings:
    """Deletion / insertion in ``steps`` steps towards ``baseline``; ROAD at ``percentiles`` with its noise
    seeded by ``seed`` (a fresh generator per map, as :func:`~core.explain.faithfulness.road_score`)."""

    steps: int = 10
    baseline: Baseline = "blur"
    percentiles: tuple[int, ...] = (20, 50, 80)
    seed: int = 0
    solver: Solver = "direct"
    batch_size: int = 32


def _digest(m: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(m).tobytes() + str(m.shape).encode(), digest_size=16).hexdigest()


def faithfulness_many(b: Backbone, picture: np.ndarray, x: torch.Tensor, maps: Mapping[str, np.ndarray],
                      target: CamTarget, settings: FaithfulnessSettings = FaithfulnessSettings()
                      ) -> dict[str, dict[str, float]]:
    """Deletion AUC, insertion AUC and ROAD of every map of one picture, from one batched stream of forwards.

    Args:
        b: the backbone (its device is used; the perturbed inputs are built on the CPU and moved in chunks).
        picture: ``[S, S, 3]`` in 0..1, the picture as the model sees it
            (:func:`core.explain.faithfulness.model_view`).
        x: ``[1, 3, S, S]`` the normalised input (:meth:`Backbone.preprocess`), ROAD's reference.
        maps: ``{method: [h, w] or [S, S] map}``.
        target: what the scores follow (class probability or cosine to a reference).
        settings: steps, baseline, ROAD percentiles and seed, the imputation solver, the batch size.

    Returns:
        ``{method: {"deletion_auc", "insertion_auc", "road"}}`` (ROAD NaN where a threshold keeps no pixel).
    """
    S = int(x.shape[-1])
    if picture.shape != (S, S, 3):
        raise ValueError(f"picture must be [S, S, 3] = {(S, S, 3)}, got {picture.shape}")
    s = settings
    unique: dict[str, str] = {}  # method -> the digest of its map; identical maps are scored once
    first: dict[str, str] = {}  # digest -> the first method with that map
    for name, m in maps.items():
        d = _digest(as_map(m, name))
        unique[name] = d
        first.setdefault(d, name)
    todo = list(first.values())

    # the stream: [x, intact, baseline, then per map: deletion 1..S-1, insertion 1..S-1, ROAD 2P]
    parts: list[torch.Tensor] = [x.detach().cpu()]
    layout: dict[str, tuple[slice, slice, slice | None]] = {}
    fractions = None
    at = 3
    shared = None
    for name in todo:
        sal = upsample(np.asarray(maps[name], dtype=np.float32), (S, S))  # [S, S]
        deleted, inserted, fractions = deletion_insertion_images(picture, sal, s.steps, s.baseline)
        if shared is None:  # deletion step 0 / insertion step S are the intact picture, the other ends the baseline
            shared = normalise_pictures(b, np.stack([deleted[0], deleted[-1]]))  # [2, 3, S, S]
            parts.append(shared)
        inner = normalise_pictures(b, np.concatenate([deleted[1:-1], inserted[1:-1]]))  # [2(S-1), 3, S, S]
        parts.append(inner)
        k = s.steps - 1
        dl, il = slice(at, at + k), slice(at + k, at + 2 * k)
        at += 2 * k
        keeps = road_masks(road_map(maps[name], S), s.percentiles)
        rl = None
        if keeps is not None:
            gen = torch.Generator().manual_seed(int(s.seed))
            perturbed = impute_many(x[0], keeps, 0.01, gen, s.solver).cpu()  # [2P, 3, S, S]
            parts.append(perturbed)
            rl = slice(at, at + len(keeps))
            at += len(keeps)
        layout[name] = (dl, il, rl)
    score = tensor_scorer(b, target, s.batch_size)
    scores = np.concatenate([score(chunk) for chunk in _chunks(parts, s.batch_size)])  # [at]
    base, intact, blank = scores[0], scores[1], scores[2]

    out: dict[str, dict[str, float]] = {}
    for name in todo:
        dl, il, rl = layout[name]
        del_raw = np.concatenate([[intact], scores[dl], [blank]])  # [S+1]
        ins_raw = np.concatenate([[blank], scores[il], [intact]])  # [S+1]
        assert fractions is not None
        di = deletion_insertion_curves(del_raw, ins_raw, fractions)
        road = road_from_scores(base, scores[rl], s.percentiles)["road"] if rl is not None else float("nan")
        out[name] = {"deletion_auc": float(di["deletion_auc"]), "insertion_auc": float(di["insertion_auc"]),
                     "road": float(road)}
    return {name: dict(out[first[unique[name]]]) for name in maps}


def _chunks(parts: list[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """The rows of ``parts`` (concatenated) in batches of ``size``, without concatenating them all at once."""
    pending: list[torch.Tensor] = []
    n = 0
    for part in parts:
        start = 0
        while start < part.shape[0]:
            take = min(size - n, part.shape[0] - start)
            pending.append(part[start:start + take])
            n += take
            start += take
            if n == size:
                yield torch.cat(pending) if len(pending) > 1 else pending[0]
                pending, n = [], 0
    if pending:
        yield torch.cat(pending) if len(pending) > 1 else pending[0]


def forwards_per_picture(n_maps: int, settings: FaithfulnessSettings) -> int:
    """Forward passes :func:`faithfulness_many` spends on ``n_maps`` distinct maps (for the record)."""
    return 3 + n_maps * (2 * (settings.steps - 1) + 2 * len(settings.percentiles))
