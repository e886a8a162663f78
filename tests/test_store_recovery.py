"""A feature cache file that SQLite cannot use is found on open, moved aside with a one-line
warning naming where it went, and a fresh cache is started; converted weights are not touched and
orphan temp files are removed. Also through the CLI (exit 0, one warning line, no traceback)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from core.io.store import (
    CacheRecoveredWarning,
    FeatureKey,
    FeatureStore,
    remove_orphan_temp_files,
)


def _filled(path: Path, n: int = 300) -> None:
    """A real cache of several pages (so truncation and page damage hit data)."""
    s = FeatureStore(path)
    rng = np.random.default_rng(0)
    s.put_many({FeatureKey("w", "p", 0, "embedding", f"{i:064x}"): rng.normal(size=256).astype(np.float32)
                for i in range(n)})
    s._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()


def _damage_header(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[0:16] = b"garbage garbage!"
    p.write_bytes(bytes(b))


def _truncate_half(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(p.stat().st_size))


def _damage_first_pages(p: Path) -> None:
    b = bytearray(p.read_bytes())
    page = int.from_bytes(b[16:18], "big")
    b[100:3 * page] = os.urandom(3 * page - 100)  # schema page and the first data pages; header kept
    p.write_bytes(bytes(b))


def _bad_page_size(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[16:18] = (1000).to_bytes(2, "big")
    p.write_bytes(bytes(b))


def _text_file(p: Path) -> None:
    p.write_text("this is not a database\n" * 100)


def _short_header(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:50])


DAMAGE = [_damage_header, _truncate_half, _garbage, _damage_first_pages, _bad_page_size, _text_file, _short_header]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_unusable_cache_is_moved_aside_and_rebuilt(tmp_path, damage):
    path = tmp_path / "features.sqlite"
    _filled(path)
    weights = tmp_path / "weights" / "vits14_saliency-0123.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"converted weights")
    damage(path)
    damaged = path.read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = FeatureStore(path)
    msgs = [str(w.message) for w in caught if issubclass(w.category, CacheRecoveredWarning)]
    assert len(msgs) == 1 and "\n" not in msgs[0], msgs
    assert s.moved_aside is not None and str(s.moved_aside) in msgs[0]
    assert s.moved_aside.read_bytes() == damaged          # kept for inspection, byte for byte
    assert len(s) == 0                                      # a fresh, working cache
    key = FeatureKey("w", "p", 0, "embedding", "0" * 64)
    s.put_many({key: np.ones(3, np.float32)})
    assert np.array_equal(s.get_many([key])[key], np.ones(3, np.float32))
    assert weights.read_bytes() == b"converted weights"     # nothing else touched
    s.close()


def test_healthy_cache_is_left_alone(tmp_path):
    path = tmp_path / "features.sqlite"
    _filled(path, n=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheRecoveredWarning)
        s = FeatureStore(path)
    assert s.moved_aside is None and len(s) == 20
    assert [p.name for p in tmp_path.iterdir() if "corrupt" in p.name] == []


def test_orphan_temp_files_are_removed_fresh_ones_kept(tmp_path):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    old = wdir / "vits14_saliency-0123.safetensors.abc123.tmp"
    old.write_bytes(b"\0" * 1024)
    t = time.time() - 3600
    os.utime(old, (t, t))
    fresh = wdir / "vits14_saliency-0123.safetensors.def456.tmp"  # a conversion running right now
    fresh.write_bytes(b"\0" * 1024)
    keep = wdir / "vits14_saliency-0123.safetensors"
    keep.write_bytes(b"w")
    os.utime(keep, (t, t))
    FeatureStore(tmp_path / "features.sqlite").close()
    assert not old.exists() and fresh.exists() and keep.exists()
    assert remove_orphan_temp_files(tmp_path, min_age_s=0) == [fresh]


@pytest.mark.slow
def test_cli_recovers_from_a_garbage_cache(tmp_path):
    """`backbone-lens extract` on a garbage cache: one warning line naming where the file went,
    then it works (a flat folder of one sample stamp, the fast CNN)."""
    from tests.conftest import ROOT, STAMPS

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "features.sqlite").write_bytes(os.urandom(8192))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    src = sorted(STAMPS.glob("*/*.png"))[0]
    (imgs / src.name).write_bytes(src.read_bytes())
    weights = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backbone-lens" / "weights"
    (cache / "weights").symlink_to(weights, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "core.cli", "--cache", str(cache), "extract", "--backbone",
                        "mobilenetv2", "--images", str(imgs)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "moved it to" in warn[0] and "features.sqlite.corrupt-" in warn[0], r.stderr
    assert "1 images (0 cached, 1 extracted)" in r.stdout


@pytest.mark.parametrize("odd_first", [True, False])
def test_entries_of_another_shape_are_dropped_for_recomputation(tmp_path, odd_first):
    """Entries of another width under the same key (another version of a model, a bad write) are
    corrupt: the rows keep the shape most entries have, the odd ones come back missing (to be
    recomputed) and are deleted, with a warning; whichever comes first."""
    s = FeatureStore(tmp_path / "f.sqlite")
    keys = [FeatureKey("w", "p", 0, "embedding", f"{i:064x}") for i in range(6)]
    odd = [0, 3] if odd_first else [2, 5]
    rng = np.random.default_rng(1)
    arrays = {k: rng.normal(size=4 if i in odd else 8).astype(np.float32) for i, k in enumerate(keys)}
    s.put_many(arrays)
    with pytest.warns(UserWarning, match="2 entries of another shape"):
        out, missing = s.read_rows(keys)
    assert out.shape == (6, 8) and missing == odd
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(out[i], 0 if i in odd else arrays[k])
    assert s.contains(keys) == [i not in odd for i in range(6)] and s.corrupt_dropped == 2
