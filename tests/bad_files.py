"""A generated corpus of bad and unusual image files, with what the loader must say about each.

``make_corpus(folder)`` writes the files into ``folder/cls/`` (one class folder) plus a few things
next to them that are not files at all (a pipe, a socket, a symlink to ``/dev/zero``, ...), and
returns ``{name: expected}``: ``"ok"`` for a file that must load, else a substring of the reason the
loader must give. ``IGNORED`` files must appear neither as a record nor as a failure.
"""
from __future__ import annotations

import io
import os
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 40_000_000      # the server's default limit (core.io.policy.Limits)
MAX_FILE_BYTES = 2 * 2**20   # small, so one file of the corpus passes it
IGNORED = ("folder.png", ".hidden.png", "notes.txt", "__MACOSX/._a.png", "README")
PATH_ONLY = ("fifo.png", "devzero.png", "socket.png", "escape.png", "dangling.png", "link_ok.png", "unreadable.png")


def _png(img: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, "PNG", **kw)
    return b.getvalue()


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h pixels, with one tiny IDAT (a decompression-bomb header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b"")


def _photo(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), rng.integers(0, 255, (h, w))], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _exif_jpeg(orientation: int | None = None, corrupt: bool = False) -> bytes:
    img = _photo()
    if corrupt:  # an APP1 Exif segment whose TIFF header points past its end
        jpg = _save(img, "JPEG")
        payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 0xFFFF) + b"\x00" * 6
        seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
        return jpg[:2] + seg + jpg[2:]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(img, "JPEG", exif=exif.tobytes())


def make_corpus(folder: Path, outside: Path) -> dict[str, str]:
    """Write the corpus; ``outside`` is a folder outside the data roots (for a symlink escape)."""
    cls = folder / "cls"
    cls.mkdir(parents=True)
    photo = _photo()
    files: dict[str, tuple[bytes, str]] = {
        # ---- unusual but valid ----
        "rgb.png": (_png(photo), "ok"),
        "rgba.png": (_png(photo.convert("RGBA")), "ok"),
        "grey_alpha.png": (_png(photo.convert("LA")), "ok"),
        "palette.png": (_png(photo.convert("P")), "ok"),
        "palette_transparent.png": (_png(photo.convert("P"), transparency=0), "ok"),
        "grey16.png": (_png(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))), "ok"),
        "one_pixel.png": (_png(Image.new("RGB", (1, 1), "red")), "ok"),
        "thin_strip.png": (_png(Image.new("RGB", (1, 500), "blue")), "ok"),
        "photo.jpg": (_save(photo, "JPEG"), "ok"),
        "grey.jpg": (_save(photo.convert("L"), "JPEG"), "ok"),
        "cmyk.jpg": (_save(photo.convert("CMYK"), "JPEG"), "ok"),
        "progressive.jpg": (_save(photo, "JPEG", progressive=True), "ok"),
        "exif_rotated.jpg": (_exif_jpeg(orientation=6), "ok"),
        "corrupt_exif.jpg": (_exif_jpeg(corrupt=True), "ok"),
        "animated.gif": (_save(photo.convert("P"), "GIF", save_all=True,
                               append_images=[_photo(seed=1).convert("P")], duration=50), "ok"),
        "still.gif": (_save(photo.convert("P"), "GIF"), "ok"),
        "photo.bmp": (_save(photo, "BMP"), "ok"),
        "photo.tif": (_save(photo, "TIFF"), "ok"),
        "float.tif": (_save(Image.fromarray(np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)), "TIFF"), "ok"),
        "multipage.tif": (_save(photo, "TIFF", save_all=True, append_images=[_photo(seed=2)]), "ok"),
        "photo.webp": (_save(photo, "WEBP"), "ok"),
        "photo.ppm": (_save(photo, "PPM"), "ok"),
        "grey.pgm": (_save(photo.convert("L"), "PPM"), "ok"),
        "UPPER.PNG": (_png(photo), "ok"),
        "png_named.jpg": (_png(photo), "ok"),
        "spaces and é.png": (_png(_photo(seed=3)), "ok"),
        # ---- bad ----
        "empty.png": (b"", "empty"),
        "text.png": (b"just some notes\nnot a picture\n", "contains text"),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="4" height="4"/></svg>', "contains text"),
        "postscript.png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\n", "contains text"),
        "page.jpg": (b"<!doctype html><html><body>404</body></html>", "contains text"),
        "random.jpg": (np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
        "document.png": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n\x00\x01", "not an image"),
        "truncated.png": (_png(_photo(256, 256))[:2000], "truncated or corrupt"),
        "truncated.jpg": (_save(_photo(256, 256), "JPEG")[:1500], "truncated or corrupt"),
        "bad_crc.png": (None, "corrupt PNG"),  # filled below
        "zero_size.png": (_png_header_only(0, 0), "corrupt PNG"),
        "bomb.png": (_png_header_only(100_000, 100_000), "too large"),
        "big_8000.png": (_png(Image.new("RGBA", (8000, 8000), (10, 20, 30, 255))), "too large"),
        "gif_header_only.gif": (b"GIF89a\x01", "corrupt GIF"),
        "jpeg_start_only.jpg": (b"\xff\xd8\xff\xe0\x00", "JPEG"),
        "tiff_garbage.tif": (b"II*\x00" + b"\xff" * 60, "TIFF"),
        "bmp_garbage.bmp": (b"BM" + b"\x00" * 10, "BMP"),
        "webp_garbage.webp": (b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8, "corrupt"),
        "truncated.gif": (_save(_photo(128, 128).convert("P"), "GIF")[:300], "corrupt GIF"),
        "truncated.webp": (_save(_photo(128, 128), "WEBP")[:200], "WebP"),
        "over_the_byte_limit.png": (_png(Image.fromarray(np.random.default_rng(4).integers(
            0, 256, (1000, 1000, 3), dtype=np.uint8))), "limit"),
    }
    good = bytearray(_png(photo))
    good[29] ^= 0xFF  # the IHDR chunk's CRC
    files["bad_crc.png"] = (bytes(good), "corrupt PNG")
    expected = {}
    for name, (data, exp) in files.items():
        (cls / name).write_bytes(data)
        expected[name] = exp

    # ---- things that are not regular files, and links ----
    os.mkfifo(cls / "fifo.png")
    expected["fifo.png"] = "named pipe"
    os.symlink("/dev/zero", cls / "devzero.png")
    expected["devzero.png"] = "character device"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(cls / "socket.png"))
    sock.close()  # the socket file stays
    expected["socket.png"] = "socket"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.png").write_bytes(_png(_photo(seed=9)))
    os.symlink(outside / "secret.png", cls / "escape.png")
    expected["escape.png"] = "outside the server's data roots"
    os.symlink(cls / "does_not_exist.png", cls / "dangling.png")
    expected["dangling.png"] = "could not read"
    os.symlink(cls / "rgb.png", cls / "link_ok.png")
    expected["link_ok.png"] = "ok"
    if os.geteuid() != 0:  # root reads anything
        (cls / "unreadable.png").write_bytes(_png(photo))
        (cls / "unreadable.png").chmod(0)
        expected["unreadable.png"] = "could not read"

    # ---- ignored: not candidates ----
    (cls / "folder.png").mkdir()
    (cls / ".hidden.png").write_bytes(_png(photo))
    (cls / "notes.txt").write_text("notes")
    (cls / "README").write_text("readme")
    (cls / "__MACOSX").mkdir()
    (cls / "__MACOSX" / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    return expected


def upload_items(folder: Path, expected: dict[str, str]) -> list[tuple[str, bytes]]:
    """The corpus's regular files as uploads ``(name, bytes)`` (what a browser can send)."""
    return [(n, (folder / "cls" / n).read_bytes()) for n in expected if n not in PATH_ONLY]
