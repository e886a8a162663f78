"""Batched feature extraction through the FeatureStore.

``extract_features`` looks every (image, output) up in the store first; only images with a
missing output are decoded and run through the model, in batches. Where a CPU core is free, the
next batch is decoded on a worker thread while the current one is in the forward pass. A file
that fails to decode is reported by name and the rest of the batch goes on.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from core.models.base import Backbone
from core.errors import ImageDecodeError
from core.io.images import Failure, ImageRecord, decode_image
from core.models.layers import LayerLike, output_layers
from core.models.spec import BackboneSpec
from core.io.store import FeatureKey, FeatureStore

PREPROCESSING_VERSION = "v1"
ProgressFn = Callable[[int, int], None]  # (images done, images total)
T = TypeVar("T")
R = TypeVar("R")


def preprocessing_id(spec: BackboneSpec, size: int) -> str:
    """Everything about the input pipeline that changes the features."""
    mean = ",".join(f"{v:.4f}" for v in spec.mean)
    std = ",".join(f"{v:.4f}" for v in spec.std)
    return f"{PREPROCESSING_VERSION}:resize{size}:bicubic:mean{mean}:std{std}"


@dataclass
class ExtractStats:
    n_images: int = 0
    n_cached: int = 0     # images whose every requested output came from the store
    n_computed: int = 0   # images run through the model
    n_failed: int = 0
    forwards: int = 0     # model forward passes (batches)
    seconds: float = 0.0


@dataclass
class FeatureSet:
    """Features of the images that decoded, in input order.

    ``arrays[kind]`` stacks one array per image: embedding ``[N, D]``, patch_tokens
    ``[N, h, w, D]``, attention_cls ``[N, L, H, h*w]``, logits ``[N, C]``.
    """

    backbone: str
    size: int
    layers: dict[str, int]
    records: list[ImageRecord]
    arrays: dict[str, np.ndarray]
    failures: list[Failure] = field(default_factory=list)
    stats: ExtractStats = field(default_factory=ExtractStats)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    def __getitem__(self, kind: str) -> np.ndarray:
        return self.arrays[kind]


def _spare_core() -> bool:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores > torch.get_num_threads()


def _in_order(fn: Callable[[T], R], items: Sequence[T], ahead: bool) -> Iterator[R]:
    """``fn(item)`` for each item, in order; with ``ahead``, the next item's result is computed on
    a worker thread while the caller works on the current one."""
    if not ahead:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fn, items[0]) if items else None
        for k in range(len(items)):
            result = pending.result()
            pending = pool.submit(fn, items[k + 1]) if k + 1 < len(items) else None
            yield result


def feature_layers(backbone: Backbone, kinds: Sequence[str], layer: LayerLike) -> dict[str, int]:
    """The resolved block index each output kind is taken from (-1: not layer-specific)."""
    return output_layers(backbone.spec, list(kinds), layer)


def extract_features(
    backbone: Backbone,
    records: Sequence[ImageRecord],
    *,
    kinds: Sequence[str] = ("embedding",),
    layer: LayerLike = None,
    size: int | None = None,
    batch_size: int = 16,
    store: FeatureStore | None = None,
    progress: ProgressFn | None = None,
    prefetch: bool | None = None,
) -> FeatureSet:
    """Features for ``records``, from the store where cached, else computed and stored.

    Args:
        backbone: the model.
        records: images (from :func:`core.io.images.load_folder` / ``load_uploads``).
        kinds: outputs wanted, see :meth:`Backbone.extract`.
        layer: block for embedding / patch tokens: a :class:`core.models.layers.Layer`, an index or
            None (each kind's default, :func:`core.models.layers.resolve_layer`).
        size: square input side (None: the spec's input size).
        batch_size: images per forward pass.
        store: the cache (None: no caching).
        progress: called as ``progress(done, total)`` after the cache look-up and each batch.
        prefetch: decode the next batch on a worker thread during the forward pass. None: only
            when a CPU core is left over by torch's threads (on 2 cores with 2 torch threads the
            thread only competes with the forward: measured 10% slower for MobileNetV2).
    """
    t0 = time.perf_counter()
    spec = backbone.spec
    size = spec.check_size(size or spec.input_size)
    layers = feature_layers(backbone, kinds, layer)
    prep = preprocessing_id(spec, size)
    keys = [{k: FeatureKey(spec.weights_id, prep, layers[k], k, r.sha256) for k in kinds} for r in records]
    cached = store.get_many([key for ks in keys for key in ks.values()]) if store is not None else {}
    todo = [i for i, ks in enumerate(keys) if any(key not in cached for key in ks.values())]

    stats = ExtractStats(n_images=len(records), n_cached=len(records) - len(todo))
    total, done = len(records), len(records) - len(todo)
    if progress:
        progress(done, total)

    computed: dict[FeatureKey, np.ndarray] = {}
    failures: dict[int, Failure] = {}
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]

    def load(batch: list[int]) -> tuple[list[int], torch.Tensor | None, dict[int, Failure]]:
        ok, images, bad = [], [], {}
        for i in batch:
            try:
                images.append(decode_image(records[i].read_bytes(), records[i].name))
                ok.append(i)
            except ImageDecodeError as e:
                bad[i] = Failure(e.name, e.reason)
            except OSError as e:  # the file vanished or became unreadable since it was listed
                bad[i] = Failure(records[i].name, f"cannot read file ({e})")
        return ok, (backbone.preprocess(images, size) if images else None), bad

    ahead = _spare_core() if prefetch is None else prefetch
    for batch, (ok, x, bad) in zip(batches, _in_order(load, batches, ahead)):
        failures.update(bad)
        if x is not None:
            out = backbone.extract(x, layer, want=tuple(kinds))
            stats.forwards += 1
            fresh = {}
            for k in kinds:
                arr = out[k].float().cpu().numpy()
                for j, i in enumerate(ok):
                    fresh[keys[i][k]] = arr[j]
            if store is not None:
                store.put_many(fresh)
            computed.update(fresh)
        done += len(batch)
        if progress:
            progress(done, total)

    keep = [i for i in range(len(records)) if i not in failures]
    arrays = {}
    for k in kinds:
        rows = [cached[keys[i][k]] if keys[i][k] in cached else computed[keys[i][k]] for i in keep]
        arrays[k] = np.stack(rows) if rows else np.zeros((0,), np.float32)
    stats.n_computed = len(todo) - len(failures)
    stats.n_failed = len(failures)
    stats.seconds = time.perf_counter() - t0
    return FeatureSet(spec.name, size, layers, [records[i] for i in keep], arrays, list(failures.values()), stats)
