"""Tests for core.io.images: decoding rules, typed failures, folder / upload loading. Pure CPU, fast."""
from __future__ import annotations

import base64
import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from core.errors import ImageDecodeError
from core.io.images import (
    Dataset,
    Failure,
    ImageRecord,
    decode_alpha,
    decode_image,
    load_folder,
    load_uploads,
    relabel,
    thumbnail,
    to_data_uri,
)

# ------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb_jpeg(w=32, h=24, color=(200, 30, 40)) -> bytes:
    return encode(Image.new("RGB", (w, h), color), "JPEG", quality=95)


def rgb_png(w=16, h=16, color=(10, 120, 230)) -> bytes:
    return encode(Image.new("RGB", (w, h), color), "PNG")


def noisy_jpeg(w=64, h=64, seed=0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return encode(Image.fromarray(arr), "JPEG", quality=95)


def truncated_jpeg() -> bytes:
    data = noisy_jpeg()
    return data[: len(data) // 2]


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is patched to claim width x height (CRC fixed up)."""
    data = bytearray(rgb_png(1, 1))
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def two_tone(w=40, h=20, mode="RGB") -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr).convert(mode)


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def px(im: Image.Image, xy) -> tuple:
    return im.getpixel(xy)


def close(a, b, tol=12) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------------
# decode_image: good inputs
# ------------------------------------------------------------------------------------------------


def test_rgb_jpeg():
    im = decode_image(rgb_jpeg(32, 24), "a.jpg")
    assert im.mode == "RGB" and im.size == (32, 24)
    assert close(px(im, (5, 5)), (200, 30, 40))


def test_exif_rotated_jpeg_is_transposed():
    data = encode(two_tone(40, 20), "JPEG", quality=95, exif=exif_orientation(6))
    assert Image.open(io.BytesIO(data)).size == (40, 20)  # stored landscape
    im = decode_image(data, "rot.jpg")
    assert im.size == (20, 40)  # orientation 6 = rotate 90° clockwise to display
    # after a clockwise quarter turn the stored left (red) half is on top
    assert close(px(im, (10, 3)), (255, 0, 0), tol=40)
    assert close(px(im, (10, 36)), (0, 0, 255), tol=40)


def test_rgba_png_composited_on_white():
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red everywhere ...
    arr[..., 3] = 255  # ... opaque ...
    arr[0, 0, 3] = 0  # ... except one fully transparent pixel
    arr[1, 1, 3] = 128  # and one half-transparent pixel
    im = decode_image(encode(Image.fromarray(arr, "RGBA"), "PNG"), "a.png")
    assert im.mode == "RGB"
    assert px(im, (0, 0)) == (255, 255, 255)
    assert px(im, (3, 3)) == (255, 0, 0)
    r, g, b = px(im, (1, 1))
    assert r == 255 and 120 <= g <= 135 and 120 <= b <= 135  # half red over white


def test_la_png_composited_on_white():
    im = Image.new("LA", (4, 4), (0, 255))
    im.putpixel((0, 0), (0, 0))
    out = decode_image(encode(im, "PNG"), "la.png")
    assert px(out, (0, 0)) == (255, 255, 255)
    assert px(out, (2, 2)) == (0, 0, 0)


def test_palette_png_with_transparency():
    im = Image.new("P", (6, 6), 1)
    im.putpalette([0, 0, 0, 0, 200, 0] + [0] * (254 * 3))  # index 0 black, 1 green
    im.putpixel((0, 0), 0)
    data = encode(im, "PNG", transparency=0)
    out = decode_image(data, "p.png")
    assert out.mode == "RGB"
    assert px(out, (0, 0)) == (255, 255, 255)  # transparent index -> white, not black
    assert px(out, (3, 3)) == (0, 200, 0)
    mask = decode_alpha(data, "p.png")
    assert mask is not None and mask.shape == (6, 6)
    assert not mask[0, 0] and mask[3, 3]


def test_palette_png_without_transparency():
    im = Image.new("RGB", (5, 5), (10, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    out = decode_image(encode(im, "PNG"), "p.png")
    assert out.mode == "RGB" and close(px(out, (2, 2)), (10, 20, 30), tol=3)
    assert decode_alpha(encode(im, "PNG"), "p.png") is None


def test_grayscale_l_and_1bit():
    g = decode_image(encode(Image.new("L", (7, 5), 77), "PNG"), "l.png")
    assert g.mode == "RGB" and g.size == (7, 5) and px(g, (1, 1)) == (77, 77, 77)
    b = Image.new("1", (8, 8), 0)
    b.putpixel((2, 2), 1)
    out = decode_image(encode(b, "PNG"), "b.png")
    assert out.mode == "RGB" and px(out, (2, 2)) == (255, 255, 255) and px(out, (0, 0)) == (0, 0, 0)


def test_16bit_grayscale_png_scaled_by_bit_depth():
    ramp = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)
    src = Image.fromarray(ramp)
    data = encode(src, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit file
    out = np.asarray(decode_image(data, "g16.png"))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    flat = out[..., 0].ravel()
    assert (np.diff(flat.astype(int)) >= 0).all()  # monotonic
    assert flat[0] == 0 and flat[-1] == 255
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    # bit-depth scaling, not stretching: a dark 16-bit image stays dark
    dark = Image.fromarray(np.full((4, 4), 4096, dtype=np.uint16))
    assert px(decode_image(encode(dark, "PNG"), "dark.png"), (0, 0)) == (16, 16, 16)


def test_32bit_int_and_float_tiff():
    i32 = Image.fromarray(np.array([[-1000, 0], [500, 1000]], dtype=np.int32))
    assert i32.mode == "I"
    out = np.asarray(decode_image(encode(i32, "TIFF"), "i.tif"))[..., 0]
    assert out[0, 0] == 0 and out[1, 1] == 255 and 0 < out[0, 1] < out[1, 0] < 255

    unit = Image.fromarray(np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32))
    assert unit.mode == "F"
    out = np.asarray(decode_image(encode(unit, "TIFF"), "f.tif"))[..., 0]
    assert out.tolist() == [[0, 128], [64, 255]]

    wide = Image.fromarray(np.array([[-5.0, 5.0], [0.0, np.nan]], dtype=np.float32))
    out = np.asarray(decode_image(encode(wide, "TIFF"), "w.tif"))[..., 0]
    assert out[0, 0] == 0 and out[0, 1] == 255 and out[1, 0] == 128 and out[1, 1] == 0


def test_cmyk_jpeg():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data, "cmyk.jpg")
    assert out.mode == "RGB" and close(px(out, (8, 8)), (255, 0, 0), tol=20)


def test_other_formats_decode():
    src = two_tone(12, 10)
    for fmt, ext in [("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif"), ("WEBP", "webp"), ("PPM", "ppm")]:
        out = decode_image(encode(src, fmt), f"x.{ext}")
        assert out.mode == "RGB" and out.size == (12, 10), fmt
    pgm = decode_image(encode(Image.new("L", (3, 3), 9), "PPM"), "x.pgm")
    assert px(pgm, (0, 0)) == (9, 9, 9)


# ------------------------------------------------------------------------------------------------
# decode_image: failures
# ------------------------------------------------------------------------------------------------


def reason_of(data: bytes, name="bad", **kw) -> str:
    with pytest.raises(ImageDecodeError) as ei:
        decode_image(data, name, **kw)
    assert ei.value.name == name
    assert str(ei.value).startswith(f"{name}: ")
    return ei.value.reason


def test_zero_byte_file():
    assert "empty" in reason_of(b"")


def test_text_file_renamed_png():
    r = reason_of(b"hello, this is not a picture\n", "notes.png")
    assert "not an image" in r and "text" in r


def test_random_bytes_not_an_image():
    r = reason_of(bytes(range(256)) * 4)
    assert "not an image" in r and "supported" in r


def test_truncated_jpeg():
    assert "truncated" in reason_of(truncated_jpeg(), "cut.jpg")


def test_truncated_png():
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(arr), "PNG")
    assert "truncated" in reason_of(data[: len(data) // 2], "cut.png")


def test_decompression_bomb_header_beyond_pillow_limit():
    # 100k x 100k: Pillow itself refuses this at open time
    r = reason_of(png_with_size(100_000, 100_000), "bomb.png")
    assert "too large" in r and "decompression bomb" in r


def test_decompression_bomb_header_over_our_limit():
    # 9000 x 9000 = 81 M pixels: under Pillow's limit, over our default 64 M; refused from the header
    t0 = time.perf_counter()
    r = reason_of(png_with_size(9000, 9000), "big.png")
    assert time.perf_counter() - t0 < 0.5  # never tried to decode the pixels
    assert "too large" in r and "81,000,000" in r and "64,000,000" in r


def test_decompression_bomb_pillow_warning_becomes_error():
    # 10k x 10k = 100 M: Pillow only warns; even with a generous max_pixels it is refused, with no
    # warning escaping
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = reason_of(png_with_size(10_000, 10_000), "warn.png", max_pixels=10**9)
    assert "too large" in r


def test_max_pixels_small_limit_on_real_image():
    data = rgb_png(100, 100)
    assert "too large" in reason_of(data, max_pixels=1000)
    assert decode_image(data, "ok", max_pixels=10_000).size == (100, 100)


def test_pillow_globals_untouched():
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    for data in (truncated_jpeg(), png_with_size(10_000, 10_000), rgb_jpeg()):
        try:
            decode_image(data, "x")
        except ImageDecodeError:
            pass
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)) == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ------------------------------------------------------------------------------------------------
# decode_alpha
# ------------------------------------------------------------------------------------------------


def test_decode_alpha_mask_and_none():
    arr = np.zeros((6, 10, 4), dtype=np.uint8)
    arr[2:4, 3:7, 3] = 255
    arr[0, 0, 3] = 100  # below half: background
    arr[5, 9, 3] = 200  # above half: foreground
    data = encode(Image.fromarray(arr, "RGBA"), "PNG")
    mask = decode_alpha(data, "m.png")
    assert mask.dtype == bool and mask.shape == (6, 10)
    expected = np.zeros((6, 10), dtype=bool)
    expected[2:4, 3:7] = True
    expected[5, 9] = True
    assert (mask == expected).all()
    assert decode_alpha(rgb_png(), "rgb.png") is None
    assert decode_alpha(rgb_jpeg(), "rgb.jpg") is None
    with pytest.raises(ImageDecodeError):
        decode_alpha(b"", "empty.png")


def test_decode_alpha_follows_exif_orientation():
    arr = np.zeros((20, 40, 4), dtype=np.uint8)
    arr[:, :20, 3] = 255  # left half opaque
    data = encode(Image.fromarray(arr, "RGBA"), "PNG", exif=exif_orientation(6))
    mask = decode_alpha(data, "rot.png")
    assert mask.shape == (40, 20)
    assert mask[:20].all() and not mask[20:].any()  # left half -> top half
    assert decode_image(data, "rot.png").size == (20, 40)


# ------------------------------------------------------------------------------------------------
# load_folder / load_uploads
# ------------------------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_per_class_tree_with_bad_files(tmp_path):
    root = tmp_path / "ds"
    write(root / "cats" / "a.png", rgb_png(color=(1, 2, 3)))
    write(root / "cats" / "sub" / "deep" / "b.jpg", rgb_jpeg())
    write(root / "cats" / "C.JPEG", rgb_jpeg(8, 8))  # upper-case extension is a candidate
    write(root / "dogs" / "c.png", rgb_png(color=(9, 9, 9)))
    write(root / "dogs" / "cut.jpg", truncated_jpeg())
    write(root / "dogs" / "empty.png", b"")
    write(root / "dogs" / "notes.txt", b"ignored, not an image extension")
    write(root / "dogs" / ".hidden.png", b"ignored, hidden")
    write(root / "birds" / "text.png", b"just some text\n")
    write(root / "birds" / "bomb.png", png_with_size(9000, 9000))
    write(root / ".git" / "x.png", b"ignored, hidden folder")
    write(root / "__MACOSX" / "cats" / "._a.png", b"\x00\x05\x16\x07 AppleDouble")
    write(root / "README.md", b"# not an image")
    write(root / "stray.png", rgb_png())

    ds = load_folder(root)
    assert isinstance(ds, Dataset) and ds.root == root
    assert [(r.label, r.name) for r in ds.records] == [
        ("cats", "cats/C.JPEG"),
        ("cats", "cats/a.png"),
        ("cats", "cats/sub/deep/b.jpg"),
        ("dogs", "dogs/c.png"),
    ]
    assert len(ds) == 4 and ds.is_labelled
    assert ds.classes == ["cats", "dogs"]  # birds has no good image
    assert ds.labels == ["cats", "cats", "cats", "dogs"]
    for r in ds.records:
        assert r.path == root / r.name and r.data is None
        assert r.sha256 == __import__("hashlib").sha256(r.path.read_bytes()).hexdigest()
        assert r.read_bytes() == r.path.read_bytes()
        assert r.decode().mode == "RGB"

    reasons = {f.name: f.reason for f in ds.failures}
    assert set(reasons) == {"birds/text.png", "birds/bomb.png", "dogs/cut.jpg", "dogs/empty.png", "stray.png"}
    assert "text" in reasons["birds/text.png"]
    assert "too large" in reasons["birds/bomb.png"]
    assert "truncated" in reasons["dogs/cut.jpg"]
    assert "empty" in reasons["dogs/empty.png"]
    assert "class folder" in reasons["stray.png"]
    assert all(isinstance(f, Failure) for f in ds.failures)


def test_flat_folder_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    write(root / "b.png", rgb_png())
    write(root / "a.jpg", rgb_jpeg())
    write(root / "bad.jpg", b"")
    (root / "empty_subfolder").mkdir()
    write(root / "docs" / "readme.txt", b"no images in here")
    ds = load_folder(root)
    assert [r.name for r in ds.records] == ["a.jpg", "b.png"]
    assert ds.labels == ["", ""] and ds.classes == [] and not ds.is_labelled
    assert [f.name for f in ds.failures] == ["bad.jpg"]


def test_labelled_override_and_recursive(tmp_path):
    root = tmp_path / "ds"
    write(root / "x" / "a.png", rgb_png())
    write(root / "x" / "deep" / "b.png", rgb_png(color=(5, 5, 5)))
    write(root / "top.png", rgb_png(color=(7, 7, 7)))

    unl = load_folder(root, labelled=False)
    assert [(r.label, r.name) for r in unl.records] == [("", "top.png"), ("", "x/a.png"), ("", "x/deep/b.png")]
    assert unl.failures == []

    shallow = load_folder(root, recursive=False)
    assert [(r.label, r.name) for r in shallow.records] == [("x", "x/a.png")]

    flat_only = load_folder(root, labelled=False, recursive=False)
    assert [r.name for r in flat_only.records] == ["top.png"]


def test_unlabelled_subfolder_of_a_class_tree(tmp_path):
    """Known classes plus a pile of unlabelled images: root/_unlabelled/ (any depth) has label ""; a class
    called "unlabelled" without the underscore stays a class; strays and the forced readings are unchanged."""
    root = tmp_path / "ds"
    write(root / "cats" / "a.png", rgb_png())
    write(root / "unlabelled" / "u.png", rgb_png(color=(3, 3, 3)))
    write(root / "_unlabelled" / "p.png", rgb_png(color=(4, 4, 4)))
    write(root / "_unlabelled" / "deep" / "q.png", rgb_png(color=(5, 5, 5)))
    write(root / "_unlabelled" / "bad.png", b"")
    write(root / "stray.png", rgb_png(color=(6, 6, 6)))
    ds = load_folder(root)
    assert [(r.label, r.name) for r in ds.records] == [
        ("", "_unlabelled/deep/q.png"), ("", "_unlabelled/p.png"), ("cats", "cats/a.png"), ("unlabelled", "unlabelled/u.png")]
    assert ds.classes == ["cats", "unlabelled"] and not ds.is_labelled
    assert {f.name: f.reason for f in ds.failures}.keys() == {"_unlabelled/bad.png", "stray.png"}
    assert "class folder" in {f.name: f.reason for f in ds.failures}["stray.png"]
    assert all(r.label == "" for r in load_folder(root, labelled=False).records)
    write(root / "_unlabeled" / "r.png", rgb_png(color=(7, 7, 7)))  # the other spelling
    assert ("", "_unlabeled/r.png") in [(r.label, r.name) for r in load_folder(root).records]


def test_relabel_makes_a_new_dataset():
    ds = load_uploads([("a.png", rgb_png()), ("b.png", rgb_png(color=(1, 1, 1)))])
    out = relabel(ds, ["", "crabs"])
    assert out.labels == ["", "crabs"] and ds.labels == ["", ""]  # the input is left alone
    assert out.key != ds.key and out.records[0] is ds.records[0] and out.records[1].sha256 == ds.records[1].sha256
    assert relabel(ds, ds.labels).key == ds.key
    with pytest.raises(ValueError, match="1 labels for 2 images"):
        relabel(ds, ["x"])


def test_duplicate_content_kept_with_both_labels(tmp_path):
    data = rgb_png(color=(42, 42, 42))
    write(tmp_path / "a" / "same.png", data)
    write(tmp_path / "b" / "same.png", data)
    ds = load_folder(tmp_path)
    assert [(r.label, r.name) for r in ds.records] == [("a", "a/same.png"), ("b", "b/same.png")]
    assert ds.records[0].sha256 == ds.records[1].sha256
    assert ds.records[0] != ds.records[1]


def test_missing_or_file_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "nope")
    f = write(tmp_path / "f.png", rgb_png())
    with pytest.raises(NotADirectoryError):
        load_folder(f)


def test_progress_callback(tmp_path):
    for i in range(3):
        write(tmp_path / f"{i}.png", rgb_png())
    calls = []
    load_folder(tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_load_uploads():
    good = rgb_jpeg()
    ds = load_uploads(
        [("z.jpg", good), ("notes.png", b"text, not pixels"), ("a.png", rgb_png()), ("e.gif", b"")],
        label="mine",
    )
    assert [r.name for r in ds.records] == ["z.jpg", "a.png"]  # input order kept
    assert ds.labels == ["mine", "mine"] and ds.is_labelled and ds.classes == ["mine"]
    assert ds.root is None
    r = ds.records[0]
    assert r.path is None and r.data == good and r.read_bytes() == good
    assert "data=" not in repr(r)
    assert {f.name for f in ds.failures} == {"notes.png", "e.gif"}
    unl = load_uploads([("a.png", rgb_png())])
    assert unl.labels == [""] and not unl.is_labelled


def test_record_equality_ignores_data():
    a = ImageRecord("ab", "x.png", "", None, data=b"1")
    b = ImageRecord("ab", "x.png", "", None, data=b"2")
    assert a == b and hash(a) == hash(b)
    with pytest.raises(ValueError):
        ImageRecord("ab", "x.png", "", None).read_bytes()


def test_validating_50_small_pngs_is_fast(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(50):
        arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        write(tmp_path / "c" / f"{i:02d}.png", encode(Image.fromarray(arr), "PNG"))
    t0 = time.perf_counter()
    ds = load_folder(tmp_path)
    assert time.perf_counter() - t0 < 1.0
    assert len(ds) == 50 and not ds.failures


# ------------------------------------------------------------------------------------------------
# thumbnail / data URI
# ------------------------------------------------------------------------------------------------


def test_thumbnail_and_data_uri():
    src = two_tone(400, 200)
    th = thumbnail(src, 96)
    assert th.size == (96, 48) and src.size == (400, 200)
    assert thumbnail(two_tone(20, 10)).size == (20, 10)  # never enlarged

    uri = to_data_uri(th)
    assert uri.startswith("data:image/jpeg;base64,")
    back = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert back.format == "JPEG" and back.size == (96, 48)

    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    jpg = Image.open(io.BytesIO(base64.b64decode(to_data_uri(rgba).split(",", 1)[1])))
    assert close(jpg.convert("RGB").getpixel((1, 1)), (255, 255, 255), tol=3)
    png_uri = to_data_uri(rgba, fmt="png")
    assert png_uri.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(png_uri.split(",", 1)[1]))).mode == "RGBA"


def test_core_images_does_not_import_streamlit():
    import core.io.images as mod

    src = Path(mod.__file__).read_text()
    assert "streamlit" not in src.replace("Nothing here imports Streamlit", "")
