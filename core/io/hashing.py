"""sha256 of files and bytes: a sidecar cache so large weight files are hashed once, and a
:class:`FileIndex` so an unchanged image folder is not re-read."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (image records and uploads are keyed by it)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike, sidecar_dir: Path | None = None) -> str:
    """Hex sha256 of a file. With ``sidecar_dir``, the digest is remembered there keyed by
    (absolute path, size, mtime) and reused while the file is unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo = None
    if sidecar_dir is not None:
        memo = sidecar_dir / f"sha256-{hashlib.sha1(str(path).encode()).hexdigest()[:16]}.json"
        try:
            rec = json.loads(memo.read_text())
            if rec.get("key") == key:
                return rec["sha256"]
        except (OSError, ValueError, KeyError):
            pass  # no or stale memo: hash below
    digest = _hash_file(path)
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "sha256": digest}))
            os.replace(tmp, memo)
        except OSError:
            pass  # a read-only cache only costs hashing the file again next time
    return digest


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
    (WAL, busy timeout); each ``put_many`` is one transaction.
    """

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
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(self._SCHEMA)

    def under(self, root: str | os.PathLike) -> dict[str, FileFacts]:
        """Every entry whose absolute path lies under the folder ``root`` (one range scan)."""
        prefix = str(Path(root).resolve()).rstrip(os.sep) + os.sep
        hi = prefix[:-1] + chr(ord(os.sep) + 1)  # the first string after every "<prefix>..."
        rows = self._conn.execute(
            "SELECT path, size, mtime_ns, sha256, max_pixels, failure FROM files WHERE path >= ? AND path < ?",
            (prefix, hi))
        return {r[0]: FileFacts(*r[1:]) for r in rows}

    def put_many(self, items: dict[str, FileFacts]) -> None:
        if not items:
            return
        rows = [(p, f.size, f.mtime_ns, f.sha256, f.max_pixels, f.failure) for p, f in items.items()]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


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
