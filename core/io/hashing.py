"""sha256 of files and bytes: a sidecar cache so large weight files are hashed once, and a
:class:`FileIndex` so an unchanged image folder is not re-read."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from core.errors import CacheError
from core.io import sqlite_heal
from core.io.heal import ensure_dir, move_aside

_CHUNK = 1 << 20


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (image records and uploads are keyed by it)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike, sidecar_dir: Path | None = None) -> str:
    """Hex sha256 of a file. With ``sidecar_dir``, the digest is remembered there keyed by
    (absolute path, size, mtime) and reused while the file is unchanged.

    A memo that is not one (garbage, truncated, another JSON value, a folder in its place) is
    rewritten, and a file in the place of ``sidecar_dir`` is moved aside: the memo only saves
    hashing the file again. Where the memo cannot be written (a read-only or full disk) the file is
    simply hashed again next time.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo = None
    if sidecar_dir is not None:
        memo = sidecar_dir / f"sha256-{hashlib.sha1(str(path).encode()).hexdigest()[:16]}.json"
        known = _read_memo(memo, key)
        if known is not None:
            return known
    digest = _hash_file(path)
    if memo is not None:
        _write_memo(memo, {"key": key, "sha256": digest})
    return digest


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _read_memo(memo: Path, key: str) -> str | None:
    """The digest remembered in ``memo`` for ``key``, or None (no memo, a stale or unusable one)."""
    if memo.is_dir():
        with contextlib.suppress(CacheError):  # a read-only cache: it stays, the file is hashed each time
            move_aside(memo, "hash memo", "a folder where the memo file belongs")
        return None
    try:
        rec = json.loads(memo.read_text())
    except (OSError, ValueError):
        return None  # no memo, or not JSON (truncated, garbage): hashed again and rewritten
    if isinstance(rec, dict) and rec.get("key") == key and isinstance(rec.get("sha256"), str) and _HEX64.match(rec["sha256"]):
        return rec["sha256"]
    return None


def _write_memo(memo: Path, rec: dict) -> None:
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    try:
        ensure_dir(memo.parent, "hashes folder")
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, memo)
    except (OSError, CacheError):  # a read-only or full cache only costs hashing the file again
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a partly written memo (full disk)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class FileIndex:
    """What is known about image files, keyed by (absolute path, size, mtime): their sha256 and
    whether they decoded, so an unchanged folder is listed and stat'ed but never re-read.

    One SQLite table beside the feature cache (``<cache>/files.sqlite``). A file whose size or
    mtime changed is a miss and is read again; the entry is then replaced. Safe across processes
    (WAL, busy timeout); each ``put_many`` is one transaction. Healed like the feature cache
    (:mod:`core.io.sqlite_heal`): an unusable file is moved aside and rebuilt (it only remembers
    what re-reading the images recomputes).

    Raises:
        CacheError: the folder is read-only, or the file is locked by another process past the timeout.
    """

    COLUMNS = ("path", "size", "mtime_ns", "sha256", "max_pixels", "failure")
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS files (
        path       TEXT PRIMARY KEY,
        size       INTEGER NOT NULL,
        mtime_ns   INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        max_pixels INTEGER NOT NULL,
        failure    TEXT
    )
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite_heal.Database(self.path, "file index", {"files": self.COLUMNS}, self._SCHEMA)

    def under(self, root: str | os.PathLike) -> dict[str, FileFacts]:
        """Every entry whose absolute path lies under the folder ``root`` (one range scan)."""
        prefix = str(Path(root).resolve()).rstrip(os.sep) + os.sep
        hi = prefix[:-1] + chr(ord(os.sep) + 1)  # the first string after every "<prefix>..."

        def op(conn: sqlite3.Connection) -> dict[str, FileFacts]:
            rows = conn.execute(
                "SELECT path, size, mtime_ns, sha256, max_pixels, failure FROM files WHERE path >= ? AND path < ?",
                (prefix, hi))
            return {r[0]: FileFacts(*r[1:]) for r in rows}

        return self._db.run(op)

    def put_many(self, items: dict[str, FileFacts]) -> None:
        if not items:
            return
        rows = [(p, f.size, f.mtime_ns, f.sha256, f.max_pixels, f.failure) for p, f in items.items()]

        def op(conn: sqlite3.Connection) -> None:
            with sqlite_heal.transaction(conn):
                conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)

        self._db.run(op)

    @property
    def moved_aside(self) -> Path | None:
        """Where an unusable index file went, if one was found."""
        return self._db.moved_aside

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class FileFacts:
    """One file as last read: its stat identity, sha256, and the decode outcome under ``max_pixels``
    (``failure`` None: it decoded; else the reason it did not)."""

    size: int
    mtime_ns: int
    sha256: str
    max_pixels: int
    failure: str | None

    def matches(self, st: os.stat_result, max_pixels: int) -> bool:
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns and self.max_pixels == max_pixels
