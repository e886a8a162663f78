"""The cache's SQLite files (``features.sqlite``, ``files.sqlite``): checked when opened, healed, or
named in one line. One mechanism for both (:mod:`core.io.heal` has the policy).

On open, :func:`heal`:

1. the folder must be writable (else :class:`~core.errors.CacheError`: read-only, what to do);
2. a ``-wal`` / ``-shm`` / ``-journal`` beside the file that is not a regular file (a folder) is moved
   aside on its own (SQLite would refuse to open the database);
3. under an exclusive lock on ``<name>.lock`` (two processes opening a damaged file move it aside
   once), :func:`problem` looks for a folder where the file belongs, a header that is not SQLite's, a
   file shorter than its header says, a failed ``PRAGMA quick_check``, or tables of another schema
   (an older or foreign file); any of these moves the file and its ``-wal`` / ``-shm`` aside as
   ``<name>.corrupt-<time>`` with a warning naming it, and a fresh file is started.

SQLite itself copes with a truncated or garbage WAL (frames whose checksums fail are ignored: those
transactions are lost and recomputed), a truncated or garbage rollback journal (not hot, so ignored)
and a garbage ``-shm`` (rebuilt from the WAL); the tests check each.

While open, :class:`errors` turns SQLite's and the OS's errors into one line: a full disk (SQLITE_FULL,
or an I/O error at a full file system or file-size limit) is :class:`~core.errors.DiskFullError`, a
lock held past :data:`BUSY_TIMEOUT_S` and a read-only folder are :class:`~core.errors.CacheError`.
Damage found while in use (SQLITE_CORRUPT / NOTADB) is left as ``sqlite3.DatabaseError`` for the
owner, which calls :func:`heal` with ``damaged=`` and retries (:func:`is_damage`).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from core.errors import CacheError
from core.io import heal as _heal
from core.io.heal import check_writable, move_aside

BUSY_TIMEOUT_S = 60.0  # how long a write waits for another process's lock before giving up
SQLITE_MAGIC = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")
Tables = Mapping[str, Sequence[str]]  # table name -> its column names, in order
T = TypeVar("T")


class Database:
    """One SQLite file of the cache, healed when opened; a connection per thread (WAL, busy timeout).

    :meth:`run` is how every statement runs: errors leave as one line (:class:`errors`), and damage
    found while in use moves the file aside (once, whichever thread sees it first), starts a fresh
    one and runs the operation again once.

    Args:
        path: the file.
        what: how messages name it ("feature cache", "file index").
        tables: the tables it must have (names and columns), see :func:`problem`.
        create_sql: ``CREATE TABLE IF NOT EXISTS ...`` for them, run on every new connection.

    Raises:
        CacheError: the folder is read-only, the file cannot be moved aside, or another process holds
            it locked past :data:`BUSY_TIMEOUT_S`.
    """

    def __init__(self, path: Path, what: str, tables: Tables, create_sql: str):
        self.path, self.what, self.tables, self.create_sql = Path(path), what, tables, create_sql
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[sqlite3.Connection] = []
        self._generation = 0  # bumped when the file is replaced while open: threads then reconnect
        self.moved_aside: Path | None = heal(self.path, what, tables)  # where an unusable file went
        self.conn()

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (made on first use, and again after the file was replaced)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self._generation:
            self._forget(conn)
            conn = None
        if conn is None:
            # under the lock that healing holds: never opened halfway through moving the file and its
            # -wal / -shm aside; the inode is the file opened, so damage found through this connection
            # moves that file aside, never a fresh one
            with self._lock:
                self._local.inode = _inode(self.path)
                conn = connect(self.path, self.what, self.create_sql)
                self._open.append(conn)
                self._local.conn, self._local.generation = conn, self._generation
        return conn

    def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op(connection)``, healing and retrying once if the file turns out damaged."""
        with errors(self.path, self.what):
            try:
                return op(self.conn())
            except sqlite3.DatabaseError as e:
                if not is_damage(e):
                    raise
                with self._lock:
                    moved = heal(self.path, self.what, self.tables, damaged=str(e), inode=self._local.inode)
                    if moved is not None:
                        self.moved_aside = moved
                    self._generation += 1
                return op(self.conn())

    def _forget(self, conn: sqlite3.Connection) -> None:
        conn.close()
        with self._lock:
            if conn in self._open:
                self._open.remove(conn)
        self._local.conn = None

    def close(self) -> None:
        """Close every connection made (any thread's)."""
        with self._lock:
            conns, self._open = self._open, []
        for c in conns:
            c.close()
        self._local.conn = None


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None  # moved aside just now: SQLite starts a fresh file


def problem(path: Path, tables: Tables) -> str | None:
    """Why the SQLite file at ``path`` cannot be used as a database of ``tables``, or None (also None
    when it does not exist, is empty, or is busy in another process: in use is not damaged)."""
    if path.is_dir():
        return "a folder where the database file belongs"
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
    if n_pages and size < n_pages * page and not path.with_name(path.name + "-wal").exists():
        return f"truncated: {size:,} bytes where its header says {n_pages * page:,}"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            row = conn.execute("PRAGMA quick_check(1)").fetchone()
            found = _schema(conn) if row and row[0] == "ok" else {}
        finally:
            conn.close()
    except sqlite3.OperationalError as e:
        if _name(e) in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(e):
            return None  # another process holds it: in use, not corrupt
        return f"SQLite cannot open it: {e}"
    except sqlite3.DatabaseError as e:
        return f"SQLite: {e}"
    if not row or row[0] != "ok":
        return f"SQLite integrity check: {row[0] if row else 'no answer'}"
    foreign = sorted(set(found) - set(tables))
    if foreign:
        return f"another program's database (tables {', '.join(foreign[:5])})"
    for name, cols in found.items():
        if tuple(cols) != tuple(tables[name]):
            return f"an older or foreign schema (table {name} has columns {', '.join(cols)})"
    return None


def _schema(conn: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    quoted = {t: '"' + t.replace('"', '""') + '"' for t in names}  # a foreign file's names are not ours to trust
    return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({quoted[t]})")] for t in names}


def heal(path: Path, what: str, tables: Tables, *, damaged: str | None = None, inode: int | None = None) -> Path | None:
    """Make ``path`` usable as a database of ``tables``: see the module docstring. Returns where an
    unusable file went (None: it was fine, or missing).

    Args:
        what: how messages name the file ("feature cache", "file index").
        damaged: a reason found while using the file (e.g. "database disk image is malformed"): move it
            aside without checking, but only if it is still the file of inode ``inode`` (so that
            threads that saw the same damage move it once, not the fresh file after it).

    Raises:
        CacheError: the folder is read-only, or the file cannot be moved aside.
    """
    folder = path.parent
    check_writable(folder)
    for suffix in SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if (side.exists() or side.is_symlink()) and not side.is_file():
            move_aside(side, f"{what}'s {suffix[1:]} file", "not a regular file")
    with _file_lock(path.with_name(path.name + ".lock")):
        if damaged is not None:
            try:
                same = os.stat(path).st_ino == inode
            except FileNotFoundError:
                same = False
            why = damaged if same else None
        else:
            why = problem(path, tables)
        if not why:
            return None
        dest = move_aside(path, what, why)
        for suffix in SIDE_FILES:
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, dest.with_name(dest.name + suffix))
        return dest


def connect(path: Path, what: str, create_sql: str) -> sqlite3.Connection:
    """A connection in autocommit mode with WAL, the busy timeout, and ``create_sql`` run (``CREATE
    TABLE IF NOT EXISTS``); errors as one line (:class:`errors`)."""
    with errors(path, what):
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(create_sql)
        except BaseException:
            conn.close()
            raise
    return conn


def is_damage(e: BaseException) -> bool:
    """Whether ``e`` says the database file itself is damaged (heal and retry)."""
    return isinstance(e, sqlite3.DatabaseError) and (
        _name(e) in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(e) or "not a database" in str(e))


def _name(e: sqlite3.Error) -> str:
    return getattr(e, "sqlite_errorname", None) or ""  # e.g. "SQLITE_IOERR_WRITE" (Python 3.11+)


def translate(e: BaseException, path: Path, what: str) -> CacheError | None:
    """``e`` (raised while using the database at ``path``) as a one-line cache error, or None."""
    if isinstance(e, OSError):
        return _heal.os_error(e, path)
    if not isinstance(e, sqlite3.Error) or is_damage(e):
        return None
    name = _name(e)
    folder = path.parent
    if name.startswith("SQLITE_FULL") or "database or disk is full" in str(e):
        return _heal.disk_full(folder)
    if name.startswith("SQLITE_IOERR"):
        if _heal.low_on_space(folder) or _heal.near_size_limit(path, path.with_name(path.name + "-wal")):
            return _heal.disk_full(folder)
        return CacheError(f"the {what} {path} cannot be written ({e}): check the disk, or point --cache elsewhere")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(e):
        return _heal.locked(what, path, BUSY_TIMEOUT_S)
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        try:
            check_writable(folder)
        except CacheError as ro:
            return ro
        if name.startswith("SQLITE_READONLY"):
            return CacheError(f"the {what} {path} is read-only: make it writable (chmod u+w), or point --cache elsewhere")
        return CacheError(f"cannot open the {what} {path} ({e}): check its permissions, or point --cache elsewhere")
    return None


class errors:
    """``with errors(path, what): ...``: SQLite's and the OS's errors leave as one-line cache errors
    (:func:`translate`); damage and anything else leave unchanged."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            err = translate(exc, self.path, self.what)
            if err is not None:
                raise err from exc


class transaction:
    """``BEGIN IMMEDIATE ... COMMIT`` on an autocommit connection, rolled back on any error. SQLite
    has already rolled back after some errors (a full disk): then there is nothing to roll back, and
    the original error is the one raised."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class _file_lock:
    """An exclusive advisory lock on ``path`` (created if missing) for the duration of a block, so
    that two processes opening a damaged file move it aside only once."""

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
            return  # e.g. the lock file's name is taken by a folder: heal without the lock
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
