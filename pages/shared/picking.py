"""One image to explain: a dataset image or an uploaded one, decoded once per session."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from core.errors import ImageDecodeError
from core.io.images import decode_image
from pages.shared.selection import Selection
from pages.shared.server import one_line, policy
from pages.shared.uploads import add_files, upload_shas


@dataclass(frozen=True)
class PickedImage:
    """The image a page explains.

    Attributes:
        name: file name (dataset path or upload name).
        sha256: of the file's bytes (cache key).
        image: decoded RGB picture.
        index: position in the selected dataset, or None (e.g. another picture shown beside it).
        is_upload: one of the session's own photos.
    """

    name: str
    sha256: str
    image: Image.Image
    index: int | None
    is_upload: bool = False


_DECODED_PER_SESSION = 4  # decoded pictures kept per session (an upload is decoded once, not per rerun)


def _decode_once(sha256: str, name: str, data_fn: Callable[[], bytes]) -> Image.Image:
    """Decode ``data_fn()`` once per session and content hash (a small per-session LRU), with the
    server's pixel limit.

    Raises:
        ImageDecodeError / OSError: as :func:`core.io.images.decode_image` / reading the file.
    """
    cache: OrderedDict = st.session_state.setdefault("_decoded", OrderedDict())
    if sha256 in cache:
        cache.move_to_end(sha256)
        return cache[sha256]
    img = decode_image(data_fn(), name, max_pixels=policy().limits.max_pixels)
    cache[sha256] = img
    while len(cache) > _DECODED_PER_SESSION:
        cache.popitem(last=False)
    return img


def pick_image(sel: Selection, key: str) -> PickedImage:
    """An image of the selected dataset (your photos included, marked ⬆), or a photo uploaded here: it is
    kept with your other photos (pages.shared.uploads) and chosen. The choice is remembered by content,
    so it survives a change of dataset or page; a bad file stops the page with its name and the reason."""
    ss = st.session_state
    ds = sel.dataset
    c1, c2 = st.columns(2)
    up = c2.file_uploader("Upload a photo", key=f"{key}_upload_{ss.get(f'{key}_upload_n', 0)}",
                          help="Any PNG, JPEG, BMP, GIF, TIFF, WebP or PPM picture. It is kept with your photos (sidebar), "
                               "so every page can use it, across reloads of this link.")
    if up is not None:
        got = add_files([up])
        ss[f"{key}_upload_n"] = ss.get(f"{key}_upload_n", 0) + 1  # a fresh uploader: the photo is in the store now
        if got:
            ss[f"{key}_sha"] = got[0].sha256
        st.rerun()  # every view sees the new photo (or the sidebar says why it was refused)
    if not ds.records:
        st.info("The dataset is empty: pick another dataset in the sidebar or upload a photo.")
        st.stop()
    shas = upload_shas()
    names = [("⬆ " if r.sha256 in shas else "") + r.name for r in ds.records]
    want = ss.get(f"{key}_sha")
    if want is None and shas:  # your newest photo first: it is what you came to look at
        want = next((r.sha256 for r in reversed(ds.records) if r.sha256 in shas), None)
    at = next((i for i, r in enumerate(ds.records) if r.sha256 == want), None)
    if at is not None:
        ss[f"{key}_pick"] = at
    elif ss.get(f"{key}_pick", 0) >= len(names):
        ss[f"{key}_pick"] = 0
    i = c1.selectbox("Image (⬆ = your photo)", range(len(names)), format_func=lambda i: names[i], key=f"{key}_pick")
    rec = ds.records[i]
    ss[f"{key}_sha"] = rec.sha256
    try:
        img = _decode_once(rec.sha256, rec.name, lambda: rec.read_bytes(policy().limits.max_file_bytes))
    except ImageDecodeError as e:
        st.error(f"Cannot read **{rec.name}**: {e.reason}")
        st.stop()
    except OSError as e:  # changed or removed since the dataset was listed
        st.error(f"Cannot read **{rec.name}**: {e.strerror or one_line(e)}")
        st.stop()
    return PickedImage(rec.name, rec.sha256, img, i, rec.sha256 in shas)
