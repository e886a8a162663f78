"""One image to explain: a dataset image or an uploaded one, decoded once per session."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from core.errors import ImageDecodeError
from core.io.images import decode_image, sha256_hex
from pages.shared.selection import Selection
from pages.shared.server import one_line, policy


@dataclass(frozen=True)
class PickedImage:
    """The image a page explains.

    Attributes:
        name: file name (dataset path or upload name).
        sha256: of the file's bytes (cache key).
        image: decoded RGB picture.
        index: position in the selected dataset, or None for an upload (so class means can leave it out).
    """

    name: str
    sha256: str
    image: Image.Image
    index: int | None


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
    """A dataset image (selectbox) or an uploaded one (its own uploader; the upload wins while present).
    Uploads are validated with :func:`core.io.images.decode_image`; a bad file stops the page with the
    file name and the reason."""
    ds = sel.dataset
    c1, c2 = st.columns(2)
    up = c2.file_uploader("Upload an image", key=f"{key}_upload",
                          help="Any PNG, JPEG, BMP, GIF, TIFF, WebP or PPM picture; it replaces the dataset image while present.")
    if up is not None:
        data = up.getvalue()
        sha = sha256_hex(data)
        try:
            img = _decode_once(sha, up.name, lambda: data)
        except ImageDecodeError as e:
            st.error(f"Cannot use the uploaded file **{e.name}**: {e.reason}. Remove it to go back to the dataset images.")
            st.stop()
        c1.caption(f"Showing the upload **{up.name}** ({img.width}x{img.height}); remove it to pick a dataset image.")
        return PickedImage(up.name, sha, img, None)
    if not ds.records:
        st.info("The dataset is empty: pick another dataset in the sidebar or upload an image.")
        st.stop()
    names = [r.name for r in ds.records]
    i = c1.selectbox("Dataset image", range(len(names)), format_func=lambda i: names[i], key=f"{key}_pick")
    rec = ds.records[i]
    try:
        img = _decode_once(rec.sha256, rec.name, lambda: rec.read_bytes(policy().limits.max_file_bytes))
    except ImageDecodeError as e:
        st.error(f"Cannot read **{rec.name}**: {e.reason}")
        st.stop()
    except OSError as e:  # changed or removed since the dataset was listed
        st.error(f"Cannot read **{rec.name}**: {e.strerror or one_line(e)}")
        st.stop()
    return PickedImage(rec.name, rec.sha256, img, i)
