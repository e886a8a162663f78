"""Feature shards: Parquet files with one row per (image, output kind), written by a batch engine
(``backbone-lens extract --engine ray``) and merged into the FeatureStore by ``backbone-lens import``.

Schema (:data:`SHARD_FIELDS`; the import side checks exactly these columns):

==================  ===============  ===========================================================
``sha256``          string           sha256 of the image file's bytes (the store's image key)
``path``            string           where the image was read from
``label``           string           class label (first folder under the dataset root), or ""
``weights_id``      string           the backbone weights identity (``BackboneSpec.weights_id``)
``preprocessing_id`` string          ``core.models.extract.preprocessing_id``
``layer``           int64            resolved block index (-1: not layer-specific)
``kind``            string           ``embedding`` or ``logits``
``vector``          list<float32>    the output, ``[D]``
==================  ===============  ===========================================================
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

SHARD_FIELDS: tuple[tuple[str, str], ...] = (
    ("sha256", "string"), ("path", "string"), ("label", "string"), ("weights_id", "string"),
    ("preprocessing_id", "string"), ("layer", "int64"), ("kind", "string"), ("vector", "list<float32>"),
)
SHARD_KINDS = ("embedding", "logits")  # one-dimensional outputs: a vector per image


def shard_schema():
    """The Arrow schema of a shard."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "list<float32>": pa.list_(pa.float32())}
    return pa.schema([(name, types[t]) for name, t in SHARD_FIELDS])


def shard_table(sha256: Sequence[str], path: Sequence[str], label: Sequence[str], weights_id: str,
                preprocessing_id: str, layer: Sequence[int], kind: Sequence[str], vectors: np.ndarray):
    """Rows as an Arrow table with the shard schema; ``vectors`` is ``[n, D]`` float32."""
    import pyarrow as pa

    v = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = v.shape
    flat = pa.array(v.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32) if n else np.zeros(1, np.int32))
    return pa.table({
        "sha256": pa.array(list(sha256), pa.string()), "path": pa.array(list(path), pa.string()),
        "label": pa.array(list(label), pa.string()), "weights_id": pa.array([weights_id] * n, pa.string()),
        "preprocessing_id": pa.array([preprocessing_id] * n, pa.string()),
        "layer": pa.array(list(layer), pa.int64()), "kind": pa.array(list(kind), pa.string()),
        "vector": pa.ListArray.from_arrays(offsets, flat),
    }, schema=shard_schema())


def shard_files(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    return sorted(d.rglob("*.parquet")) if d.is_dir() else []


def iter_shard_keys(directory: str | os.PathLike) -> Iterator[tuple[str, str, str, str, int, str]]:
    """``(path, sha256, weights_id, preprocessing_id, layer, kind)`` of every row, without vectors."""
    import pyarrow.parquet as pq

    cols = ["path", "sha256", "weights_id", "preprocessing_id", "layer", "kind"]
    for f in shard_files(directory):
        for b in pq.ParquetFile(f).iter_batches(batch_size=65_536, columns=cols):
            yield from zip(*(b.column(c).to_pylist() for c in cols))


def read_shards(directory: str | os.PathLike, kind: str = "embedding") -> tuple[list[str], list[str], np.ndarray]:
    """``(sha256s, paths, vectors [N, D])`` of one kind, in file order (for tests and small sets)."""
    import pyarrow.parquet as pq

    shas: list[str] = []
    paths: list[str] = []
    rows: list[np.ndarray] = []
    for f in shard_files(directory):
        t = pq.read_table(f, filters=[("kind", "=", kind)])
        shas += t.column("sha256").to_pylist()
        paths += t.column("path").to_pylist()
        vec = t.column("vector").combine_chunks()
        if len(vec):
            rows.append(np.asarray(vec.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(vec), -1))
    return shas, paths, (np.concatenate(rows) if rows else np.zeros((0, 0), np.float32))
