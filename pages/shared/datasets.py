"""Where a page's images come from: the bundled sample stamps, a folder under the data roots (listed
once per folder signature) and the imported embedding sets (``backbone-lens import``); the session's
own photos are pages.shared.uploads."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.io.images import Dataset, folder_signature, load_folder
from core.io.imports import imported_problems, imported_root, list_imported
from core.io.policy import ServerPolicy
from pages.shared.server import stop_on_cache_error


@st.cache_data(show_spinner="Reading the image folder…", max_entries=8)
def _load_folder_cached(path: str, signature: tuple[int, int], roots: tuple[str, ...], any_folder: bool, max_pixels: int,
                        max_file_bytes: int, max_files: int) -> Dataset:
    """The folder's dataset; ``signature`` (:func:`core.io.images.folder_signature`) is part of the
    key, so a file or class folder added while the server runs is seen on the next rerun."""
    pol = ServerPolicy(data_roots=tuple(Path(r) for r in roots), any_folder=any_folder)
    return load_folder(path, max_pixels=max_pixels, max_file_bytes=max_file_bytes, max_files=max_files,
                       within=pol.is_within_data_roots)


def load_data_folder(folder: Path, pol: ServerPolicy) -> Dataset:
    """A folder under the data roots as a dataset, with the server's limits."""
    lim = pol.limits
    with stop_on_cache_error():  # the file index (files.sqlite) and hash memos live in the cache folder
        return _load_folder_cached(str(folder), folder_signature(folder), tuple(map(str, pol.data_roots)),
                                   pol.any_folder, lim.max_pixels, lim.max_file_bytes, lim.max_files)


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
