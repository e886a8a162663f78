"""The server's upload store: a browser session's photos, kept on disk across pages, reruns and reloads.

A session is named by a **token** that lives in the page's link (``?s=<token>``): 22 URL-safe characters
from :func:`secrets.token_urlsafe` (128 random bits). The token is a capability: whoever holds the link
holds the uploads, and nothing else leads to them (no listing, no look-up by content hash). A reload
keeps the token and so the uploads; a link shared without ``s=`` shows none of them. Every browser user
is treated as a stranger: a token that is too short to be unguessable is refused, the session's folder
is named by the sha256 of the token (a listing of the cache shows no token), and opening a token that
has no uploads writes nothing (a crawler cannot fill the disk with empty sessions).

Layout under ``<cache>/uploads/`` (:func:`core.io.paths.cache_dir`)::

    .lock                          one lock (fcntl.flock) for every change, in any process
    .swept                         its mtime: the last sweep of expired sessions
    sessions/<sha256(token)[:32]>/
        manifest.json              {"version": 1, "batches": {label: {"created": t, "files": [...]}}}
        touched                    its mtime: the session's last use
        blobs/<sha256>             each upload's bytes, content-addressed

Rules:

* **Validated once**: :meth:`UploadStore.add` decodes every file with the server's pixel and byte
  limits (:func:`core.io.images.load_uploads`); a bad file comes back as a :class:`~core.io.images.Failure`
  with its name and reason and is not stored. Later reads check only that the stored bytes still hash
  to their name; a damaged or missing copy is dropped from the session with a warning
  (:class:`UploadStoreWarning`) and reported as a failure once.
* **Batches**: one per label. ``label=""`` is the unlabelled batch; any other label is a new class
  ``NAME`` (a label equal to a class of the dataset adds to that class). A photo is one object of the
  session: the same content uploaded again (in any batch) is reported as a duplicate, not stored twice.
* **Bounded** (:class:`UploadLimits`, from :class:`core.io.policy.Limits`): files and bytes per session,
  bytes over all sessions, bytes and pixels per file. A batch that would pass a bound is refused whole
  (:class:`UploadLimitError`, one line naming the setting) and nothing is written.
* **Expired**: a session unused for ``ttl_s`` (24 h by default) is deleted by the next open of any
  session (sweeps at most once a minute; the session being opened is always checked).
* **Atomic**: every file is written to a temporary name and renamed into place; the manifest is read
  and rewritten under the lock, so concurrent writers (two tabs, two server processes) lose nothing.

POSIX only (``fcntl``), like the rest of the server. Nothing here imports Streamlit.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BackboneLensError
from core.io.images import Dataset, Failure, ImageRecord, load_uploads
from core.io.paths import cache_dir
from core.io.policy import (
    ENV_MAX_FILES,
    ENV_UPLOAD_SESSION_MB,
    ENV_UPLOAD_TOTAL_MB,
    Limits,
    PolicyError,
)

__all__ = [
    "TOKEN_PARAM", "new_token", "check_token", "clean_label", "UploadTokenError", "UploadLimitError",
    "UploadStoreWarning", "UploadLimits", "StoredFile", "UploadBatch", "AddResult", "UploadStore", "with_uploads",
]

TOKEN_PARAM = "s"  # the link parameter that carries the token
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22,128}")  # token_urlsafe(16) is 22 characters: >= 128 bits
_MANIFEST_VERSION = 1
_TOUCH_EVERY_S = 60.0  # the last-use time is written at most this often
_SWEEP_EVERY_S = 60.0
_MAX_LABEL = 64
_CHUNK = 1 << 20
# stored copies that hashed right in this process: path -> (size, mtime_ns, inode); a page may open a new
# store object on every rerun without hashing every upload again
_VERIFIED: dict[str, tuple[int, int, int]] = {}
_MAX_VERIFIED = 100_000


class UploadTokenError(BackboneLensError):
    """A session token that is malformed or too short to be unguessable."""


class UploadLimitError(PolicyError):
    """A batch of uploads that would pass one of the store's bounds; nothing was stored."""


class UploadStoreWarning(UserWarning):
    """A stored upload (or a session's manifest) was found damaged and dropped."""


def new_token() -> str:
    """A fresh session token: 128 random bits, URL-safe (put it in the link as ``?s=<token>``)."""
    return secrets.token_urlsafe(16)


def check_token(token: str) -> str:
    """``token`` itself if it can name a session (22 to 128 URL-safe characters).

    Raises:
        UploadTokenError: malformed or too short (a short token could be guessed).
    """
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise UploadTokenError("the link's upload session (s=...) is not a valid token; a new session was started.")
    return token


def clean_label(label: str) -> str:
    """A batch label with its whitespace collapsed (``""``: unlabelled).

    Raises:
        ValueError: longer than 64 characters, or holding a slash or a control character.
    """
    text = " ".join(str(label).split())
    if len(text) > _MAX_LABEL:
        raise ValueError(f"class name {text[:20]!r}… is {len(text)} characters long; the limit is {_MAX_LABEL}.")
    if any(c in "/\\" or not c.isprintable() for c in text):
        raise ValueError(f"class name {text!r} holds a slash or a control character: use letters, digits and spaces.")
    return text


def _clean_name(name: str) -> str:
    """A browser's file name as shown: its last path component, printable, at most 200 characters."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip()
    return base[:200] or "upload"


@dataclass(frozen=True)
class UploadLimits:
    """The store's bounds.

    Attributes:
        max_files: files kept per session.
        session_bytes: bytes kept per session (each content counted once).
        total_bytes: bytes kept over all sessions.
        file_bytes: bytes of one file.
        max_pixels: pixels of one image (checked from its header, before decoding).
        ttl_s: a session unused this many seconds is deleted.
    """

    max_files: int = Limits.max_files
    session_bytes: int = Limits.upload_session_bytes
    total_bytes: int = Limits.upload_total_bytes
    file_bytes: int = Limits.max_file_bytes
    max_pixels: int = Limits.max_pixels
    ttl_s: float = Limits.upload_ttl_hours * 3600.0

    @classmethod
    def from_limits(cls, limits: Limits) -> UploadLimits:
        """The upload bounds of a server's :class:`~core.io.policy.Limits`."""
        return cls(limits.max_files, limits.upload_session_bytes, limits.upload_total_bytes, limits.max_file_bytes,
                   limits.max_pixels, limits.upload_ttl_hours * 3600.0)


@dataclass(frozen=True)
class StoredFile:
    """One upload: the name it was uploaded under, its content hash and size in bytes."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class UploadBatch:
    """The uploads of one label (``""``: unlabelled), in the order they were added."""

    label: str
    files: tuple[StoredFile, ...]
    created: float

    @property
    def title(self) -> str:
        """What the sidebar calls it: ``"new class NAME"`` or ``"unlabelled"``."""
        return f"new class {self.label}" if self.label else "unlabelled"

    @property
    def n_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class AddResult:
    """What :meth:`UploadStore.add` did.

    Attributes:
        added: files stored, in input order.
        duplicates: names of files whose content the session already holds (not stored again).
        failures: files refused (not an image, too large, ...), with their reasons.
    """

    added: list[StoredFile] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


class UploadStore:
    """One session's uploads (see the module docstring for the rules).

    Args:
        token: the session token (:func:`new_token`; from the link's ``s=``).
        root: the store's folder (default ``<cache>/uploads``).
        limits: the bounds (default :class:`UploadLimits`; a page passes
            ``UploadLimits.from_limits(policy.limits)``).
        clock: seconds since the epoch (injectable for tests of expiry).

    Raises:
        UploadTokenError: a malformed token.
    """

    def __init__(self, token: str, *, root: str | os.PathLike | None = None, limits: UploadLimits | None = None,
                 clock: Callable[[], float] = time.time):
        self.token = check_token(token)
        self.root = Path(root) if root is not None else cache_dir(create=False) / "uploads"
        self.limits = limits or UploadLimits()
        self.clock = clock
        self.dir = self.root / "sessions" / hashlib.sha256(token.encode()).hexdigest()[:32]
        self.dropped: list[Failure] = []  # damaged copies found since this object was made
        self._warned_manifest = False
        if self.root.is_dir():  # nothing is created for a session that never uploads
            with self._lock():
                self._sweep()
                self._touch()

    # ---- reading -----------------------------------------------------------------------------------
    def batches(self) -> list[UploadBatch]:
        """The session's batches, oldest first (no file is read)."""
        return [UploadBatch(label, tuple(StoredFile(**f) for f in b["files"]), float(b["created"]))
                for label, b in self._read()["batches"].items() if b["files"]]

    def usage(self) -> tuple[int, int]:
        """``(files, bytes)`` the session holds."""
        files = [f for b in self.batches() for f in b.files]
        return len(files), sum(f.size for f in files)

    def dataset(self) -> Dataset:
        """The uploads as a :class:`~core.io.images.Dataset`: one :class:`~core.io.images.ImageRecord` per
        file (``label`` = its batch's label, ``""`` when unlabelled; ``path`` = the stored copy), batches
        oldest first. A stored copy that is missing or no longer hashes to its name is dropped from the
        session with an :class:`UploadStoreWarning` and listed in ``failures`` (and in ``self.dropped``).
        """
        records: list[ImageRecord] = []
        damaged: set[str] = set()
        for b in self.batches():
            for f in b.files:
                if self._check_blob(f) is None:
                    records.append(ImageRecord(sha256=f.sha256, name=f.name, label=b.label, path=self._blob(f.sha256)))
                else:
                    damaged.add(f.sha256)
        failures = []
        if damaged:  # looked at again under the lock: a file removed meanwhile is no failure
            with self._lock():
                m = self._read()
                for b in m["batches"].values():
                    keep = []
                    for f in b["files"]:
                        why = self._check_blob(StoredFile(**f)) if f["sha256"] in damaged else None
                        if why is None:
                            keep.append(f)
                        else:
                            failures.append(Failure(f["name"], f"its stored copy was {why}: removed from your "
                                                    "uploads, upload it again"))
                            self._blob(f["sha256"]).unlink(missing_ok=True)
                    b["files"] = keep
                m["batches"] = {k: b for k, b in m["batches"].items() if b["files"]}
                self._write(m)
            for fail in failures:
                warnings.warn(f"upload {fail.name}: {fail.reason}", UploadStoreWarning, stacklevel=2)
            self.dropped.extend(failures)
            records = [r for r in records if r.sha256 not in damaged]
        return Dataset(records=records, failures=failures, root=None)

    # ---- writing -----------------------------------------------------------------------------------
    def add(self, files: Iterable[tuple[str, bytes]], label: str = "") -> AddResult:
        """Validate ``files`` (``(file name, bytes)``) and keep the good ones in the batch ``label``.

        Args:
            files: the browser's files.
            label: ``""`` for unlabelled images, else the name of a new class (:func:`clean_label`).

        Returns:
            an :class:`AddResult`.

        Raises:
            UploadLimitError: the batch would pass a bound (files or bytes per session, bytes in all);
                nothing is stored.
            ValueError: a bad label.
        """
        label = clean_label(label)
        items = [(_clean_name(n), bytes(d)) for n, d in files]
        lim = self.limits
        n_have, _ = self.usage()
        if n_have + len(items) > lim.max_files:  # before any decode: a huge batch costs nothing
            raise UploadLimitError(f"{n_have + len(items):,} uploads would pass this server's limit of {lim.max_files:,} "
                                   f"per session ({ENV_MAX_FILES}); remove some first.")
        ds = load_uploads(items, label, max_pixels=lim.max_pixels, max_file_bytes=lim.file_bytes)
        out = AddResult(failures=list(ds.failures))
        fresh: dict[str, ImageRecord] = {}
        for r in ds.records:
            if r.sha256 in fresh:
                out.duplicates.append(r.name)
            else:
                fresh[r.sha256] = r
        if not fresh:
            return out
        if self.dir.is_dir():  # used now: no sweep may take the folder while the files are staged
            with self._lock():
                self._touch(force=True)
        staged = self._stage(fresh.values())  # written outside the lock, renamed into place under it
        try:
            with self._lock():
                m = self._read()
                held = {f["sha256"] for b in m["batches"].values() for f in b["files"]}
                new = [r for sha, r in fresh.items() if sha not in held]
                out.duplicates += [r.name for sha, r in fresh.items() if sha in held]
                self._check_bounds(m, new)
                batch = m["batches"].setdefault(label, {"created": self.clock(), "files": []})
                for r in new:
                    os.replace(staged.pop(r.sha256), self._blob(r.sha256))
                    f = StoredFile(r.name, r.sha256, len(r.data or b""))
                    batch["files"].append(f.__dict__)
                    out.added.append(f)
                self._write(m)
                self._touch(force=True)
        finally:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
        return out

    def remove_file(self, sha256: str) -> None:
        """Remove one upload (by its content hash, as listed in :meth:`batches`); unknown: nothing happens."""
        self._remove(lambda label, f: f["sha256"] == sha256)

    def remove_batch(self, label: str) -> None:
        """Remove every upload of the batch ``label`` (``""``: the unlabelled one)."""
        self._remove(lambda lab, f: lab == label)

    def clear(self) -> None:
        """Remove the whole session."""
        if self.dir.is_dir():
            with self._lock():
                shutil.rmtree(self.dir, ignore_errors=True)

    # ---- internals ---------------------------------------------------------------------------------
    def _blob(self, sha256: str) -> Path:
        return self.dir / "blobs" / sha256

    def _remove(self, drop: Callable[[str, dict[str, Any]], bool]) -> None:
        if not self.dir.is_dir():
            return
        with self._lock():
            m = self._read()
            gone = []
            for label, b in m["batches"].items():
                gone += [f["sha256"] for f in b["files"] if drop(label, f)]
                b["files"] = [f for f in b["files"] if not drop(label, f)]
            m["batches"] = {k: b for k, b in m["batches"].items() if b["files"]}
            self._write(m)
            for sha in gone:
                self._blob(sha).unlink(missing_ok=True)
            self._touch(force=True)

    def _check_bounds(self, m: dict[str, Any], new: list[ImageRecord]) -> None:
        """Raise :class:`UploadLimitError` if adding ``new`` passes a bound (called under the lock)."""
        lim = self.limits
        files = [f for b in m["batches"].values() for f in b["files"]]
        add = sum(len(r.data or b"") for r in new)
        if len(files) + len(new) > lim.max_files:
            raise UploadLimitError(f"{len(files) + len(new):,} uploads would pass this server's limit of "
                                   f"{lim.max_files:,} per session ({ENV_MAX_FILES}); remove some first.")
        have = sum(f["size"] for f in files)
        if have + add > lim.session_bytes:
            raise UploadLimitError(f"these uploads ({_mb(add)}) would pass this server's limit of {_mb(lim.session_bytes)} "
                                   f"per session ({_mb(have)} kept; {ENV_UPLOAD_SESSION_MB}); remove some first.")
        total = self._total_bytes()
        if total + add > lim.total_bytes:
            raise UploadLimitError(f"the server's upload space is full ({_mb(total)} of {_mb(lim.total_bytes)} kept for "
                                   f"all sessions, {ENV_UPLOAD_TOTAL_MB}); try again later or with fewer files.")

    def _total_bytes(self) -> int:
        total = 0
        for d in self._sessions():
            try:
                m = _read_manifest(d / "manifest.json")
            except ValueError:
                continue  # its owner's next write replaces it
            total += sum(f["size"] for b in m["batches"].values() for f in b["files"])
        return total

    def _stage(self, records: Iterable[ImageRecord]) -> dict[str, Path]:
        """Write each record's bytes to a temporary file beside its final place: ``{sha256: tmp path}``."""
        blobs = self.dir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        staged: dict[str, Path] = {}
        try:
            for r in records:
                tmp = blobs / f".tmp-{secrets.token_hex(8)}"
                tmp.write_bytes(r.data or b"")
                staged[r.sha256] = tmp
        except BaseException:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
            raise
        return staged

    def _check_blob(self, f: StoredFile) -> str | None:
        """None when the stored copy of ``f`` is whole, else what is wrong with it (hashed once per process
        while its size, mtime and inode stay the same)."""
        p = self._blob(f.sha256)
        try:
            st = p.stat()
        except FileNotFoundError:
            return "missing"
        if st.st_size != f.size:
            return f"damaged ({st.st_size:,} bytes instead of {f.size:,})"
        ident = (st.st_size, st.st_mtime_ns, st.st_ino)
        if _VERIFIED.get(str(p)) != ident:
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
            if h.hexdigest() != f.sha256:
                return "damaged (its content no longer matches its sha256)"
            if len(_VERIFIED) >= _MAX_VERIFIED:
                _VERIFIED.clear()
            _VERIFIED[str(p)] = ident
        return None

    def _read(self) -> dict[str, Any]:
        try:
            return _read_manifest(self.dir / "manifest.json")
        except ValueError as e:  # replaced by the next write; its files go with the session's expiry
            if not self._warned_manifest:
                self._warned_manifest = True
                warnings.warn(f"the upload session's list of files was damaged ({e}); its uploads were dropped",
                              UploadStoreWarning, stacklevel=3)
            return _empty_manifest()

    def _write(self, m: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.dir / "manifest.json", json.dumps(m, indent=1).encode())

    def _touch(self, force: bool = False) -> None:
        """Record the session's last use (at most once a minute unless ``force``)."""
        if not self.dir.is_dir():
            return
        p, now = self.dir / "touched", self.clock()
        if not p.exists():
            p.touch()
        elif not force and abs(now - p.stat().st_mtime) < _TOUCH_EVERY_S:
            return
        os.utime(p, (now, now))

    def _sessions(self) -> Iterator[Path]:
        base = self.root / "sessions"
        if base.is_dir():
            yield from (Path(e.path) for e in os.scandir(base) if e.is_dir(follow_symlinks=False))

    def _sweep(self) -> None:
        """Delete expired sessions (called under the lock): this one always, the others at most once a minute."""
        now, ttl = self.clock(), self.limits.ttl_s
        marker = self.root / ".swept"
        try:
            due = abs(now - marker.stat().st_mtime) >= _SWEEP_EVERY_S
        except FileNotFoundError:
            due = True
        for d in (self._sessions() if due else iter([self.dir] if self.dir.is_dir() else [])):
            try:
                last = (d / "touched").stat().st_mtime
            except FileNotFoundError:
                last = d.stat().st_mtime  # created but never finished: its folder's age
            if now - last > ttl:
                shutil.rmtree(d, ignore_errors=True)
        if due:
            marker.touch()
            os.utime(marker, (now, now))

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """The store's one lock, across threads and processes (a fresh descriptor per holder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _empty_manifest() -> dict[str, Any]:
    return {"version": _MANIFEST_VERSION, "batches": {}}


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path`` (an empty one when missing).

    Raises:
        ValueError: unreadable (not JSON, another version, fields that are not a :class:`StoredFile`'s).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _empty_manifest()
    try:
        m = json.loads(raw)
        if not isinstance(m, dict) or m.get("version") != _MANIFEST_VERSION or not isinstance(m.get("batches"), dict):
            raise ValueError("not a version-1 manifest")
        for b in m["batches"].values():
            float(b["created"])
            for f in b["files"]:
                StoredFile(**f)
        return m
    except (TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from e


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{secrets.token_hex(8)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def with_uploads(base: Dataset, uploads: Dataset) -> Dataset:
    """The dataset and the session's uploads as one :class:`~core.io.images.Dataset`: the dataset's
    records, then the uploads' (labelled batches as classes, unlabelled ones with label ``""``, so
    ``is_labelled`` is False as soon as there is one); failures of both; the dataset's root."""
    return Dataset(records=[*base.records, *uploads.records], failures=[*base.failures, *uploads.failures],
                   root=base.root)
