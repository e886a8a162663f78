"""A full disk while writing: the cache is left as it was before the failing batch (every batch's
rows written whole or not at all), and the command says the disk is full in one line.

Two ways to fill a disk: a file-size limit on the command's process (``ulimit -f``: RLIMIT_FSIZE with
SIGXFSZ ignored, so writes past it fail with EFBIG, which SQLite reports as an I/O error), which works
anywhere; and a tiny tmpfs mounted as the cache folder (ENOSPC, SQLite's "database or disk is full"),
where this machine allows mounting."""
from __future__ import annotations

import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, STAMPS

BATCH = 8
MB = 1 << 20
# the command runs on one thread, the reference on two: oneDNN's channels-last kernels sum in another order
# (differences up to ~1e-5 on tokens of up to ~6); what is checked here is which rows are kept, whole
ATOL = 1e-4


def _cli(cache: Path, *argv: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``backbone-lens --cache CACHE argv...`` in its own process, optionally under a file-size limit."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "core.cli", "--cache", str(cache), *argv], capture_output=True,
                          text=True, env=env, timeout=900, preexec_fn=limit)


def _extract_tokens(cache: Path, fsize: int | None = None) -> subprocess.CompletedProcess:
    return _cli(cache, "extract", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--kinds", "patch_tokens",
                "--batch-size", str(BATCH), fsize=fsize)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.replace("\r", "\n").splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def _stored(cache: Path) -> dict[str, np.ndarray]:
    """image sha256 -> its stored patch tokens, after an integrity check of the whole file."""
    with contextlib.closing(sqlite3.connect(cache / "features.sqlite")) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = c.execute("SELECT key, dtype, shape, data FROM features WHERE key LIKE '%|patch_tokens|%'").fetchall()
    return {k.rsplit("|", 1)[1]: np.frombuffer(d, np.dtype(t)).reshape([int(x) for x in s.split(",")]) for k, t, s, d in rows}


@pytest.fixture(scope="module")
def reference(get_backbone, stamps) -> dict[str, np.ndarray]:
    """Every stamp's MobileNetV2 patch tokens, computed without a cache."""
    from core.models.extract import extract_features

    fs = extract_features(get_backbone("mobilenetv2"), stamps.records, kinds=("patch_tokens",), batch_size=BATCH)
    return {r.sha256: fs["patch_tokens"][i] for i, r in enumerate(fs.records)}


def _check_atomic_then_resume(cache: Path, r: subprocess.CompletedProcess, reference: dict[str, np.ndarray]) -> None:
    line = _one_error_line(r)
    assert line == (f"error: the disk holding the cache ({cache}) is full: free space or point --cache / "
                    "BACKBONE_LENS_CACHE elsewhere"), line
    kept = _stored(cache)
    assert 0 < len(kept) < 48 and len(kept) % BATCH == 0, len(kept)  # whole batches, the failing one not at all
    for sha, tokens in kept.items():
        np.testing.assert_allclose(tokens, reference[sha], rtol=1e-4, atol=ATOL)
    assert not [p for p in cache.rglob("*.tmp")]


@pytest.mark.slow
def test_a_file_size_limit_leaves_whole_batches_and_says_the_disk_is_full(tmp_path, reference):
    cache = tmp_path / "cache"
    cache.mkdir()
    r = _extract_tokens(cache, fsize=5 * MB)  # a batch of 8 is 2 MB of tokens
    _check_atomic_then_resume(cache, r, reference)
    n_kept = len(_stored(cache))
    r = _extract_tokens(cache)  # space again: the rest is computed, nothing kept is redone
    assert r.returncode == 0, r.stderr
    assert f"48 images ({n_kept} cached, {48 - n_kept} extracted)" in r.stdout
    kept = _stored(cache)
    assert set(kept) == set(reference)
    for sha, tokens in kept.items():
        np.testing.assert_allclose(tokens, reference[sha], rtol=1e-4, atol=ATOL)


@pytest.mark.slow
def test_export_on_a_full_disk_writes_nothing_and_says_so(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    out = tmp_path / "out" / "emb.npz"
    args = ("export", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--out", str(out))
    assert _cli(cache, *args).returncode == 0  # the features are cached; the .npz is about 250 KB
    out.unlink()
    r = _cli(cache, *args, fsize=100_000)
    assert _one_error_line(r) == f"error: the disk holding {out} is full: free space or write the file elsewhere"
    assert list(out.parent.iterdir()) == []  # neither the file nor its temporary


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 5 MB tmpfs mounted as a fresh cache folder, where this machine lets us mount one."""
    mnt = tmp_path / "cache"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the file-size-limit test covers a full disk")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.slow
def test_a_full_tmpfs_leaves_whole_batches_and_says_the_disk_is_full(tiny_tmpfs, reference):
    r = _extract_tokens(tiny_tmpfs)
    _check_atomic_then_resume(tiny_tmpfs, r, reference)
