"""The images behind a set of embeddings, row by row: display names, recorded paths, and the picture where
this server may read it. A dataset's rows are validated files; an imported set's rows are paths some other
tool recorded, read only under the server's data roots (:meth:`core.io.policy.ServerPolicy.readable_file`).
Pages draw thumbnails from :class:`Items` and a grey "not readable" square where there is no picture."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st
from PIL import Image, ImageOps

from core import render
from core.compare.sources import AlignedSources
from core.errors import ImageDecodeError
from core.io.images import ImageRecord, decode_image, thumbnail
from core.io.imports import ImportedSet
from pages.shared.server import policy


@dataclass(frozen=True, eq=False)
class Items:
    """N rows of a set of embeddings, as images.

    Attributes:
        key: identity of the rows (a cache key: ``FeatureSet.key``, ``ImportedSet.fid``, an alignment's key).
        names: ``N`` display names.
        paths: ``N`` paths as recorded (``""`` for an upload).
        read: row ``i``'s file bytes, or None where this server cannot or may not read it.
    """

    key: str
    names: Sequence[str]
    paths: Sequence[str]
    read: Callable[[int], bytes | None]

    def __len__(self) -> int:
        return len(self.names)

    def picture(self, i: int) -> Image.Image | None:
        """Row ``i``'s decoded picture (the server's pixel limit), or None when it is not readable."""
        return _picture(self.key, int(i), self)

    def thumb(self, i: int, side: int = 120) -> Image.Image:
        """Row ``i``'s thumbnail (longer side ``side``), or a grey "not readable" square."""
        t = _thumb(self.key, int(i), side, self)
        return render.placeholder(side) if t is None else t


@st.cache_resource(max_entries=64, show_spinner=False)  # shared, never changed: a full picture is not copied
def _picture(key: str, i: int, _items: Items) -> Image.Image | None:
    data = _items.read(i)
    if data is None:
        return None
    try:
        return decode_image(data, _items.names[i], max_pixels=policy().limits.max_pixels)
    except ImageDecodeError:
        return None


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumb(key: str, i: int, side: int, _items: Items) -> Image.Image | None:
    pic = _picture(key, i, _items)
    return None if pic is None else thumbnail(pic, side)


@st.cache_data(max_entries=4096, show_spinner=False)
def record_thumb(sha: str, name: str, side: int, _rec: ImageRecord) -> Image.Image:
    """A dataset picture shrunk into a white ``side`` x ``side`` square, so grids and captions line up (cached by
    content and name; raises :class:`~core.errors.ImageDecodeError` / ``OSError`` when the file changed or went)."""
    t = thumbnail(_rec.decode(), side)
    square = Image.new("RGB", (side, side), "white")
    square.paste(t, ((side - t.width) // 2, (side - t.height) // 2))
    return square


def show_thumb(where, items: Items, i: int, side: int = 120, caption: str | None = None) -> None:
    """Row ``i``'s thumbnail in ``where``, centred on a white ``side`` x ``side`` square so that captions side by
    side line up (a grey "not readable" square when there is no picture)."""
    where.image(ImageOps.pad(items.thumb(i, side).convert("RGB"), (side, side), color=(255, 255, 255)),
                caption=caption, width=side)


# ---- the three kinds of rows ------------------------------------------------------------------
def record_items(key: str, records: Sequence[ImageRecord]) -> Items:
    """A dataset's validated records (a folder's files, uploads' bytes)."""
    limit = policy().limits.max_file_bytes

    def read(i: int) -> bytes | None:
        try:
            return records[i].read_bytes(limit)
        except (OSError, ValueError):  # changed or removed since the dataset was listed
            return None

    return Items(key, [r.name for r in records], [str(r.path) if r.path is not None else "" for r in records], read)


@st.cache_resource(max_entries=4, show_spinner="Reading the imported set's paths…")
def _imported_paths(fid: str, _s: ImportedSet) -> list[str]:
    return _s.paths()


def imported_items(s: ImportedSet) -> Items:
    """An imported set's points: the recorded paths, read only where the server's policy allows."""
    paths = _imported_paths(s.fid, s)
    return Items(s.fid, paths, paths, lambda i: s.image_bytes(i, policy()))


def aligned_items(key: str, al: AlignedSources, names: Sequence[str] | None = None) -> Items:
    """The images several sources share (:func:`core.compare.sources.align_sources`): a backbone source's
    file where there is one, else the first imported set's path under the policy. ``names``: display names
    (default: the first source's)."""
    return Items(key, al.names if names is None else names, al.paths, lambda i: al.image_bytes(i, policy()))
