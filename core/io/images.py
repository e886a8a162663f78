"""Image loading and validation: bytes -> RGB ``PIL.Image``, folders and uploads -> ``Dataset``.

Every file is validated once, when a dataset is loaded, by a full decode (header *and* pixels), so a
truncated or corrupt file shows up as a :class:`Failure` with a human reason instead of breaking a
forward pass later. The decoded pixels are not kept: the forward pass decodes again. Decoding costs
about 1 ms for a small PNG and a few tens of ms for a 12-megapixel JPEG, so validation of a large
photo folder takes time proportional to its size (callers can pass ``progress`` to show it).

Decoding rules (:func:`decode_image`):

* EXIF orientation is applied (``ImageOps.exif_transpose``) before anything else; a malformed EXIF
  block is ignored rather than failing the image.
* Transparency (RGBA, LA, PA, palette or grey/RGB colour-key ``transparency``) is composited onto
  white.
* 16-bit integer images (``I;16*``) are scaled by the bit depth, ``v * 255 / 65535``, so brightness is
  comparable across images of a dataset. 32-bit ``I`` images whose values lie in 0..65535 (a 16-bit
  file that Pillow widened) get the same scaling; other ``I`` images are stretched over their actual
  range. Float (``F``) images with values in [0, 1] are multiplied by 255; other float images are
  stretched over their actual finite range (a constant image becomes black). NaN / inf become 0.
* Multi-frame files (animated GIF / WebP / PNG, multi-page TIFF) give their first frame.
* Only the formats a dataset may hold are opened (PNG, JPEG, BMP, GIF, TIFF, WebP, PPM/PGM), never
  Pillow's other plugins (EPS would run Ghostscript, for instance).
* Images with more than ``max_pixels`` pixels are refused from their header, before any pixel data is
  decoded. Pillow's own ``MAX_IMAGE_PIXELS`` guard also applies (its ``DecompressionBombWarning`` is
  turned into an error inside the decode call); Pillow's globals are never changed.
* ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set, so truncated files fail instead of being padded
  with grey.

Nothing here imports Streamlit.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import pathlib
import stat
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from core.errors import BackboneLensError, ImageDecodeError
from core.io.hashing import FileFacts, FileIndex, sha256_hex
from core.io.paths import cache_dir

__all__ = [
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_FILE_BYTES",
    "TooManyFilesError",
    "NoImagesError",
    "require_images",
    "read_regular_file",
    "folder_signature",
    "ImageRecord",
    "Failure",
    "Dataset",
    "records_key",
    "decode_image",
    "decode_alpha",
    "load_folder",
    "load_uploads",
    "thumbnail",
    "to_data_uri",
    "sha256_hex",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
DEFAULT_MAX_PIXELS = 64_000_000
FILE_INDEX_NAME = "files.sqlite"
VALIDATION_DRAFT = 256
DRAFT_FACTOR = 2  # decode_image(draft=S): reduced-size JPEG decode only when the short side >= 2 S
DEFAULT_MAX_FILE_BYTES = 256 * 2**20  # no supported image of DEFAULT_MAX_PIXELS needs more

# Pillow plugin names allowed when opening (MPO = multi-picture JPEG written by many cameras,
# DIB = the BMP plugin's headerless variant).
_ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM")
_FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF, WebP, PPM/PGM"
_SKIP_DIRS = frozenset({"__MACOSX"})  # zip-extraction debris (AppleDouble "._x.jpg" files)
# In a class tree, a first-level folder of these names holds unlabelled images (label ""): how a folder brings
# "known classes plus a pile of unlabelled images" (category discovery). The leading underscore keeps a class
# that is really called "unlabelled" a class.
UNLABELLED_DIRS = frozenset({"_unlabelled", "_unlabeled"})
_ALPHA_THRESHOLD = 128  # alpha >= this counts as foreground in decode_alpha


class TooManyFilesError(BackboneLensError):
    """A folder or an upload batch holds more image files than the limit."""


class NoImagesError(BackboneLensError):
    """A folder (or upload batch) that yields no usable image; the message names it."""


class NotRegularFileError(OSError):
    """A path that is a pipe, device, socket or folder: never opened for reading."""


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def read_regular_file(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file (after following symlinks) of at most
    ``max_bytes`` bytes.

    Pipes, devices and sockets are refused before any read (a FIFO would block forever,
    ``/dev/zero`` never ends): the path is stat-ed, then opened non-blocking and checked again on
    the open descriptor (the file may have been swapped in between), and at most ``max_bytes + 1``
    bytes are read.

    Raises:
        NotRegularFileError: not a regular file (the message says what it is).
        OSError: missing, unreadable, or larger than ``max_bytes`` (``errno.EFBIG``).
    """
    import errno

    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file: never read")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file: never read")
        if st.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"the file is {st.st_size:,} bytes; the limit is {max_bytes:,}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise OSError(errno.EFBIG, f"the file is larger than the limit of {max_bytes:,} bytes")
    return data


def folder_signature(root: str | os.PathLike, max_dirs: int = 10_000) -> tuple[int, int]:
    """``(number of folders, newest folder mtime in ns)`` over ``root`` and its non-hidden
    subfolders: changes when a file or class folder is added, removed or renamed anywhere in the
    tree (a cache key for a folder's listing; files are not stat-ed, so it is cheap)."""
    n, newest = 0, 0
    for dirpath, dirnames, _ in os.walk(os.fspath(root)):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d) and d not in _SKIP_DIRS]
        try:
            newest = max(newest, os.stat(dirpath).st_mtime_ns)
        except OSError:
            continue
        n += 1
        if n >= max_dirs:
            break
    return n, newest


# --------------------------------------------------------------------------------------------------
# Records and datasets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """One validated image of a dataset.

    Attributes:
        sha256: hex sha256 of the file's bytes (the cache key for features).
        name: display name: the path relative to the dataset root (POSIX separators), or the
            upload's file name.
        label: class label, ``""`` when unlabelled.
        path: the file on disk, or ``None`` for an upload held in memory.
        data: the bytes of an upload (``None`` for files on disk); not part of equality or repr.
    """

    sha256: str
    name: str
    label: str
    path: pathlib.Path | None
    data: bytes | None = field(default=None, repr=False, compare=False)

    def read_bytes(self, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
        """The image file's bytes (from memory for uploads, else read from ``path``, which must
        still be a regular file of at most ``max_bytes``: see :func:`read_regular_file`)."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError(f"{self.name}: record has neither in-memory data nor a path")
        return read_regular_file(self.path, max_bytes)

    def decode(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Shortcut for ``decode_image(self.read_bytes(), self.name, max_pixels)``."""
        return decode_image(self.read_bytes(), self.name, max_pixels=max_pixels)


@dataclass
class Failure:
    """A file that could not be used, with a human-readable reason."""

    name: str
    reason: str


def records_key(records: Iterable[ImageRecord]) -> str:
    """16 hex digits naming a sequence of records by what every number computed from it depends on: each
    record's content (``sha256``), label and name, in order (sha256 over ``"<sha256>|<label>|<name>\n"``
    per record). Equal for two folders with the same files, labels and names wherever they are; another
    label, name, order or byte changes it. About 0.1 s per 100,000 records."""
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r.sha256}|{r.label}|{r.name}\n".encode())
    return h.hexdigest()[:16]


def rows_by_sha256(records: Iterable[ImageRecord]) -> dict[str, list[int]]:
    """``{sha256: the positions of the records with that content}`` (a picture and its copies), in order."""
    rows: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        rows.setdefault(r.sha256, []).append(i)
    return rows


@dataclass
class Dataset:
    """Validated images plus the files that failed.

    Duplicate content (two records with the same ``sha256``) is kept as separate records: the copies
    may carry different labels, and dropping one silently would change class counts. Consumers that
    cache features by ``sha256`` compute them once for both.

    Attributes:
        key: :func:`records_key` of ``records``, computed once when the dataset is made (so a pickled
            copy, e.g. one returned by ``st.cache_data``, carries it): the dataset's identity for every
            cache. The records are not to be changed afterwards (make a new Dataset instead).
    """

    records: list[ImageRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    root: Path | None = None
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key = records_key(self.records)

    @property
    def labels(self) -> list[str]:
        """The label of each record, in record order (``""`` for unlabelled ones)."""
        return [r.label for r in self.records]

    @property
    def classes(self) -> list[str]:
        """Sorted unique non-empty labels."""
        return sorted({r.label for r in self.records if r.label})

    @property
    def is_labelled(self) -> bool:
        """True when there is at least one record and every record has a label."""
        return bool(self.records) and all(r.label for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)


def relabel(ds: Dataset, labels: Iterable[str]) -> Dataset:
    """The same images with other labels, one per record in order (e.g. names accepted for clusters that
    category discovery found): a new :class:`Dataset`, hence a new ``key``."""
    labels = list(labels)
    if len(labels) != len(ds.records):
        raise ValueError(f"{len(labels)} labels for {len(ds.records)} images")
    records = [r if r.label == lab else dataclasses.replace(r, label=str(lab)) for r, lab in zip(ds.records, labels)]
    return Dataset(records=records, failures=list(ds.failures), root=ds.root)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------

_allowed_formats_cache: list[str] | None = None


def _allowed_formats() -> list[str]:
    """The allowed plugin names that this Pillow build actually has (e.g. WebP may be missing)."""
    global _allowed_formats_cache
    if _allowed_formats_cache is None:
        Image.init()
        _allowed_formats_cache = [f for f in _ALLOWED_FORMATS if f in Image.OPEN]
    return _allowed_formats_cache


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t\f" for c in text)


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip()
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _open_loaded(data: bytes, name: str, max_pixels: int, draft: int | None = None) -> Image.Image:
    """Open, size-check, fully load and EXIF-transpose; the result keeps its original mode."""
    if not data:
        raise ImageDecodeError(name, "the file is empty (0 bytes)")
    with warnings.catch_warnings(record=True) as caught:
        # Turn Pillow's own bomb warning into an error for this call only; record the others
        # (Pillow's "Corrupt EXIF data" and the like) to say them again with the file's name.
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=_allowed_formats())
        except Image.DecompressionBombError as e:
            raise ImageDecodeError(
                name, f"image is too large (possible decompression bomb): {e}"
            ) from e
        except Image.DecompressionBombWarning as e:
            raise ImageDecodeError(
                name, f"image is too large (possible decompression bomb): {e}"
            ) from e
        except Image.UnidentifiedImageError as e:
            corrupt = _corrupt_signature(data)
            if corrupt:
                reason = corrupt
            elif _looks_like_text(data):
                reason = "not an image: the file contains text, not image data"
            else:
                reason = f"not an image, or not a supported format (supported: {_FORMAT_NAMES})"
            raise ImageDecodeError(name, reason) from e
        except Exception as e:  # any other failure while reading the header
            fmt = _signature_format(data)
            what = f"corrupt {fmt} file: cannot read its header" if fmt else "corrupt image header"
            raise ImageDecodeError(name, f"{what} ({_describe(e)})") from e

        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageDecodeError(name, f"image has no pixels ({w}x{h})")
        if w * h > max_pixels:
            raise ImageDecodeError(
                name,
                f"image is too large (possible decompression bomb): {w}x{h} = {w * h:,} pixels "
                f"exceeds the limit of {max_pixels:,}",
            )
        try:
            if draft is not None and im.format == "JPEG" and min(w, h) >= DRAFT_FACTOR * draft:
                # JPEG's reduced-size decode (DCT scaling by 1/2, 1/4 or 1/8), keeping both sides
                # >= draft; it still reads the whole stream, so truncation is still detected.
                im.draft(im.mode, (draft, draft))
            im.load()  # full pixel decode: detects truncation and corrupt data
        except Image.DecompressionBombError as e:
            raise ImageDecodeError(name, f"image is too large (possible decompression bomb): {e}") from e
        except Exception as e:
            raise ImageDecodeError(name, f"truncated or corrupt image data ({_describe(e)})") from e

        try:
            im = ImageOps.exif_transpose(im)  # type: ignore[assignment]
        except (OSError, ValueError, KeyError, TypeError, SyntaxError, struct.error):
            pass  # malformed EXIF: keep the stored orientation rather than failing the image
    for msg in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):  # each once, named
        warnings.warn(f"{name}: {msg}", UserWarning, stacklevel=3)
    return im


# Signatures of the formats we open: a file that starts with one but that Pillow cannot identify is
# a corrupt file of that format, not "not an image".
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _signature_format(data: bytes) -> str | None:
    """The format whose signature ``data`` starts with (display name), else None."""
    fmt = next((f for sig, f in _SIGNATURES if data.startswith(sig)), None)
    if fmt is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt = "WebP"
    return fmt


def _corrupt_signature(data: bytes) -> str | None:
    """The reason for a file that carries an image signature but does not open, else None."""
    label = _signature_format(data)
    if label is None:
        return None
    fmt = label.upper()
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        if w == 0 or h == 0:
            return f"corrupt PNG file: its header says {w}x{h} pixels"
    detail = ""
    if fmt in Image.OPEN:
        factory, _ = Image.OPEN[fmt]
        try:
            factory(io.BytesIO(data), "")
        except Exception as e:  # the plugin's own reason, e.g. "broken PNG file (bad header checksum)"
            detail = f" ({_describe(e)})"
    return f"corrupt {label} file: it starts like a {label} but cannot be opened{detail}"


def _scale_to_uint8(im: Image.Image) -> Image.Image:
    """A 16-bit / 32-bit integer or float single-band image -> 8-bit ``L`` (rules: module doc)."""
    try:
        arr = np.asarray(im)
    except (TypeError, ValueError, OSError):
        arr = np.asarray(im.convert("F" if im.mode == "F" else "I"))
    if arr.ndim != 2:
        raise ValueError(f"unexpected array shape {arr.shape} for mode {im.mode}")

    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 65535:  # 16-bit data (I;16*, or I widened from a 16-bit file)
            out = (arr.astype(np.uint32) * 255 + 32767) // 65535
            return Image.fromarray(out.astype(np.uint8))
        f = arr.astype(np.float64)
        finite = np.ones(f.shape, dtype=bool)
    else:
        f = arr.astype(np.float64)
        finite = np.isfinite(f)
        if not finite.any():
            return Image.fromarray(np.zeros(f.shape, dtype=np.uint8))
        lo, hi = float(f[finite].min()), float(f[finite].max())
        f[~finite] = lo
        if lo >= 0.0 and hi <= 1.0:  # float image in the [0, 1] convention
            out = np.rint(f * 255.0)
            out[~finite] = 0
            return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))

    span = hi - lo  # anything else: stretch over the actual (finite) range
    out = np.zeros_like(f) if span <= 0 else np.rint((f - lo) * (255.0 / span))
    out[~finite] = 0
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _has_alpha(im: Image.Image) -> bool:
    return "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I") or mode == "F":
        return _scale_to_uint8(im).convert("RGB")
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # L, 1, P, CMYK, RGBX, YCbCr, ...
    return im.convert("RGB")


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                 draft: int | None = None) -> Image.Image:
    """Decode image bytes to a fully loaded RGB ``PIL.Image`` (rules in the module docstring).

    Args:
        data: the file's bytes.
        name: display name, used in error messages.
        max_pixels: refuse images with more pixels than this (checked from the header).
        draft: the side the caller will resize to. A JPEG at least ``DRAFT_FACTOR`` times larger
            on its short side is decoded at a reduced size (both sides still >= ``draft``): the
            pixels then differ slightly from a full decode (DCT-domain downscaling).

    Raises:
        ImageDecodeError: empty file, not an image / unsupported format, too large, truncated or
            corrupt data, or a colour mode that cannot be converted to RGB.
    """
    im = _open_loaded(data, name, max_pixels, draft)
    try:
        rgb = _to_rgb(im)
    except Exception as e:
        raise ImageDecodeError(
            name, f"cannot convert colour mode {im.mode} to RGB ({_describe(e)})"
        ) from e
    if rgb.mode != "RGB":  # defensive: never hand out anything else
        raise ImageDecodeError(name, f"cannot convert colour mode {im.mode} to RGB")
    return rgb


def decode_alpha(
    data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray | None:
    """The alpha channel as a bool mask ``[H, W]`` (after EXIF transpose), or ``None`` if none.

    A pixel is foreground when its alpha is >= 128 (so anti-aliased edges split at half coverage).
    Palette and colour-key transparency count as an alpha channel.

    Raises:
        ImageDecodeError: as :func:`decode_image`.
    """
    im = _open_loaded(data, name, max_pixels)
    if not _has_alpha(im):
        return None
    try:
        alpha = im.convert("RGBA").getchannel("A")
    except Exception as e:
        raise ImageDecodeError(
            name, f"cannot read the alpha channel of mode {im.mode} ({_describe(e)})"
        ) from e
    return np.asarray(alpha) >= _ALPHA_THRESHOLD


# --------------------------------------------------------------------------------------------------
# Folders and uploads
# --------------------------------------------------------------------------------------------------


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_candidate(filename: str) -> bool:
    return not _is_hidden(filename) and os.path.splitext(filename)[1].lower() in IMAGE_EXTENSIONS


def _iter_candidate_strings(directory: str, recursive: bool) -> Iterator[tuple[str, str]]:
    """``(folder, file name)`` of the candidates :func:`_iter_candidates` yields, as strings."""
    if not recursive:
        for p in _iter_candidates(Path(directory), recursive=False):
            yield str(p.parent), p.name
        return
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d) and d not in _SKIP_DIRS)
        for fn in sorted(filenames):
            if _is_candidate(fn):
                yield dirpath, fn


def _iter_candidates(directory: Path, recursive: bool) -> Iterator[Path]:
    """Image-extension entries under ``directory`` that are not folders (hidden files/dirs and
    ``__MACOSX`` skipped).

    Symlinked files are yielded; symlinked directories are not followed (no loops). Non-regular
    entries (pipes, devices, sockets) are yielded so that the reader reports them by name."""
    if not recursive:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:  # pipes, devices and sockets are yielded too: the reader reports them
            if _is_candidate(e.name) and not e.is_dir():
                yield Path(e.path)
        return
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d) and d not in _SKIP_DIRS)
        for fn in sorted(filenames):
            if _is_candidate(fn):
                yield Path(dirpath) / fn


def _class_dirs(root: Path, recursive: bool) -> list[Path]:
    """First-level subfolders of ``root`` that hold at least one image-extension file."""
    out = []
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        if e.is_dir() and not _is_hidden(e.name) and e.name not in _SKIP_DIRS:
            if next(_iter_candidates(Path(e.path), recursive), None) is not None:
                out.append(Path(e.path))
    return out


def _validate(
    data: bytes, name: str, label: str, path: Path | None, keep_data: bool, max_pixels: int
) -> ImageRecord | Failure:
    try:
        # a large JPEG is checked through its reduced-size decode, which still reads every byte
        decode_image(data, name, max_pixels=max_pixels, draft=VALIDATION_DRAFT)
    except ImageDecodeError as e:
        return Failure(name, e.reason)
    return ImageRecord(
        sha256=sha256_hex(data),
        name=name,
        label=label,
        path=path,
        data=data if keep_data else None,
    )


def list_image_files(
    root: str | os.PathLike, *, labelled: bool | None = None, recursive: bool = True, max_files: int | None = None,
) -> tuple[list[tuple[str, str, Path]], list[Failure]]:
    """The image files under ``root`` as ``(label, name, path)`` sorted by (label, name), without
    reading them, plus the strays of a class tree (layout rules: :func:`load_folder`).

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or not a folder.
        TooManyFilesError: more than ``max_files`` candidates (listing stops at the first one over).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root} (pick the folder that holds the images)")

    class_dirs = _class_dirs(root, recursive)
    if labelled is None:
        labelled = bool(class_dirs)

    # (label, name, path) jobs, plus top-level strays in a class tree; names by string slicing, one
    # Path per file (pathlib parsing dominated listing 100,000 files)
    jobs: list[tuple[str, str, Path]] = []
    failures: list[Failure] = []
    cut = len(str(root).rstrip(os.sep)) + 1

    def rel(p: Path | str) -> str:
        name = str(p)[cut:]
        return name if os.sep == "/" else name.replace(os.sep, "/")

    def add(label: str, full: str) -> None:
        jobs.append((label, rel(full), Path(full)))
        if max_files is not None and len(jobs) > max_files:
            raise TooManyFilesError(f"{root.name or root} holds more than {max_files:,} image files, the limit on "
                                    "this server: pick a smaller folder (or raise BACKBONE_LENS_MAX_FILES).")

    if labelled:
        for d in class_dirs:
            label = "" if d.name in UNLABELLED_DIRS else d.name
            for dirpath, fn in _iter_candidate_strings(str(d), recursive):
                add(label, dirpath + os.sep + fn)
        for p in _iter_candidates(root, recursive=False):
            failures.append(
                Failure(
                    p.name,
                    "not inside a class folder; in a folder-per-class dataset every image must be "
                    "in root/<class>/ (ignored)",
                )
            )
    else:
        for dirpath, fn in _iter_candidate_strings(str(root), recursive):
            add("", dirpath + os.sep + fn)
    jobs.sort(key=lambda j: (j[0], j[1]))
    return jobs, failures


def _flush_index(index: FileIndex | None, own: bool, path: Path, fresh: dict[str, FileFacts]) -> FileIndex | None:
    """Write ``fresh`` facts to ``index`` (the own index at ``path`` is created on first write)."""
    if index is None and own:
        path.parent.mkdir(parents=True, exist_ok=True)
        index = FileIndex(path)
    if index is not None:
        index.put_many(fresh)
    return index


def load_folder(
    root: str | os.PathLike,
    *,
    labelled: bool | None = None,
    recursive: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_files: int | None = None,
    within: Callable[[Path], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_index: bool = True,
    index: FileIndex | None = None,
) -> Dataset:
    """Load and validate every image file under ``root``.

    Layout: when ``root`` has subfolders holding images it is a folder-per-class tree
    (``root/<class>/.../<image>``; the label is the first-level folder name, also for images nested
    deeper), except that the images under ``root/_unlabelled/`` (:data:`UNLABELLED_DIRS`) are unlabelled
    (label ``""``): known classes plus a pile of unlabelled images, as category discovery takes them.
    Otherwise it is a flat, unlabelled folder. ``labelled`` forces either reading.
    In a class tree, image files lying directly in ``root`` are reported as failures ("not inside a
    class folder") rather than silently dropped. Unlabelled with ``recursive=True`` takes images from
    all subfolders too.

    Candidates are files with an image extension (``IMAGE_EXTENSIONS``, any case); other files,
    hidden files / folders (``.name``) and ``__MACOSX`` folders are ignored. Every candidate is read,
    hashed and fully decoded; one that fails becomes a :class:`Failure` and the rest go on.
    Records are sorted by (label, name); names are POSIX paths relative to ``root``.

    What was learnt about each file (sha256, decoded or why not) is kept in a :class:`FileIndex`
    keyed by (absolute path, size, mtime): re-opening an unchanged folder lists and stats the files
    but reads none of them.

    Only regular files are opened (:func:`read_regular_file`): a pipe, device or socket with an
    image name, or a symlink to one, becomes a :class:`Failure` saying what it is.

    Args:
        max_file_bytes: a larger file is a failure (read no further than this).
        max_files: more candidate files than this raise :class:`TooManyFilesError` before any is read.
        within: ``within(path)`` False for a file (e.g. a symlink leading outside the server's data
            roots) makes it a failure without reading it.
        progress: called as ``progress(done, total)`` after each file.
        use_index: consult and update the file index (default ``<cache>/files.sqlite``).
        index: a specific :class:`FileIndex` (implies ``use_index``).

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or not a folder.
        TooManyFilesError: more than ``max_files`` candidates.
    """
    root = Path(root).expanduser()
    jobs, failures = list_image_files(root, labelled=labelled, recursive=recursive, max_files=max_files)
    records: list[ImageRecord] = []
    total = len(jobs)
    # The own index is opened for reading only if it exists, and created only once a file decoded:
    # listing a folder of nothing usable writes nothing.
    own_index = index is None and use_index and bool(jobs)
    index_path = cache_dir(create=False) / FILE_INDEX_NAME
    if own_index and index_path.exists():
        index = FileIndex(index_path)
    root_abs = str(root.resolve())
    known = index.under(root_abs) if index is not None else {}
    fresh: dict[str, FileFacts] = {}
    for i, (label, name, path) in enumerate(jobs):
        abs_path = root_abs + os.sep + (name if os.sep == "/" else name.replace("/", os.sep))
        try:
            if within is not None and not within(path):
                mode = os.stat(path).st_mode
                if stat.S_ISREG(mode):
                    failures.append(Failure(name, "leads outside the server's data roots (a symlink): never read"))
                else:  # say what it is: a link to /dev/zero is a device, whatever its name
                    failures.append(Failure(name, f"{_kind(mode)}, not a regular file: never read"))
                continue
            st = os.stat(abs_path)
            facts = known.get(abs_path)
            if facts is not None and stat.S_ISREG(st.st_mode) and facts.matches(st, max_pixels):  # unchanged since last read
                res: ImageRecord | Failure = (ImageRecord(sha256=facts.sha256, name=name, label=label, path=path)
                                              if facts.failure is None else Failure(name, facts.failure))
            else:
                data = read_regular_file(path, max_file_bytes)
                res = _validate(data, name, label, path, keep_data=False, max_pixels=max_pixels)
                fresh[abs_path] = FileFacts(st.st_size, st.st_mtime_ns, sha256_hex(data), max_pixels,
                                            None if isinstance(res, ImageRecord) else res.reason)
                del data
        except NotRegularFileError as e:
            failures.append(Failure(name, e.strerror or str(e)))
        except OSError as e:
            failures.append(Failure(name, f"could not read the file ({e.strerror or _describe(e)})"))
        else:
            if isinstance(res, ImageRecord):
                records.append(res)
            else:
                failures.append(res)
        if len(fresh) >= 1000 and records:
            index = _flush_index(index, own_index, index_path, fresh)
            fresh = {}
        if progress is not None:
            progress(i + 1, total)
    if fresh and records:
        index = _flush_index(index, own_index, index_path, fresh)
    if own_index and index is not None:
        index.close()
    failures.sort(key=lambda f: f.name)
    return Dataset(records=records, failures=failures, root=root)


def load_uploads(
    files: Iterable[tuple[str, bytes]],
    label: str = "",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_files: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Validate in-memory uploads ``(file name, bytes)``; every one gets ``label``.

    Unlike :func:`load_folder` there is no extension filter (the content decides) and the input
    order is kept. Records hold their bytes in ``data`` and have ``path=None``.

    Raises:
        TooManyFilesError: more than ``max_files`` files.
    """
    items = list(files)
    if max_files is not None and len(items) > max_files:
        raise TooManyFilesError(f"{len(items):,} files uploaded; the limit on this server is {max_files:,} "
                                "(BACKBONE_LENS_MAX_FILES).")
    records: list[ImageRecord] = []
    failures: list[Failure] = []
    for i, (name, data) in enumerate(items):
        res: ImageRecord | Failure
        if len(data) > max_file_bytes:
            res = Failure(name, f"the file is {len(data):,} bytes; the limit is {max_file_bytes:,}")
        else:
            res = _validate(bytes(data), name, label, None, keep_data=True, max_pixels=max_pixels)
        if isinstance(res, ImageRecord):
            records.append(res)
        else:
            failures.append(res)
        if progress is not None:
            progress(i + 1, len(items))
    return Dataset(records=records, failures=failures, root=None)


def require_images(ds: Dataset, where: str | os.PathLike | None = None) -> Dataset:
    """``ds`` itself when it holds at least one image, else :class:`NoImagesError` naming the folder.

    The message tells the two empty cases apart: no image file at all ("no images found in PATH
    (looked for .png, .jpg, ...)") and image files that all failed ("no usable images in PATH: 3
    image files could not be read (first: a.png: the file is empty (0 bytes))").

    Args:
        ds: a loaded dataset.
        where: what to name (default ``ds.root``, else "the uploads").
    """
    if ds.records:
        return ds
    name = str(where) if where is not None else str(ds.root) if ds.root is not None else "the uploads"
    if not ds.failures:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise NoImagesError(f"no images found in {name} (looked for {exts}, in the folder and its subfolders).")
    first = ds.failures[0]
    n = len(ds.failures)
    raise NoImagesError(f"no usable images in {name}: {n:,} image file{'' if n == 1 else 's'} could not be read "
                        f"(first: {first.name}: {first.reason}).")


# --------------------------------------------------------------------------------------------------
# Small helpers for the UI
# --------------------------------------------------------------------------------------------------


def thumbnail(img: Image.Image, size: int = 96) -> Image.Image:
    """A copy of ``img`` shrunk to fit in ``size`` x ``size`` (aspect kept, never enlarged)."""
    out = img.copy()
    out.thumbnail((size, size), Image.Resampling.LANCZOS)
    return out


def to_data_uri(img: Image.Image, fmt: str = "JPEG", quality: int = 85) -> str:
    """Encode ``img`` as a base64 ``data:`` URI (for hover thumbnails in plots).

    For JPEG, images with transparency are composited onto white and other modes converted to RGB.
    """
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = _to_rgb(img)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format=fmt, quality=quality)
    else:
        img.save(buf, format=fmt)
    mime = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}.get(
        fmt, fmt.lower()
    )
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
