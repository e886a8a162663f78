"""FeatureStore and extraction: cache hits do no forward, corruption is recomputed, bad files
are reported and skipped, concurrent writers do not corrupt the store."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from core.io.images import ImageRecord, load_folder
from core.io.store import FeatureKey, FeatureStore
from core.models.extract import extract_features
from tests.conftest import ROOT, STAMPS


def test_roundtrip_and_checksum(tmp_path):
    st = FeatureStore(tmp_path / "f.sqlite")
    k = FeatureKey("w@1", "prep", 3, "patch_tokens", "ab" * 32)
    a = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    st.put_many({k: a})
    np.testing.assert_array_equal(st.get_many([k])[k], a)
    with sqlite3.connect(st.path) as c:  # flip bytes behind the store's back
        c.execute("UPDATE features SET data = ? WHERE key = ?", (b"\0" * a.nbytes, str(k)))
    assert st.get_many([k]) == {}
    assert st.corrupt_dropped == 1 and len(st) == 0


def test_crash_mid_write_leaves_no_entry(tmp_path):
    """A process killed inside a write transaction leaves nothing that reads as valid."""
    path = tmp_path / "f.sqlite"
    code = f"""
import os, signal, numpy as np
from core.io.store import FeatureStore
st = FeatureStore({str(path)!r})
conn = st._conn()
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO features VALUES ('half', '<f4', '3', 'x', zeroblob(12), 0)")
os.kill(os.getpid(), signal.SIGKILL)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert r.returncode == -9
    st = FeatureStore(path)
    assert len(st) == 0
    k = FeatureKey("w", "p", 0, "embedding", "1")
    st.put_many({k: np.ones(3, np.float32)})  # the store still works after the crash
    assert len(st.get_many([k])) == 1


@pytest.mark.slow
def test_second_extraction_is_all_cache_hits(get_backbone, stamps, tmp_path):
    b = get_backbone("mobilenetv2")
    st = FeatureStore(tmp_path / "f.sqlite")
    kinds = ("embedding", "patch_tokens", "logits")
    first = extract_features(b, stamps.records, kinds=kinds, store=st, batch_size=16)
    assert first.stats.forwards == 3 and first.stats.n_computed == 48
    second = extract_features(b, stamps.records, kinds=kinds, store=FeatureStore(tmp_path / "f.sqlite"))
    assert second.stats.forwards == 0 and second.stats.n_cached == 48
    for k in kinds:
        np.testing.assert_array_equal(first[k], second[k])
    # the cached features equal a direct forward pass
    x = b.preprocess([r.decode() for r in stamps.records[:4]])
    np.testing.assert_allclose(second["embedding"][:4], b.embed(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_corrupt_entry_is_recomputed(get_backbone, stamps, tmp_path):
    b = get_backbone("efficientnet_lite0")
    st = FeatureStore(tmp_path / "f.sqlite")
    recs = stamps.records[:6]
    ref = extract_features(b, recs, store=st)
    with sqlite3.connect(st.path) as c:
        key = c.execute("SELECT key FROM features LIMIT 1").fetchone()[0]
        c.execute("UPDATE features SET data = substr(data, 1, 100) WHERE key = ?", (key,))
    again = extract_features(b, recs, store=st)
    assert again.stats.n_computed == 1 and again.stats.forwards == 1
    np.testing.assert_allclose(again["embedding"], ref["embedding"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_bad_files_are_reported_and_the_rest_goes_on(get_backbone, tmp_path):
    root = tmp_path / "ds"
    for cls in ("birds", "fish"):
        (root / cls).mkdir(parents=True)
        for p in sorted((STAMPS / cls).glob("*.png"))[:2]:
            (root / cls / p.name).write_bytes(p.read_bytes())
    (root / "birds" / "empty.png").write_bytes(b"")
    (root / "fish" / "notes.jpg").write_text("not an image")
    good = (STAMPS / "fish").glob("*.png").__next__().read_bytes()
    (root / "fish" / "truncated.png").write_bytes(good[: len(good) // 2])
    ds = load_folder(root)
    assert sorted(f.name for f in ds.failures) == ["birds/empty.png", "fish/notes.jpg", "fish/truncated.png"]
    assert len(ds.records) == 4
    # a file that breaks after listing is reported by extraction, the batch goes on
    gone = ImageRecord(sha256="0" * 64, name="fish/vanished.png", label="fish", path=root / "fish" / "vanished.png")
    fs = extract_features(get_backbone("mobilenetv2"), ds.records + [gone], store=FeatureStore(tmp_path / "f.sqlite"))
    assert [f.name for f in fs.failures] == ["fish/vanished.png"]
    assert fs["embedding"].shape == (4, 1280) and fs.names == [r.name for r in ds.records]


_WRITER = """
import sys, numpy as np
from core.io.store import FeatureKey, FeatureStore
path, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
st = FeatureStore(path)
rng = np.random.default_rng(seed)
for i in range(n):
    st.put_many({FeatureKey("w", "p", 0, "embedding", f"{seed}-{i}-{j}"): rng.normal(size=256).astype(np.float32)
                 for j in range(8)})
    st.get_many([FeatureKey("w", "p", 0, "embedding", f"{1 - seed}-{i}-0")])
"""


def test_two_processes_writing_at_once(tmp_path):
    # plain interpreters, not multiprocessing: spawn re-runs whatever __main__ is, and after the
    # AppTest tests that can be a page script
    path = str(tmp_path / "f.sqlite")
    FeatureStore(path)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, path, str(s), "40"], cwd=ROOT) for s in (0, 1)]
    for p in procs:
        assert p.wait(120) == 0
    st = FeatureStore(path)
    assert len(st) == 2 * 40 * 8
    keys = [FeatureKey("w", "p", 0, "embedding", f"{s}-{i}-{j}") for s in (0, 1) for i in range(40) for j in range(8)]
    assert len(st.get_many(keys)) == len(keys) and st.corrupt_dropped == 0


@pytest.mark.slow
def test_prefetch_thread_and_inline_decoding_agree(get_backbone, stamps):
    b = get_backbone("efficientnet_lite0")
    recs = stamps.records[:10]
    inline = extract_features(b, recs, batch_size=4, prefetch=False)
    ahead = extract_features(b, recs, batch_size=4, prefetch=True)
    assert inline.stats.forwards == ahead.stats.forwards == 3
    np.testing.assert_array_equal(inline["embedding"], ahead["embedding"])
    assert inline.names == ahead.names == [r.name for r in recs]
