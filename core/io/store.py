"""FeatureStore: a content-addressed cache of extracted features in one SQLite file.

Why SQLite: one file, atomic transactions (a crash mid-write rolls back, never leaving a half
entry), safe concurrent use by several processes (file locks + WAL, writers wait on a busy
timeout), and fast keyed look-ups for thousands of small arrays, with no extra dependency.
Each entry is one image's array for one (backbone weights, preprocessing, layer, kind), stored
as raw bytes with dtype, shape and a blake2b checksum; an entry that fails its checksum or shape
is treated as corrupt, deleted and recomputed by the caller.
"""
from __future__ import annotations

import functools
import hashlib
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from core.io.paths import cache_dir

_CHUNK = 500  # keys per SELECT (SQLite's bound-parameter limit is 999 on old builds)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    key      TEXT PRIMARY KEY,
    dtype    TEXT NOT NULL,
    shape    TEXT NOT NULL,
    checksum TEXT NOT NULL,
    data     BLOB NOT NULL,
    created  REAL NOT NULL
)
"""


@dataclass(frozen=True)
class FeatureKey:
    """Identity of one cached array: which weights, which preprocessing, which layer, which
    output kind, which image (sha256 of its bytes)."""

    weights_id: str
    preprocessing: str
    layer: int
    kind: str
    image_sha256: str

    def __str__(self) -> str:
        return self.prefix(self.weights_id, self.preprocessing, self.layer, self.kind) + self.image_sha256

    @staticmethod
    def prefix(weights_id: str, preprocessing: str, layer: int, kind: str) -> str:
        """The key string of every image of one (weights, preprocessing, layer, kind) up to the sha256:
        ``prefix(...) + sha256 == str(FeatureKey(..., sha256))`` (building many keys as strings is cheaper)."""
        return f"{weights_id}|{preprocessing}|L{layer}|{kind}|"


@functools.lru_cache(maxsize=64)
def _dims(shape: str) -> tuple[int, ...]:
    return tuple(int(s) for s in shape.split(",") if s)


@functools.lru_cache(maxsize=16)
def _dtype(name: str) -> np.dtype:
    return np.dtype(name)


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FeatureStore:
    """Keyed numpy arrays on disk. Thread-safe within a process, safe across processes."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else cache_dir() / "features.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.corrupt_dropped = 0  # entries found corrupt and deleted (for diagnostics)
        with self._conn() as c:
            c.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[FeatureKey]) -> dict[FeatureKey, np.ndarray]:
        """The valid cached arrays among ``keys``; corrupt entries are deleted and omitted."""
        by_str = {str(k): k for k in keys}
        out: dict[FeatureKey, np.ndarray] = {}
        bad: list[str] = []
        strs = list(by_str)
        conn = self._conn()
        for i in range(0, len(strs), _CHUNK):
            chunk = strs[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, dtype, shape, checksum, data FROM features WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, dtype, shape, checksum, data in rows:
                arr = self._decode(dtype, shape, checksum, data)
                if arr is None:
                    bad.append(key)
                else:
                    out[by_str[key]] = arr
        if bad:
            self.corrupt_dropped += len(bad)
            with _transaction(conn):
                conn.executemany("DELETE FROM features WHERE key = ?", [(k,) for k in bad])
        return out

    def contains(self, keys: Sequence[FeatureKey | str]) -> list[bool]:
        """Whether each key has an entry (an index look-up: no array is read or checked)."""
        strs = [str(k) for k in keys]
        found: set[str] = set()
        conn = self._conn()
        for i in range(0, len(strs), _CHUNK):
            chunk = strs[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in conn.execute(f"SELECT key FROM features WHERE key IN ({marks})", chunk))
        return [s in found for s in strs]

    def read_rows(self, keys: Sequence[FeatureKey | str],
                  dtype: np.dtype | None = None) -> tuple[np.ndarray, list[int]]:
        """The arrays of ``keys`` stacked into one array ``[len(keys), *shape]``, read in chunks.

        Memory: the result plus one chunk of blobs; no per-key dict of arrays. Every entry must
        have the shape of the first valid one. ``dtype`` (default: the first entry's) is the
        result's dtype; entries stored in another dtype are cast.

        Returns:
            ``(array, missing)``: ``missing`` lists the positions with no valid entry (absent, or
            corrupt: those are deleted, counted in :attr:`corrupt_dropped`); their rows are zero.
        """
        out: np.ndarray | None = None
        missing: list[int] = []
        bad: list[str] = []
        conn = self._conn()
        for i in range(0, len(keys), _CHUNK):
            chunk = [str(k) for k in keys[i:i + _CHUNK]]
            marks = ",".join("?" * len(chunk))
            rows = {r[0]: r[1:] for r in conn.execute(
                f"SELECT key, dtype, shape, checksum, data FROM features WHERE key IN ({marks})", chunk)}
            for j, key in enumerate(chunk):
                row = rows.get(key)
                arr = None
                if row is not None:
                    dtype_s, shape_s, checksum, data = row
                    arr = self._decode(dtype_s, shape_s, checksum, data, copy=False)
                if arr is None:
                    missing.append(i + j)
                    if row is not None:
                        bad.append(key)
                    continue
                if out is None:
                    out = np.empty((len(keys), *arr.shape), dtype or arr.dtype)
                if arr.shape != out.shape[1:]:
                    raise ValueError(f"cached entry {key} has shape {arr.shape}, the others {out.shape[1:]}")
                out[i + j] = arr
            del rows
        if bad:
            self.corrupt_dropped += len(bad)
            with _transaction(conn):
                conn.executemany("DELETE FROM features WHERE key = ?", [(k,) for k in bad])
        if out is None:
            out = np.zeros((len(keys), 0), dtype or np.float32)
        elif missing:
            out[missing] = 0
        return out, missing

    @staticmethod
    def _decode(dtype: str, shape: str, checksum: str, data: bytes, copy: bool = True) -> np.ndarray | None:
        try:
            dims = _dims(shape)
            dt = _dtype(dtype)
        except (ValueError, TypeError):
            return None
        if len(data) != dt.itemsize * math.prod(dims) or _checksum(data) != checksum:
            return None
        arr = np.frombuffer(data, dtype=dt).reshape(dims)
        return arr.copy() if copy else arr

    def put_many(self, items: Mapping[FeatureKey, np.ndarray]) -> None:
        """Write all entries in one transaction (all or nothing)."""
        rows = []
        now = time.time()
        for k, arr in items.items():
            a = np.ascontiguousarray(arr)
            data = a.tobytes()
            rows.append((str(k), a.dtype.str, ",".join(map(str, a.shape)), _checksum(data), data, now))
        conn = self._conn()
        with _transaction(conn):
            conn.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM features").fetchone()[0]

    def clear(self) -> None:
        with _transaction(self._conn()) as c:
            c.execute("DELETE FROM features")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *_):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
