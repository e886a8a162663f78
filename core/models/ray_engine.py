"""Distributed extraction with Ray Data: images in, Parquet feature shards out.

The job (``backbone-lens extract --engine ray``)::

    list the folder (driver; no image is read)  ->  drop images already in the shards or the store
    ray.data.read_binary_files(paths)            ->  bytes + path, read by Ray tasks
    .map_batches(_Embedder, ActorPoolStrategy)   ->  one backbone per actor, loaded once; decode,
                                                     preprocess and forward exactly as the local path
    .write_parquet(out)                          ->  shards, one row per (image, kind) (core.io.shards)

Resumable: a rerun skips every image whose rows are already in ``out`` (matched by path) or whose
features are already in the local FeatureStore (matched by the sha256 remembered in the file index
for an unchanged file). Faults: Ray Data runs the actor pool with ``max_restarts=-1`` and retries
the lost batch on the restarted actor; rows reach the Parquet writer only from finished batches,
so every image is written once.

Without ``address`` a private local Ray is started on this machine (loopback only, no dashboard, a
small object store) and stopped at the end; ``"auto"`` or ``"ray://host:port"`` joins a cluster,
whose workers then need this package (shipped with ``runtime_env={"py_modules": [core]}``) and the
image paths (a shared file system; see the README for object storage).
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.io.images import Failure, list_image_files

LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
# Fault-injection hook for the tests: the actor SIGKILLs itself after this many batches, once per
# marker file (the path in _KILL_MARKER_ENV), so a restarted actor goes on normally.
_KILL_AFTER_ENV = "BACKBONE_LENS_RAY_KILL_AFTER_BATCHES"
_KILL_MARKER_ENV = "BACKBONE_LENS_RAY_KILL_MARKER"


@dataclass(frozen=True)
class RayExtractConfig:
    backbone: str
    images: str | os.PathLike
    out: str | os.PathLike
    kinds: Sequence[str] = ("embedding",)
    layer: int | None = None
    size: int | None = None
    batch_size: int = 16
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0


@dataclass
class RayExtractResult:
    n_images: int
    n_skipped: int
    n_written: int
    shards_written: int
    seconds: float
    failures: list[Failure] = field(default_factory=list)


class _Embedder:
    """The callable class of the actor pool: one backbone per actor, built in ``__init__``."""

    def __init__(self, backbone: str, kinds: Sequence[str], layer: int | None, size: int, root: str,
                 labelled: bool, use_gpu: bool, cpus: int):
        import torch

        from core.models.registry import create_backbone

        torch.set_num_threads(max(1, cpus))
        self.backbone = create_backbone(backbone)
        self.device = "cuda" if use_gpu else "cpu"
        if use_gpu:
            self.backbone.model.to(self.device)
        from core.models.extract import feature_layers, preprocessing_id

        self.kinds, self.layer, self.size = tuple(kinds), layer, size
        self.layers = feature_layers(self.backbone, self.kinds, layer)
        self.prep = preprocessing_id(self.backbone.spec, size)
        self.root, self.labelled = root, labelled
        self.batches = 0

    def _label(self, path: str) -> str:
        if not self.labelled:
            return ""
        rel = os.path.relpath(path, self.root)
        return rel.split(os.sep, 1)[0]

    def __call__(self, batch: dict[str, Any]) -> Any:
        import pyarrow as pa

        from core.errors import ImageDecodeError
        from core.io.images import decode_image
        from core.io.shards import shard_table

        images, shas, paths = [], [], []
        for data, path in zip(batch["bytes"], batch["path"]):
            data = bytes(data)
            try:
                images.append(decode_image(data, os.path.basename(path), draft=self.size))
            except ImageDecodeError:
                continue  # reported by the driver: its path has no row in the shards
            shas.append(hashlib.sha256(data).hexdigest())
            paths.append(str(path))
        tables = []
        if images:
            x = self.backbone.preprocess(images, self.size).to(self.device)
            out = self.backbone.extract(x, self.layer, want=self.kinds)
            labels = [self._label(p) for p in paths]
            for k in self.kinds:
                vec = out[k].float().cpu().numpy().reshape(len(images), -1)  # [n, D]
                tables.append(shard_table(shas, paths, labels, self.backbone.spec.weights_id, self.prep,
                                          [self.layers[k]] * len(paths), [k] * len(paths), vec))
        else:
            tables.append(shard_table([], [], [], "", "", [], [], np.zeros((0, 1), np.float32)))
        self.batches += 1
        self._maybe_die()
        return pa.concat_tables(tables)

    def _maybe_die(self) -> None:
        after, marker = os.environ.get(_KILL_AFTER_ENV), os.environ.get(_KILL_MARKER_ENV)
        if after and marker and self.batches >= int(after):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def _init_ray(address: str | None) -> bool:
    """Connect to Ray; returns True when this call started a local instance (to stop at the end)."""
    if address is None:
        # Ray resolves 127.0.0.1 to the machine's routable address unless clustering is off, in
        # which case it keeps every service on the loopback interface (its single-machine mode).
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time; the env var covers child processes
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from core.io.paths import ENV_VAR, cache_dir

    env = {ENV_VAR: str(cache_dir()), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.update({k: os.environ[k] for k in (_KILL_AFTER_ENV, _KILL_MARKER_ENV) if k in os.environ})
    if address is None:
        repo = str(Path(__file__).resolve().parents[2])
        pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {**env, "PYTHONPATH": pythonpath}})
        return True
    import core

    ray.init(address=address, runtime_env={"py_modules": [str(Path(core.__file__).parent)],
                                           "env_vars": {"OMP_NUM_THREADS": env["OMP_NUM_THREADS"]}})
    return False


def _done_paths(out: Path, weights_id: str, prep: str, layers: dict[str, int]) -> set[str]:
    """Paths with a row for every wanted (kind, layer) of these weights and preprocessing."""
    from core.io.shards import iter_shard_keys

    want = {(k, layer) for k, layer in layers.items()}
    seen: dict[str, set[tuple[str, int]]] = {}
    for path, _sha, w, p, layer, kind in iter_shard_keys(out):
        if w == weights_id and p == prep and (kind, layer) in want:
            seen.setdefault(path, set()).add((kind, layer))
    return {p for p, got in seen.items() if got >= want}


def _in_store(root: Path, paths: list[str], spec_weights_id: str, prep: str, layers: dict[str, int]) -> set[str]:
    """Paths whose file is unchanged since hashed (file index) and whose features are all in the store."""
    from core.io.hashing import FileIndex
    from core.io.images import FILE_INDEX_NAME
    from core.io.paths import cache_dir
    from core.io.store import FeatureKey, FeatureStore

    index_path = cache_dir() / FILE_INDEX_NAME
    store_path = cache_dir() / "features.sqlite"
    if not index_path.exists() or not store_path.exists() or not paths:
        return set()
    index = FileIndex(index_path)
    known = index.under(root)
    index.close()
    cand: list[tuple[str, str]] = []
    for p in paths:
        facts = known.get(p)
        if facts is not None and facts.failure is None:
            try:
                st = os.stat(p)
            except OSError:
                continue
            if facts.size == st.st_size and facts.mtime_ns == st.st_mtime_ns:
                cand.append((p, facts.sha256))
    if not cand:
        return set()
    store = FeatureStore(store_path)
    ok = [True] * len(cand)
    for k, layer in layers.items():
        has = store.contains([FeatureKey(spec_weights_id, prep, layer, k, sha) for _, sha in cand])
        ok = [a and b for a, b in zip(ok, has)]
    store.close()
    return {p for (p, _), good in zip(cand, ok) if good}


def embed_images(ds: Any, backbone: str, *, root: str, labelled: bool = True, kinds: Sequence[str] = ("embedding",),
                 layer: int | None = None, size: int | None = None, batch_size: int = 16,
                 workers: int | None = None, gpus_per_worker: float = 0.0) -> Any:
    """The actor-pool stage on any Ray dataset with ``bytes`` and ``path`` columns (e.g. from
    ``ray.data.read_binary_files(..., include_paths=True, filesystem=pyarrow.fs.S3FileSystem())``);
    returns a dataset of shard rows (:mod:`core.io.shards`). ``root``: the dataset root the labels
    are read under (``<root>/<class>/...``; ``labelled=False``: no labels).

    Args:
        size: input side (None: the backbone's own input size).
        workers: model actors (None: one per 2 CPUs of the cluster).
        gpus_per_worker: GPUs reserved per actor (the model runs on CUDA when > 0).
    """
    import ray

    if size is None:
        from core.models.registry import create_backbone

        size = create_backbone(backbone).spec.input_size
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = workers or max(1, cpus // 2)
    per_actor = max(1, cpus // workers - 1) if gpus_per_worker == 0 else 1
    return ds.map_batches(
        _Embedder, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1, num_gpus=gpus_per_worker or None,
        fn_constructor_kwargs=dict(backbone=backbone, kinds=tuple(kinds), layer=layer, size=size, root=root,
                                   labelled=labelled, use_gpu=gpus_per_worker > 0, cpus=per_actor))


def extract_with_ray(cfg: RayExtractConfig) -> RayExtractResult:
    """Run the Ray Data job described in the module docstring; returns what it did."""
    import ray

    from core.io.shards import SHARD_KINDS, shard_files
    from core.models.extract import feature_layers, preprocessing_id
    from core.models.registry import create_backbone

    t0 = time.perf_counter()
    kinds = tuple(cfg.kinds)
    bad = [k for k in kinds if k not in SHARD_KINDS]
    if bad:
        raise ValueError(f"--engine ray writes one vector per image: kinds {', '.join(SHARD_KINDS)} "
                         f"(not {', '.join(bad)}); extract patch tokens or attention with the local engine")
    root = Path(cfg.images).expanduser().resolve()
    jobs, failures = list_image_files(root)
    labelled = any(label for label, _, _ in jobs)
    out = Path(cfg.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)

    backbone = create_backbone(cfg.backbone)  # the spec decides keys; the model is freed below
    spec = backbone.spec
    size = spec.check_size(cfg.size or spec.input_size)
    layers = feature_layers(backbone, kinds, cfg.layer)
    prep = preprocessing_id(spec, size)
    del backbone

    paths = [str(root / name) for _, name, _ in jobs]
    done = _done_paths(out, spec.weights_id, prep, layers) | _in_store(root, paths, spec.weights_id, prep, layers)
    todo = [p for p in paths if p not in done]
    before = set(shard_files(out))
    if todo:
        started = _init_ray(cfg.address)
        try:
            ds = ray.data.read_binary_files(todo, include_paths=True)
            embed_images(ds, cfg.backbone, root=str(root), labelled=labelled, kinds=kinds, layer=cfg.layer,
                         size=size, batch_size=cfg.batch_size, workers=cfg.workers,
                         gpus_per_worker=cfg.gpus_per_worker).write_parquet(str(out))
        finally:
            if started:
                ray.shutdown()
    new = sorted(set(shard_files(out)) - before)
    written = _paths_in(new)
    for p in todo:
        if p not in written:
            failures.append(Failure(os.path.relpath(p, root), "could not be decoded on a worker (not written)"))
    return RayExtractResult(len(paths), len(paths) - len(todo), len(written), len(new),
                            time.perf_counter() - t0, failures)


def _paths_in(files: list[Path]) -> set[str]:
    import pyarrow.parquet as pq

    out: set[str] = set()
    for f in files:
        out.update(pq.read_table(f, columns=["path"]).column("path").to_pylist())
    return out
