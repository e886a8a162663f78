"""Where a page's images come from: the bundled sample stamps, a folder under the data roots (listed
once per folder signature), the session's uploads (each validated once per content hash) and the
imported embedding sets (``backbone-lens import``)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.io.images import Dataset, Failure, ImageRecord, folder_signature, load_folder, load_uploads
from core.io.imports import imported_problems, imported_root, list_imported
from core.io.policy import ServerPolicy
from pages.shared.server import policy, stop_on_cache_error


@st.cache_data(show_spinner="Reading the image folder…", max_entries=8)
def _load_folder_cached(path: str, signature: tuple[int, int], roots: tuple[str, ...], max_pixels: int,
                        max_file_bytes: int, max_files: int) -> Dataset:
    """The folder's dataset; ``signature`` (:func:`core.io.images.folder_signature`) is part of the
    key, so a file or class folder added while the server runs is seen on the next rerun."""
    pol = ServerPolicy(data_roots=tuple(Path(r) for r in roots))
    return load_folder(path, max_pixels=max_pixels, max_file_bytes=max_file_bytes, max_files=max_files,
                       within=pol.is_within_data_roots)


def load_data_folder(folder: Path, pol: ServerPolicy) -> Dataset:
    """A folder under the data roots as a dataset, with the server's limits."""
    lim = pol.limits
    with stop_on_cache_error():  # the file index (files.sqlite) and hash memos live in the cache folder
        return _load_folder_cached(str(folder), folder_signature(folder), tuple(map(str, pol.data_roots)),
                                   lim.max_pixels, lim.max_file_bytes, lim.max_files)


# ---- uploads ------------------------------------------------------------------------------------
def _check_once(name: str, data: bytes, pol: ServerPolicy) -> tuple[str, str | None]:
    """``(sha256, failure reason or None)`` of uploaded bytes, decoded once per session and content."""
    checked: dict[str, str | None] = st.session_state.setdefault("_upload_checked", {})
    sha = hashlib.sha256(data).hexdigest()
    if sha not in checked:
        ds = load_uploads([(name, data)], max_pixels=pol.limits.max_pixels, max_file_bytes=pol.limits.max_file_bytes)
        checked[sha] = ds.failures[0].reason if ds.failures else None
    return sha, checked[sha]


def add_uploads(files, label: str, pol: ServerPolicy) -> str | None:
    """Validate new uploads once (by content hash, per session) and add them to the session's
    uploads; an error message when the batch would pass the file-count limit."""
    ss = st.session_state
    if len(ss.uploads) + len(files) > pol.limits.max_files:
        return (f"{len(ss.uploads) + len(files):,} images would pass this server's limit of {pol.limits.max_files:,} "
                "uploaded images (BACKBONE_LENS_MAX_FILES); clear some first.")
    for f in files:
        data = f.getvalue()
        sha, _ = _check_once(f.name, data, pol)
        ss.uploads.append((f.name, data, label, sha))
    return None


def checked_uploads(files, label: str = "") -> Dataset:
    """Uploaded files (Streamlit ``UploadedFile``) as a dataset, each validated once per session
    (keyed by content hash, not decoded again on later reruns), with the server's limits.

    More files than the server allows stop the page with one line.
    """
    pol = policy()
    if len(files) > pol.limits.max_files:
        st.error(f"{len(files):,} files uploaded; the limit on this server is {pol.limits.max_files:,} "
                 "(BACKBONE_LENS_MAX_FILES): remove some.")
        st.stop()
    records, failures = [], []
    for f in files:
        data = f.getvalue()
        sha, reason = _check_once(f.name, data, pol)
        if reason is None:
            records.append(ImageRecord(sha256=sha, name=f.name, label=label, path=None, data=data))
        else:
            failures.append(Failure(f.name, reason))
    return Dataset(records, failures)


def uploads_dataset() -> Dataset:
    """The session's uploads as a dataset, from the checks made when they were added (no decode)."""
    ss = st.session_state
    checked = ss.get("_upload_checked", {})
    records, failures = [], []
    for name, data, label, sha in ss.get("uploads", []):
        reason = checked.get(sha)
        if reason is None:
            records.append(ImageRecord(sha256=sha, name=name, label=label, path=None, data=data))
        else:
            failures.append(Failure(name, reason))
    return Dataset(records, failures)


# ---- imported embedding sets --------------------------------------------------------------------
@st.cache_data(max_entries=8, show_spinner=False)
def _imported_listing(root: str, mtime_ns: int) -> tuple[dict[str, int], tuple[str, ...]]:
    """(imported set name -> number of points, one line per damaged set) under the imported-sets
    folder ``root``; ``mtime_ns`` (the folder's) is part of the key: an import renames its set into
    place, so a set added, replaced or deleted while the app runs is listed on the next rerun."""
    cache = Path(root).parent
    return {s.name: s.n for s in list_imported(cache)}, tuple(imported_problems(cache))


def _listing() -> tuple[dict[str, int], tuple[str, ...]]:
    with stop_on_cache_error():  # e.g. a read-only cache folder where imported/ must be made
        root = imported_root()
        return _imported_listing(str(root), root.stat().st_mtime_ns)


def imported_sets() -> dict[str, int]:
    """Imported set name -> number of points (damaged sets left out: :func:`imported_set_problems`)."""
    return _listing()[0]


def imported_set_problems() -> tuple[str, ...]:
    """One line per damaged imported set: what is wrong and the command that imports it again."""
    return _listing()[1]


def forget_imported_listing() -> None:
    """List the imported sets afresh on the next call (e.g. a set found damaged when opened: damage
    inside a set does not change the folder's mtime that keys the listing)."""
    _imported_listing.clear()
