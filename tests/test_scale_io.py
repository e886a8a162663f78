"""Datasets at scale: the file index (an unchanged folder is not re-read), reduced-size JPEG
decoding, and bounded-memory extraction (streamed to the store, read back in chunks)."""
from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import timm
from PIL import Image

import core.io.images as images_mod
from core.io.hashing import FileIndex
from core.io.images import decode_image, load_folder
from core.io.store import FeatureKey, FeatureStore
from core.models.extract import extract_features
from core.models.spec import BackboneSpec
from core.models.timm_backbone import TimmBackbone, timm_spec_fields


def _jpeg(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = (np.stack([np.sin(xx / 17.0), np.cos(yy / 11.0), np.sin((xx + yy) / 23.0)], -1) * 100 + 128
         + rng.normal(0, 4, (h, w, 3)))
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tree(root, n=6):
    for i in range(n):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.jpg").write_bytes(_jpeg(64, 48, seed=i))
    return root


# ---- file index -----------------------------------------------------------------------------------
def test_unchanged_folder_is_not_read_again(tmp_path, monkeypatch):
    root = _tree(tmp_path / "ds")
    (root / "c0" / "bad.jpg").write_bytes(b"not an image")
    index = FileIndex(tmp_path / "files.sqlite")
    first = load_folder(root, index=index)
    reads = []
    real = images_mod.Path.read_bytes
    monkeypatch.setattr(images_mod.Path, "read_bytes", lambda self: reads.append(self) or real(self))
    again = load_folder(root, index=index)
    assert reads == []  # listing and stat only
    assert [(r.sha256, r.name, r.label) for r in again.records] == [(r.sha256, r.name, r.label) for r in first.records]
    assert [(f.name, f.reason) for f in again.failures] == [(f.name, f.reason) for f in first.failures]


def test_changed_file_is_read_and_hashed_again(tmp_path):
    root = _tree(tmp_path / "ds")
    index = FileIndex(tmp_path / "files.sqlite")
    before = {r.name: r.sha256 for r in load_folder(root, index=index).records}
    p = root / "c0" / "0.jpg"
    p.write_bytes(_jpeg(80, 40, seed=99))
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    after = {r.name: r.sha256 for r in load_folder(root, index=index).records}
    assert after["c0/0.jpg"] != before["c0/0.jpg"]
    assert {k: v for k, v in after.items() if k != "c0/0.jpg"} == {k: v for k, v in before.items() if k != "c0/0.jpg"}
    import hashlib
    assert after["c0/0.jpg"] == hashlib.sha256(p.read_bytes()).hexdigest()


# ---- reduced-size JPEG decoding -------------------------------------------------------------------
def test_draft_decode_of_a_large_jpeg_is_close_to_the_full_decode():
    data = _jpeg(1600, 1200)
    full = decode_image(data, "big.jpg")
    small = decode_image(data, "big.jpg", draft=224)
    assert full.size == (1600, 1200) and min(small.size) >= 224 and small.size[0] < 1600
    a = np.asarray(full.resize((224, 224), Image.Resampling.BICUBIC), np.float32)
    b = np.asarray(small.resize((224, 224), Image.Resampling.BICUBIC), np.float32)
    assert np.abs(a - b).mean() < 3.0  # grey levels out of 255


def test_draft_leaves_small_jpegs_and_pngs_alone():
    data = _jpeg(400, 300)  # short side < 2 x 224
    assert np.array_equal(np.asarray(decode_image(data, "a.jpg", draft=224)), np.asarray(decode_image(data, "a.jpg")))


def test_draft_still_detects_a_truncated_jpeg():
    data = _jpeg(1600, 1200)
    with pytest.raises(Exception, match="truncated"):
        decode_image(data[: len(data) // 2], "cut.jpg", draft=224)


# ---- bounded-memory extraction --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cnn():
    model = timm.create_model("mobilenetv2_050", pretrained=False, num_classes=10)
    spec = BackboneSpec(name="tiny-cnn", source="local", architecture="mobilenetv2_050", weights_name="random",
                        weights_sha256="0" * 64, description="test", **timm_spec_fields(model, input_size=64))
    return TimmBackbone(model, spec)


def test_streamed_extraction_equals_in_memory_and_fills_the_store(tiny_cnn, tmp_path):
    recs = load_folder(_tree(tmp_path / "ds", 10), use_index=False).records
    ref = extract_features(tiny_cnn, recs, kinds=("embedding", "patch_tokens"), store=None, batch_size=4)
    st = FeatureStore(tmp_path / "f.sqlite")
    only = extract_features(tiny_cnn, recs, kinds=("embedding", "patch_tokens"), store=st, batch_size=4, keep=False)
    assert only.arrays == {} and only.stats.n_computed == 10 and len(st) == 20
    back = extract_features(tiny_cnn, recs, kinds=("embedding", "patch_tokens"), store=st, batch_size=4)
    assert back.stats.forwards == 0
    for k in ("embedding", "patch_tokens"):
        np.testing.assert_array_equal(back[k], ref[k])


def test_patch_tokens_as_float16(tiny_cnn, tmp_path):
    recs = load_folder(_tree(tmp_path / "ds", 4), use_index=False).records
    st = FeatureStore(tmp_path / "f.sqlite")
    ref = extract_features(tiny_cnn, recs, kinds=("patch_tokens",), store=None)
    half = extract_features(tiny_cnn, recs, kinds=("patch_tokens",), store=st, half_tokens=True)
    assert half["patch_tokens"].dtype == np.float16
    np.testing.assert_allclose(half["patch_tokens"].astype(np.float32), ref["patch_tokens"], rtol=1e-2, atol=1e-3)


def test_read_rows_reports_missing_entries(tmp_path):
    st = FeatureStore(tmp_path / "f.sqlite")
    keys = [FeatureKey("w", "p", 0, "embedding", str(i)) for i in range(3)]
    st.put_many({keys[0]: np.ones(4, np.float32), keys[2]: np.full(4, 2, np.float32)})
    arr, missing = st.read_rows(keys)
    assert missing == [1] and arr.shape == (3, 4) and arr[2, 0] == 2 and st.contains(keys) == [True, False, True]


def test_decoding_on_worker_processes_gives_the_same_features(tiny_cnn, tmp_path):
    recs = load_folder(_tree(tmp_path / "ds", 10), use_index=False).records
    (tmp_path / "ds" / "c0" / "0.jpg").write_bytes(b"gone bad")  # fails on the worker, reported by name
    inline = extract_features(tiny_cnn, recs, store=None, batch_size=4, decode_workers=0, prefetch=False)
    procs = extract_features(tiny_cnn, recs, store=None, batch_size=4, decode_workers=2)
    np.testing.assert_array_equal(procs["embedding"], inline["embedding"])
    assert [f.name for f in procs.failures] == [f.name for f in inline.failures] == ["c0/0.jpg"]
