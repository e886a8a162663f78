"""Batched feature extraction through the FeatureStore.

``extract_features`` looks every (image, output) up in the store first; only images with a
missing output are decoded and run through the model, in batches. Where a CPU core is free, the
next batch is decoded on a worker thread while the current one is in the forward pass. A file
that fails to decode is reported by name and the rest of the batch goes on. A run can be
cancelled between batches (``cancel``): it raises :class:`~core.errors.Cancelled` and keeps every
batch already written to the store, so a rerun starts where it stopped.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from core.cancel import CancelLike, should_stop
from core.errors import Cancelled, ImageDecodeError
from core.io.images import Failure, ImageRecord, decode_image, records_key
from core.io.store import FeatureKey, FeatureStore
from core.models.base import Backbone
from core.models.layers import LayerLike, output_layers
from core.models.spec import BackboneSpec

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


def features_key(spec: BackboneSpec, dataset_key: str, *, kinds: Sequence[str] = ("embedding",),
                 layer: LayerLike = None, size: int | None = None, half_tokens: bool = False) -> str:
    """The identity of the features :func:`extract_features` returns for these arguments, known before
    extracting (a memo look-up); equal to the resulting :attr:`FeatureSet.key`.

    16 hex digits over: the weights (``spec.weights_id``: name and weights sha256), the preprocessing
    (:func:`preprocessing_id`: input size, interpolation, mean / std, pipeline version), each kind with
    its resolved block (:func:`core.models.layers.output_layers`: ``layer=None`` and the default block
    give one key), float16 tokens, and the images (``dataset_key``: :attr:`core.io.images.Dataset.key`,
    or :func:`core.io.images.records_key` of the records).

    Raises:
        ValueError: a size the backbone does not take, a kind without a block, or a block out of range.
    """
    size = spec.check_size(size or spec.input_size)
    return _features_key(spec.weights_id, preprocessing_id(spec, size), output_layers(spec, list(kinds), layer),
                         dataset_key, half_tokens)


def _features_key(weights_id: str, preprocessing: str, layers: dict[str, int], dataset_key: str,
                  half_tokens: bool) -> str:
    outputs = ",".join(f"{k}@{layers[k]}" for k in sorted(layers))  # the kinds as a set: order does not matter
    half = "tokens-float16" if half_tokens and "patch_tokens" in layers else ""
    return hashlib.sha256("|".join((weights_id, preprocessing, outputs, half, dataset_key)).encode()).hexdigest()[:16]


@dataclass
class FeatureSet:
    """Features of the images that decoded, in input order.

    ``arrays[kind]`` stacks one array per image: embedding ``[N, D]``, patch_tokens
    ``[N, h, w, D]``, attention_cls ``[N, L, H, h*w]``, logits ``[N, C]``.

    Attributes:
        key: the features' identity for every cache keyed on them: :func:`features_key` of the
            extraction (weights, preprocessing, kinds and blocks, the input records' key), set by
            :func:`extract_features`. A FeatureSet made by hand without one gets one from what it holds
            (the backbone's name as the weights, the size, the layers, :func:`records_key` of ``records``).
    """

    backbone: str
    size: int
    layers: dict[str, int]
    records: list[ImageRecord]
    arrays: dict[str, np.ndarray]
    failures: list[Failure] = field(default_factory=list)
    stats: ExtractStats = field(default_factory=ExtractStats)
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = _features_key(self.backbone, f"resize{self.size}", self.layers, records_key(self.records), False)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    def __getitem__(self, kind: str) -> np.ndarray:
        return self.arrays[kind]

    def subset(self, rows: Sequence[int] | np.ndarray) -> FeatureSet:
        """The features of the images at ``rows`` (in that order), with their own identity (``key``: this
        set's key and the chosen images' :func:`records_key`); failures and stats are not carried over."""
        idx = np.asarray(rows, dtype=np.int64)
        records = [self.records[int(i)] for i in idx]
        key = hashlib.sha256(f"{self.key}|rows|{records_key(records)}".encode()).hexdigest()[:16]
        return FeatureSet(self.backbone, self.size, dict(self.layers), records,
                          {k: v[idx] for k, v in self.arrays.items()}, key=key)


def _free_cores() -> int:
    """CPU cores this process may use beyond torch's intra-op threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, cores - torch.get_num_threads())


def _spare_core() -> bool:
    return _free_cores() > 0


def _decode_resized(record: ImageRecord, size: int) -> np.ndarray | Failure:
    """Worker-process job: the image decoded and resized exactly as ``Backbone.preprocess`` does,
    ``uint8 [S, S, 3]`` (preprocess then leaves it at S x S), or why it failed."""
    try:
        im = decode_image(record.read_bytes(), record.name, draft=size)
    except ImageDecodeError as e:
        return Failure(e.name, e.reason)
    except OSError as e:
        return Failure(record.name, f"cannot read file ({e})")
    return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))


def _process_pool(workers: int) -> ProcessPoolExecutor | None:
    """A fork-based pool (fork never re-runs the caller's main module, as spawn would for a page
    script); None where fork is unavailable."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))


def _in_order(fn: Callable[[T], R], items: Sequence[T], ahead: bool) -> Iterator[R]:
    """``fn(item)`` for each item, in order; with ``ahead``, the next item's result is computed on
    a worker thread while the caller works on the current one."""
    if not ahead:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fn, items[0]) if items else None
        for k in range(len(items)):
            assert pending is not None  # submitted for item k in the previous step
            result = pending.result()
            pending = pool.submit(fn, items[k + 1]) if k + 1 < len(items) else None
            yield result


def feature_layers(backbone: Backbone, kinds: Sequence[str], layer: LayerLike) -> dict[str, int]:
    """The resolved block index each output kind is taken from (-1: not layer-specific)."""
    return output_layers(backbone.spec, list(kinds), layer)


def cached_count(backbone: Backbone, records: Sequence[ImageRecord], store: FeatureStore, *,
                 kinds: Sequence[str] = ("embedding",), layer: LayerLike = None, size: int | None = None) -> int:
    """How many of ``records`` have every output of ``kinds`` in ``store`` for these arguments of
    :func:`extract_features` (an index look-up): what a cancelled extraction kept, so what a rerun
    will not compute again."""
    spec = backbone.spec
    size = spec.check_size(size or spec.input_size)
    layers = feature_layers(backbone, kinds, layer)
    prep = preprocessing_id(spec, size)
    have = [True] * len(records)
    for k in kinds:
        prefix = FeatureKey.prefix(spec.weights_id, prep, layers[k], k)
        have = [h and c for h, c in zip(have, store.contains([prefix + r.sha256 for r in records]))]
    return sum(have)


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
    keep: bool = True,
    half_tokens: bool = False,
    decode_workers: int | None = None,
    cancel: CancelLike | None = None,
) -> FeatureSet:
    """Features for ``records``, from the store where cached, else computed and stored.

    Memory is bounded: with a store, each batch goes to the store as soon as it is computed and
    nothing is accumulated; the result is then read back in chunks into one preallocated array
    per kind (``keep=False`` skips that: the features only fill the store).

    Args:
        backbone: the model.
        records: images (from :func:`core.io.images.load_folder` / ``load_uploads``).
        kinds: outputs wanted, see :meth:`Backbone.extract`.
        layer: block for embedding / patch tokens: a :class:`core.models.layers.Layer`, an index or
            None (each kind's default, :func:`core.models.layers.resolve_layer`).
        size: square input side (None: the spec's input size).
        batch_size: images per forward pass.
        store: the cache (None: no caching; the computed arrays are kept in memory).
        progress: called as ``progress(done, total)`` after the cache look-up and each batch.
        prefetch: decode the next batch on a worker thread during the forward pass. None: only
            when a CPU core is left over by torch's threads (on 2 cores with 2 torch threads the
            thread only competes with the forward: measured 10% slower for MobileNetV2), and on
            worker processes (``decode_workers``) where two or more cores are left over.
        decode_workers: processes decoding the next batch during the forward (None: the cores
            torch leaves free, used when there are at least 2 and the caller is the main thread;
            0: none). Same pixels as inline.
        keep: return the arrays (False: fill the store only; ``FeatureSet.arrays`` is empty).
        half_tokens: store patch tokens as float16 (half the bytes) and return them as float16.
            Without it, tokens are returned as float32 whatever the stored dtype.
        cancel: a ``threading.Event`` or a callable returning True to stop; asked before each
            batch's forward pass (a page passes "the user pressed Cancel or closed the tab").

    Raises:
        Cancelled: ``cancel`` said stop. The batches already written stay in the store.
        DiskFullError / CacheError: the store could not be written (that batch is rolled back whole).
    """
    t0 = time.perf_counter()
    spec = backbone.spec
    size = spec.check_size(size or spec.input_size)
    layers = feature_layers(backbone, kinds, layer)
    prep = preprocessing_id(spec, size)
    n = len(records)
    prefix = {k: FeatureKey.prefix(spec.weights_id, prep, layers[k], k) for k in kinds}
    dtypes = {k: np.dtype(np.float16 if half_tokens and k == "patch_tokens" else np.float32) for k in kinds}

    def skeys(k: str, idx: Iterable[int]) -> list[str]:
        return [prefix[k] + records[i].sha256 for i in idx]

    arrays: dict[str, np.ndarray] = {}
    if store is not None and keep:
        # one pass: read what is cached (in chunks, into one array per kind); the rest is computed,
        # written, and read into the same arrays below
        missing: set[int] = set()
        for k in kinds:
            arrays[k], miss = store.read_rows(skeys(k, range(n)), dtypes[k])
            missing.update(miss)
        todo = sorted(missing)
    elif store is not None:
        have = [all(c) for c in zip(*(store.contains(skeys(k, range(n))) for k in kinds))]
        todo = [i for i in range(n) if not have[i]]
    else:
        todo = list(range(n))
    stats = ExtractStats(n_images=n)
    failures: dict[int, Failure] = {}
    held: dict[str, dict[int, np.ndarray]] = {k: {} for k in kinds}  # only without a store
    done = n - len(todo)
    if progress:
        progress(done, n)

    def compute(todo: list[int]) -> None:
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]

        def load(batch: list[int]) -> tuple[list[int], torch.Tensor | None, dict[int, Failure]]:
            ok, images, bad = [], [], {}
            for i in batch:
                try:
                    images.append(decode_image(records[i].read_bytes(), records[i].name, draft=size))
                    ok.append(i)
                except ImageDecodeError as e:
                    bad[i] = Failure(e.name, e.reason)
                except OSError as e:  # the file vanished or became unreadable since it was listed
                    bad[i] = Failure(records[i].name, f"cannot read file ({e})")
            return ok, (backbone.preprocess(images, size) if images else None), bad

        # auto: processes only from the main thread (forking a threaded server, e.g. Streamlit's
        # script threads, can copy a held lock into the child)
        auto = _free_cores() if threading.current_thread() is threading.main_thread() else 0
        n_proc = (auto if decode_workers is None else decode_workers) if prefetch is None else 0
        pool = _process_pool(n_proc) if n_proc >= 2 and len(todo) > batch_size else None
        if pool is not None:
            def submit(batch: list[int]) -> list[Future]:
                return [pool.submit(_decode_resized, records[i], size) for i in batch]

            def pooled() -> Iterator[tuple[list[int], torch.Tensor | None, dict[int, Failure]]]:
                pending = submit(batches[0]) if batches else []
                for k, batch in enumerate(batches):
                    results = [f.result() for f in pending]
                    pending = submit(batches[k + 1]) if k + 1 < len(batches) else []  # decode ahead
                    ok = [i for i, r in zip(batch, results) if not isinstance(r, Failure)]
                    bad = {i: r for i, r in zip(batch, results) if isinstance(r, Failure)}
                    imgs = [Image.fromarray(r) for r in results if not isinstance(r, Failure)]
                    yield ok, (backbone.preprocess(imgs, size) if imgs else None), bad

            loaded: Iterator[tuple[list[int], torch.Tensor | None, dict[int, Failure]]] = pooled()
        else:
            loaded = _in_order(load, batches, _spare_core() if prefetch is None else prefetch)
        try:
            run_batches(batches, loaded)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def run_batches(batches: list[list[int]],
                    loaded: Iterator[tuple[list[int], torch.Tensor | None, dict[int, Failure]]]) -> None:
        nonlocal done
        for batch, (ok, x, bad) in zip(batches, loaded):
            if should_stop(cancel):
                kept = f"; the {stats.n_computed} images extracted so far are kept in the cache" if store is not None else ""
                raise Cancelled(f"extraction cancelled after {done} of {n} images{kept}")
            failures.update(bad)
            if x is not None:
                out = backbone.extract(x.to(backbone.device), layer, want=tuple(kinds))
                del x
                stats.forwards += 1
                stats.n_computed += len(ok)
                fresh: dict[FeatureKey, np.ndarray] = {}
                for k in kinds:
                    # a copy of exactly this kind's rows: never a view that keeps a larger tensor alive
                    arr = np.array(out[k].float().cpu().numpy(), dtype=np.float32, copy=True)
                    if half_tokens and k == "patch_tokens":
                        arr = arr.astype(np.float16)
                    for j, i in enumerate(ok):
                        if store is not None:
                            fresh[FeatureKey(spec.weights_id, prep, layers[k], k, records[i].sha256)] = arr[j]
                        else:
                            held[k][i] = arr[j]
                del out
                if store is not None:
                    store.put_many(fresh)
            done += len(batch)
            if progress:
                progress(done, n)

    compute(todo)
    keep_idx = [i for i in range(n) if i not in failures]
    if keep and store is not None:
        fresh_idx = [i for i in todo if i not in failures]
        for k in kinds:
            if not fresh_idx:
                break
            rows, still = store.read_rows(skeys(k, fresh_idx), dtypes[k])
            if still:
                raise RuntimeError(f"{len(still)} features just written could not be read back from {store.path}")
            if arrays[k].shape[1:] != rows.shape[1:]:  # nothing of this kind was cached: no row shape yet
                arrays[k] = np.zeros((n, *rows.shape[1:]), dtypes[k])
            arrays[k][fresh_idx] = rows
        if failures:
            arrays = {k: a[keep_idx] for k, a in arrays.items()}
    elif keep:
        for k in kinds:
            kept = [held[k][i] for i in keep_idx]
            arrays[k] = np.stack(kept) if kept else np.zeros((0,), np.float32)
    stats.n_failed = len(failures)
    stats.n_cached = n - stats.n_computed - stats.n_failed
    stats.seconds = time.perf_counter() - t0
    key = _features_key(spec.weights_id, prep, layers, records_key(records), half_tokens)
    return FeatureSet(spec.name, size, layers, [records[i] for i in keep_idx], arrays, list(failures.values()), stats,
                      key)
