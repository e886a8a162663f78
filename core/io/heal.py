"""Healing the cache folder: one policy for every file in it.

* **Damaged, and what it held can be recomputed** (a database SQLite cannot use or of another schema,
  a converted-weights file that fails its check, a hash memo or a cached projection that is not one):
  moved aside next to itself as ``<name>.corrupt-<time>`` (kept byte for byte, for inspection), with a
  :class:`CacheRecoveredWarning` naming both paths, and rebuilt.
* **A folder of the cache that is a file** (``weights``, ``hashes``, ``imported``): moved aside the
  same way and the folder made.
* **What cannot be healed from here** (a read-only folder, a database locked by another process past
  the timeout, a full disk): a :class:`~core.errors.CacheError` / :class:`~core.errors.DiskFullError`
  whose one-line message says what to do; a write that failed is rolled back or removed, so the cache
  is left as it was.

:mod:`core.io.sqlite_heal` applies this to the two SQLite files (``features.sqlite``, ``files.sqlite``).
"""
from __future__ import annotations

import errno
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from core.errors import CacheError, DiskFullError
from core.io.paths import ENV_VAR

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_ELSEWHERE = f"point --cache / {ENV_VAR} elsewhere"


class CacheRecoveredWarning(UserWarning):
    """A cache file was unusable, moved aside and replaced by a fresh one."""


def disk_full(path: str | os.PathLike, *, cache: bool = True) -> DiskFullError:
    """The one-line error for a full disk (or file-size limit) while writing ``path``."""
    if cache:
        return DiskFullError(f"the disk holding the cache ({path}) is full: free space or {_ELSEWHERE}")
    return DiskFullError(f"the disk holding {path} is full: free space or write the file elsewhere")


def read_only(folder: str | os.PathLike) -> CacheError:
    """The one-line error for a cache folder this process cannot write."""
    return CacheError(f"the cache folder {folder} is read-only: make it writable (chmod u+w) or {_ELSEWHERE}")


def locked(what: str, path: str | os.PathLike, waited_s: float) -> CacheError:
    """The one-line error for a database another process kept locked past the timeout."""
    return CacheError(f"the {what} {path} is locked by another process (waited {waited_s:.0f} s): let that program "
                      f"(another app server or backbone-lens command) finish or stop it, or {_ELSEWHERE}")


def os_error(e: OSError, path: str | os.PathLike, *, cache: bool = True) -> CacheError | None:
    """``e`` as a one-line cache error (full disk, read-only folder), or None when it is neither."""
    if e.errno in DISK_FULL_ERRNOS:
        return disk_full(path, cache=cache)
    if e.errno in READ_ONLY_ERRNOS and cache:
        return read_only(Path(path) if Path(path).is_dir() else Path(path).parent)
    return None


def near_size_limit(*files: str | os.PathLike, margin: int = 1 << 16) -> bool:
    """Whether one of ``files`` is within ``margin`` bytes of this process's file-size limit
    (``ulimit -f``): SQLite reports a write refused by that limit as a plain I/O error."""
    try:
        import resource
    except ImportError:  # not POSIX: no such limit
        return False
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY:
        return False
    for f in files:
        try:
            if os.stat(f).st_size + margin >= soft:
                return True
        except OSError:
            continue
    return False


def low_on_space(folder: str | os.PathLike, below: int = 1 << 20) -> bool:
    """Whether the file system holding ``folder`` has less than ``below`` bytes left."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < below


def check_writable(folder: Path) -> None:
    """Raise the read-only :class:`CacheError` unless a file can be created in ``folder`` (a probe,
    so it also sees a read-only mount, which ``os.access`` misses for root)."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            return  # writable, just full: the write that needs space says so
        if e.errno in READ_ONLY_ERRNOS:
            raise read_only(folder) from e
        raise


def aside_name(path: Path) -> Path:
    """A free ``<name>.corrupt-<time>[-k]`` beside ``path``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while dest.exists() or dest.is_symlink():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return dest


def move_aside(path: Path, what: str, why: str, *, warn: bool = True) -> Path:
    """Rename ``path`` (a file or a folder) to ``<name>.corrupt-<time>`` beside it and warn once,
    naming both; returns the new path.

    Raises:
        CacheError: it cannot be renamed (a read-only folder): the message names the damage and the fix.
    """
    dest = aside_name(path)
    try:
        os.replace(path, dest)
    except OSError as e:
        raise CacheError(f"the {what} {path} is unusable ({why}) and cannot be moved aside "
                         f"({e.strerror or e}): delete it, or {_ELSEWHERE}") from e
    if warn:
        warnings.warn(f"the {what} {path} was unusable ({why}); moved it to {dest} and started a new one",
                      CacheRecoveredWarning, stacklevel=3)
    return dest


def ensure_dir(path: Path, what: str) -> Path:
    """``path`` as a folder: made if missing; a file (or a link to one) in its place is moved aside."""
    if path.exists() and not path.is_dir() or path.is_symlink() and not path.exists():
        move_aside(path, what, "a file where a folder belongs" if path.exists() else "a broken link")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err = os_error(e, path.parent)
        if err is not None:
            raise err from e
        raise
    return path


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` file at ``path``, from its header (no data read).

    Raises:
        ValueError: not an ``.npy`` file, or it holds fewer or more bytes than its header says (truncated).
        OSError: it cannot be read.
    """
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(f)
        start = f.tell()
    dtype = np.dtype(dtype)
    want = start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != want:
        raise ValueError(f"{path.name} holds {size:,} bytes where its header says {want:,}")
    return tuple(shape), dtype
