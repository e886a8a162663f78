"""FeatureStore: a content-addressed cache of extracted features in one SQLite file.

Why SQLite: one file, atomic transactions (a crash mid-write rolls back, never leaving a half
entry), safe concurrent use by several processes (file locks + WAL, writers wait on a busy
timeout), and fast keyed look-ups for thousands of small arrays, with no extra dependency.
Each entry is one image's array for one (backbone weights, preprocessing, layer, kind), stored
as raw bytes with dtype, shape and a blake2b checksum; an entry that fails its checksum or shape
is treated as corrupt, deleted and recomputed by the caller.

A cache file that SQLite cannot use (damaged header or first pages, truncated, replaced by
garbage, a folder in its place, tables of another schema) is found when the store is opened and
moved aside next to itself as ``features.sqlite.corrupt-<time>`` with a :class:`CacheRecoveredWarning`
naming that file, and a fresh cache is started (:mod:`core.io.sqlite_heal`, shared with the file
index); damage found later, while in use, is healed the same way and the operation retried once.
What cannot be healed (a read-only folder, a lock held past the timeout, a full disk) raises a
one-line :class:`~core.errors.CacheError`; a batch whose write failed is rolled back whole. Temporary
files older than :data:`ORPHAN_TMP_AGE_S` under the cache folder's ``weights/`` and ``hashes/``
(left by a conversion or hash that was killed) are removed at the same time.
"""
from __future__ import annotations

import functools
import hashlib
import math
import sqlite3
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.io import sqlite_heal
from core.io.heal import CacheRecoveredWarning
from core.io.paths import cache_dir
from core.io.sqlite_heal import transaction as _transaction

__all__ = ["CacheRecoveredWarning", "FeatureKey", "FeatureStore", "remove_orphan_temp_files"]

_CHUNK = 500  # keys per SELECT (SQLite's bound-parameter limit is 999 on old builds)

COLUMNS = ("key", "dtype", "shape", "checksum", "data", "created")
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


ORPHAN_TMP_AGE_S = 300.0  # a temp file is written and renamed within seconds; older ones are orphans
_WHAT = "feature cache"


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FeatureStore:
    """Keyed numpy arrays on disk. Thread-safe within a process, safe across processes."""

    def __init__(self, path: str | Path | None = None):
        """Open (or create) the cache at ``path`` (default ``cache_dir() / "features.sqlite"``),
        healing it first (see the module docstring).

        Raises:
            NotADirectoryError: the cache folder is a file.
            CacheError: the folder is read-only, or another process holds the file locked past the timeout.
        """
        self.path = Path(path) if path else cache_dir() / "features.sqlite"
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise NotADirectoryError(f"the cache folder {self.path.parent} is a file: pass a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.corrupt_dropped = 0  # entries found corrupt and deleted (for diagnostics)
        self.orphans_removed: list[Path] = remove_orphan_temp_files(self.path.parent)
        self._db = sqlite_heal.Database(self.path, _WHAT, {"features": COLUMNS}, _SCHEMA)
        self._run = self._db.run

    @property
    def moved_aside(self) -> Path | None:
        """Where an unusable cache file went (when opened or later), if one was found."""
        return self._db.moved_aside

    def _conn(self) -> sqlite3.Connection:
        return self._db.conn()

    def get_many(self, keys: Iterable[FeatureKey]) -> dict[FeatureKey, np.ndarray]:
        """The valid cached arrays among ``keys``; corrupt entries are deleted and omitted."""
        by_str = {str(k): k for k in keys}
        return self._run(lambda conn: self._get_many(conn, by_str))

    def _get_many(self, conn: sqlite3.Connection, by_str: dict[str, FeatureKey]) -> dict[FeatureKey, np.ndarray]:
        out: dict[FeatureKey, np.ndarray] = {}
        bad: list[str] = []
        strs = list(by_str)
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

        def op(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(strs), _CHUNK):
                chunk = strs[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in conn.execute(f"SELECT key FROM features WHERE key IN ({marks})", chunk))
            return found

        found = self._run(op)
        return [s in found for s in strs]

    def read_rows(self, keys: Sequence[FeatureKey | str], dtype: np.dtype | None = None,
                  shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, list[int]]:
        """The arrays of ``keys`` stacked into one array ``[len(keys), *shape]``, read in chunks.

        Memory: the result plus one chunk of blobs; no per-key dict of arrays. ``dtype`` (default:
        the first entry's) is the result's dtype; entries stored in another dtype are cast.
        ``shape`` (default: that of most entries) is every row's; an entry of another shape (e.g.
        written by another version of a model under the same key) is corrupt.

        Returns:
            ``(array, missing)``: ``missing`` lists the positions with no valid entry (absent, or
            corrupt: those are deleted, counted in :attr:`corrupt_dropped`); their rows are zero.
        """
        return self._run(lambda conn: self._read_rows(conn, keys, dtype, shape))

    def _read_rows(self, conn: sqlite3.Connection, keys: Sequence[FeatureKey | str], dtype: np.dtype | None,
                   shape: tuple[int, ...] | None) -> tuple[np.ndarray, list[int]]:
        out: np.ndarray | None = None
        missing: list[int] = []
        bad: list[str] = []
        odd: list[tuple[int, str, tuple[int, ...]]] = []  # (position, key, shape) of other-shaped entries
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
                if out is None and (shape is None or arr.shape == tuple(shape)):
                    out = np.empty((len(keys), *arr.shape), dtype or arr.dtype)
                if out is None or arr.shape != out.shape[1:]:
                    odd.append((i + j, key, arr.shape))
                    continue
                out[i + j] = arr
            del rows
        if odd:
            shapes = Counter(s for _, _, s in odd)
            top, n_top = shapes.most_common(1)[0]
            if shape is None and n_top > len(keys) - len(missing) - len(odd):  # most entries have another shape
                return self._read_rows(conn, keys, dtype, top)
            warnings.warn(f"the feature cache held {len(odd)} entries of another shape than "
                          f"{None if out is None else out.shape[1:]} (first: {odd[0][1]}); dropped, to be recomputed", stacklevel=2)
            missing = sorted(missing + [p for p, _, _ in odd])
            bad += [k for _, k, _ in odd]
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
        """Write all entries in one transaction (all or nothing: a full disk leaves none of them).

        Raises:
            DiskFullError: the disk (or file-size limit) holding the cache is full.
            CacheError: another process held the file locked past the timeout, or the folder became read-only.
        """
        rows = []
        now = time.time()
        for k, arr in items.items():
            a = np.ascontiguousarray(arr)
            data = a.tobytes()
            rows.append((str(k), a.dtype.str, ",".join(map(str, a.shape)), _checksum(data), data, now))

        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?)", rows)

        self._run(op)

    def __len__(self) -> int:
        return self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM features").fetchone()[0])

    def clear(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("DELETE FROM features")

        self._run(op)

    def close(self) -> None:
        self._db.close()


def remove_orphan_temp_files(cache_root: Path, min_age_s: float = ORPHAN_TMP_AGE_S) -> list[Path]:
    """Delete ``*.tmp`` files older than ``min_age_s`` under ``cache_root/weights`` and
    ``cache_root/hashes`` (what a killed conversion or hash leaves); returns what was removed."""
    removed = []
    now = time.time()
    for sub in ("weights", "hashes"):
        d = cache_root / sub
        if not d.is_dir():
            continue
        for p in d.glob("*.tmp"):
            try:
                if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime > min_age_s:
                    p.unlink()
                    removed.append(p)
            except OSError:
                continue  # removed by another process meanwhile, or not ours to remove
    return removed
