"""FeatureStore: a content-addressed cache of extracted features in one SQLite file.

Why SQLite: one file, atomic transactions (a crash mid-write rolls back, never leaving a half
entry), safe concurrent use by several processes (file locks + WAL, writers wait on a busy
timeout), and fast keyed look-ups for thousands of small arrays, with no extra dependency.
Each entry is one image's array for one (backbone weights, preprocessing, layer, kind), stored
as raw bytes with dtype, shape and a blake2b checksum; an entry that fails its checksum or shape
is treated as corrupt, deleted and recomputed by the caller.

A cache file that SQLite cannot use at all (damaged header or first pages, truncated, replaced by
garbage) is found when the store is opened (header check plus ``PRAGMA quick_check``), moved aside
next to itself as ``features.sqlite.corrupt-<time>`` with a :class:`CacheRecoveredWarning` naming
that file, and a fresh cache is started; nothing else in the cache folder is touched. Temporary
files older than :data:`ORPHAN_TMP_AGE_S` under the cache folder's ``weights/`` and ``hashes/``
(left by a conversion or hash that was killed) are removed at the same time.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import sqlite3
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


SQLITE_MAGIC = b"SQLite format 3\x00"
ORPHAN_TMP_AGE_S = 300.0  # a temp file is written and renamed within seconds; older ones are orphans


class CacheRecoveredWarning(UserWarning):
    """A cache file was unusable, moved aside and replaced by a fresh one."""


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FeatureStore:
    """Keyed numpy arrays on disk. Thread-safe within a process, safe across processes."""

    def __init__(self, path: str | Path | None = None):
        """Open (or create) the cache at ``path`` (default ``cache_dir() / "features.sqlite"``).

        Raises:
            NotADirectoryError: the cache folder is a file.
        """
        self.path = Path(path) if path else cache_dir() / "features.sqlite"
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise NotADirectoryError(f"the cache folder {self.path.parent} is a file: pass a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.corrupt_dropped = 0  # entries found corrupt and deleted (for diagnostics)
        self.moved_aside: Path | None = None  # where an unusable cache file went, if one was found
        self.orphans_removed: list[Path] = remove_orphan_temp_files(self.path.parent)
        with _file_lock(self.path.with_name(self.path.name + ".lock")):
            problem = _health_problem(self.path)
            if problem:
                self.moved_aside = _move_aside(self.path)
                warnings.warn(f"the feature cache {self.path} was unusable ({problem}); moved it to "
                              f"{self.moved_aside} and started a new one", CacheRecoveredWarning, stacklevel=2)
            c = self._conn()
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
        out: np.ndarray | None = None
        missing: list[int] = []
        bad: list[str] = []
        odd: list[tuple[int, str, tuple[int, ...]]] = []  # (position, key, shape) of other-shaped entries
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
                return self.read_rows(keys, dtype, shape=top)
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


def _health_problem(path: Path) -> str | None:
    """Why the SQLite file at ``path`` cannot be used, or None (also None when it does not exist)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None  # a brand-new file that SQLite has not written yet
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if not head.startswith(SQLITE_MAGIC):
        return "not an SQLite database: its header is damaged or the file was replaced"
    if len(head) < 100:
        return "truncated inside its header"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    n_pages = int.from_bytes(head[28:32], "big")
    if page < 512 or page & (page - 1):
        return f"damaged header (page size {page})"
    wal = path.with_name(path.name + "-wal")
    if n_pages and size < n_pages * page and not wal.exists():
        return f"truncated: {size:,} bytes where its header says {n_pages * page:,}"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60.0)
        try:
            conn.execute("PRAGMA busy_timeout=60000")
            row = conn.execute("PRAGMA quick_check(1)").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            return None  # another process is writing: it is in use, not corrupt
        return f"SQLite cannot open it: {e}"
    except sqlite3.DatabaseError as e:
        return f"SQLite: {e}"
    if not row or row[0] != "ok":
        return f"SQLite integrity check: {row[0] if row else 'no answer'}"
    return None


def _move_aside(path: Path) -> Path:
    """Rename ``path`` (and its -wal / -shm files) to ``<name>.corrupt-<time>``; returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, dest)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, dest.with_name(dest.name + suffix))
    return dest


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


class _file_lock:
    """An exclusive advisory lock on ``path`` (created if missing) for the duration of a block, so
    that two processes opening a damaged cache at once move it aside only once."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock
            return
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # a read-only cache folder: nothing can be moved aside there anyway
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


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
