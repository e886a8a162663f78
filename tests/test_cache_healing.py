"""Every file of the cache folder damaged every way, then `backbone-lens export` and a page opened.

A real cache is made once from the sample stamps with the real MobileNetV2 (features.sqlite, the file
index files.sqlite, the hash memos in hashes/, an imported set made from the export). Each damage of
the table is applied to a fresh copy; then

* `backbone-lens --cache COPY export ...` (in-process `core.cli.main`) either succeeds with the same
  embeddings as before the damage, saying what it moved aside in at most one warning line each
  ("healed"), or exits 2 with one line saying what to do ("named");
* the Embeddings page opened through AppTest on the copy shows no exception: when healed, no error
  either; when named, that one line as its only error (a damaged imported set: in the sidebar).

The fast tests below the table check the pieces on their own (no weights).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.io import sqlite_heal
from core.io.heal import CacheRecoveredWarning
from tests.conftest import ROOT, STAMPS

SET = "stamps_emb"  # the imported set in the template cache


# ---- the real cache, made once ------------------------------------------------------------------
def _cli(cache: Path, *argv: str) -> tuple[int, list[str]]:
    """``backbone-lens --cache CACHE argv...`` in this process: (exit status, the warning / error lines)."""
    from core.cli import main

    err = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        rc = main(["--cache", str(cache), *argv])
    text = err.getvalue()
    assert "Traceback" not in text, text
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines()]
    return rc, [ln for ln in lines if ln.startswith(("warning:", "error:"))]


def _export(cache: Path, out: Path) -> tuple[int, list[str]]:
    return _cli(cache, "export", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--out", str(out))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    """A real cache of the stamps (MobileNetV2 embeddings, file index, hash memo, an imported set) and
    the reference export."""
    root = tmp_path_factory.mktemp("heal")
    cache = root / "cache"
    cache.mkdir()
    ref = root / "ref.npz"
    rc, lines = _export(cache, ref)
    assert rc == 0 and lines == [], lines
    rc, lines = _cli(cache, "import", str(ref), "--name", SET)
    assert rc == 0, lines
    with np.load(ref) as z:
        reference = {k: z[k] for k in z.files}
    assert reference["embeddings"].shape == (48, 1280)
    return cache, reference


@pytest.fixture
def cache(template, tmp_path) -> Path:
    """A fresh copy of the template cache."""
    dst = tmp_path / "cache"
    shutil.copytree(template[0], dst, symlinks=True)
    return dst


# ---- damage functions ----------------------------------------------------------------------------
def _garbage_header(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[0:16] = os.urandom(16)
    p.write_bytes(bytes(b))


def _truncated(p: Path) -> None:
    os.truncate(p, p.stat().st_size // 2)


def _zero_length(p: Path) -> None:
    os.truncate(p, 0)


def _directory(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "something").write_text("a folder where the database belongs")


def _other_schema(p: Path) -> None:
    """An older or foreign file of the same name: the table exists with other columns."""
    p.unlink()
    table = {"features.sqlite": "features", "files.sqlite": "files"}.get(p.name, "t")
    with contextlib.closing(sqlite3.connect(p)) as c:
        c.execute(f"CREATE TABLE {table} (key TEXT PRIMARY KEY, data BLOB)")
        c.execute(f"INSERT INTO {table} VALUES ('x', x'00')")
        c.commit()


def _foreign_db(p: Path) -> None:
    p.unlink()
    with contextlib.closing(sqlite3.connect(p)) as c:
        c.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
        c.commit()


def _leave_wal(p: Path) -> Path:
    """Rewrite some rows in a process that dies before checkpointing, so ``p``'s WAL holds them."""
    table = "features" if p.name.startswith("features") else "files"
    code = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('PRAGMA wal_autocheckpoint=0'); "
            f"rows = c.execute('SELECT * FROM {table} ORDER BY rowid LIMIT 16').fetchall(); "
            f"c.execute('DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY rowid LIMIT 16)'); "
            f"c.executemany('INSERT INTO {table} VALUES (' + ','.join('?' * len(rows[0])) + ')', rows); "
            "os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(p)], check=True, timeout=120)
    wal = p.with_name(p.name + "-wal")
    assert wal.stat().st_size > 0
    return wal


def _wal_truncated(p: Path) -> None:
    wal = _leave_wal(p)
    os.truncate(wal, wal.stat().st_size // 2 + 100)


def _wal_garbage(p: Path) -> None:
    wal = _leave_wal(p)
    wal.write_bytes(os.urandom(wal.stat().st_size))


def _wal_directory(p: Path) -> None:
    p.with_name(p.name + "-wal").mkdir()


def _shm_garbage(p: Path) -> None:
    _leave_wal(p)
    p.with_name(p.name + "-shm").write_bytes(os.urandom(32768))


def _journal_garbage(p: Path) -> None:
    p.with_name(p.name + "-journal").write_bytes(os.urandom(5000))


def _journal_truncated(p: Path) -> None:
    """A rollback journal cut inside its header (its magic, then nothing)."""
    p.with_name(p.name + "-journal").write_bytes(bytes.fromhex("d9d505f920a163d7") + b"\0" * 12)


def _memo(cache: Path) -> Path:
    (memo,) = sorted((cache / "hashes").glob("sha256-*.json"))
    return memo


def _vectors(cache: Path) -> Path:
    """The imported set's vectors file (``vectors.f32`` here: a set this small is kept in float32)."""
    (vectors,) = (cache / "imported" / SET).glob("vectors.f*")
    return vectors


def _folder_is_file(p: Path) -> None:
    shutil.rmtree(p)
    p.write_text("a file where a folder belongs")


def _locked_briefly(cache: Path) -> Callable[[], None]:
    """Another process holds the feature cache's write lock for 3 s while 8 images must be written."""
    return _hold_lock(cache, seconds=3)


def _hold_lock(cache: Path, seconds: float) -> Callable[[], None]:
    p = cache / "features.sqlite"
    with contextlib.closing(sqlite3.connect(p, isolation_level=None)) as c:
        c.execute("DELETE FROM features WHERE rowid IN (SELECT rowid FROM features LIMIT 8)")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(float(sys.argv[2])); c.execute('COMMIT')",
         str(p), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return lambda: (holder.kill(), holder.wait())  # type: ignore[func-returns-value]


@dataclass(frozen=True)
class Damage:
    name: str
    apply: Callable[[Path], object]  # (cache folder) -> optional clean-up callable
    cli_warning: str | None = None   # healed: a warning line of `export` must contain this
    cli_error: str | None = None     # named: `export` exits 2 with one line containing this


def _on(file: str, fn: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda cache: fn(cache / file)


DAMAGES = [
    *[Damage(f"{short}-{fn.__name__.strip('_')}", _on(file, fn), warn)
      for file, short in (("features.sqlite", "features"), ("files.sqlite", "files"))
      for fn, warn in ((_garbage_header, "moved it to"), (_truncated, "moved it to"), (_zero_length, None),
                       (_directory, "a folder where the database file belongs"),
                       (_other_schema, "older or foreign schema"), (_foreign_db, "another program's database"),
                       (_wal_truncated, None), (_wal_garbage, None), (_wal_directory, "not a regular file"),
                       (_shm_garbage, None), (_journal_garbage, None), (_journal_truncated, None))],
    Damage("hash-memo-garbage", lambda c: _memo(c).write_bytes(os.urandom(100))),
    Damage("hash-memo-empty", lambda c: _zero_length(_memo(c))),
    Damage("hash-memo-truncated", lambda c: _truncated(_memo(c))),
    Damage("hash-memo-not-a-record", lambda c: _memo(c).write_text(json.dumps([1, 2, 3]))),
    Damage("hash-memo-directory", lambda c: _directory(_memo(c)), "hash memo"),
    Damage("hashes-folder-is-a-file", lambda c: _folder_is_file(c / "hashes"), "hashes folder"),
    Damage("imported-folder-is-a-file", lambda c: _folder_is_file(c / "imported")),
    Damage("imported-norms-missing", lambda c: (c / "imported" / SET / "norms.npy").unlink()),
    Damage("imported-norms-truncated", lambda c: _truncated(c / "imported" / SET / "norms.npy")),
    Damage("imported-vectors-truncated", lambda c: _truncated(_vectors(c))),
    Damage("imported-meta-missing", lambda c: (c / "imported" / SET / "meta.json").unlink()),
    Damage("imported-meta-garbage", lambda c: (c / "imported" / SET / "meta.json").write_bytes(os.urandom(50))),
    Damage("imported-codes-truncated", lambda c: _truncated(c / "imported" / SET / "codes.npy")),
    Damage("imported-paths-truncated", lambda c: _truncated(c / "imported" / SET / "paths.bin")),
    Damage("locked-briefly", _locked_briefly),
    Damage("locked-past-the-timeout", lambda c: _hold_lock(c, seconds=600), cli_error="is locked by another process"),
    Damage("read-only-folder", lambda c: _read_only(c), cli_error="is read-only"),
]
IMPORTED_DAMAGE = {"imported-vectors-truncated": "vectors.f32 holds", "imported-meta-missing": "meta.json is missing",
                   "imported-meta-garbage": "meta.json is unreadable", "imported-codes-truncated": "codes.npy",
                   "imported-paths-truncated": "paths.bin holds"}


def _read_only(folder: Path) -> Callable[[], None]:
    """Make ``folder`` read-only for this process: a read-only bind mount (root), else ``chmod a-w``."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        return lambda: folder.chmod(mode)
    r = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if r.returncode == 0:
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True)
        if r.returncode == 0:
            return lambda: subprocess.run(["umount", str(folder)], check=True)
        subprocess.run(["umount", str(folder)], check=True)
    pytest.skip(f"running as root without mount permission ({r.stderr.decode().strip()}): no way to make a folder read-only")


@pytest.fixture
def damaged(request, cache, monkeypatch):
    """The cache copy with one damage applied (undone at the end: locks released, mounts removed)."""
    d: Damage = request.param
    monkeypatch.setattr(sqlite_heal, "BUSY_TIMEOUT_S", 3.0 if d.name == "locked-past-the-timeout" else 60.0)
    undo = d.apply(cache)
    yield d, cache
    if callable(undo):
        undo()


# ---- the page ------------------------------------------------------------------------------------
def open_page(cache: Path, monkeypatch, **query: str):
    """The Embeddings page opened through AppTest on the cache folder ``cache``, as a fresh server
    process would (Streamlit's caches emptied). The one place that knows the page's file."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BACKBONE_LENS_CACHE", str(cache))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "pages" / "embeddings" / "page.py"), default_timeout=300)
    for k, v in query.items():
        at.query_params[k] = v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheRecoveredWarning)  # a server logs them; the page must just work
        return at.run()


# ---- the table ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("damaged", DAMAGES, ids=[d.name for d in DAMAGES], indirect=True)
def test_export_heals_or_names_the_damage(damaged, template, tmp_path):
    d, cache = damaged
    out = tmp_path / "out.npz"
    rc, lines = _export(cache, out)
    if d.cli_error:
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:") and d.cli_error in lines[0], lines
        assert "--cache" in lines[0]  # says what to do
        assert not out.exists()
        return
    assert rc == 0, lines
    assert all(ln.startswith("warning:") for ln in lines), lines
    if d.cli_warning:
        assert len(lines) == 1 and d.cli_warning in lines[0] and ".corrupt-" in lines[0], lines
        moved = Path(lines[0].split("moved it to ")[1].split(" and started")[0])
        assert moved.exists()  # kept for inspection
    with np.load(out) as z:
        np.testing.assert_allclose(z["embeddings"], template[1]["embeddings"], rtol=1e-4, atol=1e-5)
        assert list(z["paths"]) == list(template[1]["paths"])
    rc, lines = _export(cache, out)  # healed for good: the next run is quiet
    assert rc == 0 and lines == [], lines


@pytest.mark.slow
@pytest.mark.parametrize("damaged", DAMAGES, ids=[d.name for d in DAMAGES], indirect=True)
def test_page_opens_on_the_damaged_cache(damaged, monkeypatch):
    d, cache = damaged
    on_set = d.name in IMPORTED_DAMAGE or d.name.startswith("imported-norms")
    at = open_page(cache, monkeypatch, **({"dataset": SET} if on_set else {}))
    assert not at.exception, [e.message for e in at.exception]
    if d.cli_error:  # named in one line, with what to do, and the page stops there
        assert [e.value for e in at.error if d.cli_error in e.value and "--cache" in e.value and "\n" not in e.value] \
            and len(at.error) == 1, [e.value for e in at.error]
        return
    assert not at.error, [e.value for e in at.error]
    if d.name in IMPORTED_DAMAGE:  # left out of the list, so the link's set is "not here", and the sidebar says why
        warnings_ = [w.value for w in at.sidebar.warning]
        assert any(IMPORTED_DAMAGE[d.name] in w and f"--name {SET}" in w for w in warnings_), warnings_
    elif on_set:  # healed: the set's map is shown
        assert any(f"imported set **{SET}**" in m.value and "48 points" in m.value for m in at.markdown), [m.value for m in at.markdown]
    else:
        assert any(m.value.startswith("**PCA of mobilenetv2 embeddings**") and "48 images" in m.value for m in at.markdown)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMPORTED_DAMAGE))
def test_a_damaged_imported_set_is_named_with_the_command_that_reimports_it(template, cache, name):
    from core.io.imports import ImportedSetDamagedError, imported_problems, list_imported, open_imported

    next(d for d in DAMAGES if d.name == name).apply(cache)
    assert [s.name for s in list_imported(cache)] == []
    (line,) = imported_problems(cache)
    assert IMPORTED_DAMAGE[name] in line and "\n" not in line and f"--name {SET}" in line and "backbone-lens import" in line
    with pytest.raises(ImportedSetDamagedError, match=IMPORTED_DAMAGE[name]):
        open_imported(SET, cache)
    assert (cache / "imported" / SET).is_dir()  # nothing deleted


@pytest.mark.slow
@pytest.mark.parametrize("name", ["imported-norms-missing", "imported-norms-truncated"])
def test_lost_norms_of_an_imported_set_are_recomputed(template, cache, name):
    from core.io.imports import list_imported, open_imported

    next(d for d in DAMAGES if d.name == name).apply(cache)
    with pytest.warns(CacheRecoveredWarning, match="recomputed from its vectors"):
        (s,) = list_imported(cache)
    stored = template[1]["embeddings"].astype(s.vectors.dtype).astype(np.float32)  # as kept (float32 for a set this small)
    want = np.linalg.norm(stored, axis=1)
    np.testing.assert_allclose(s.norms, want, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheRecoveredWarning)
        assert open_imported(SET, cache).n == 48  # healed for good


@pytest.mark.slow
def test_a_garbage_file_index_heals_through_the_command_line_in_a_fresh_process(template, cache, tmp_path):
    """The issue's case, as a user meets it: random bytes over files.sqlite's header, then `export`
    in its own process: one warning line, the same embeddings."""
    _garbage_header(cache / "files.sqlite")
    out = tmp_path / "e.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "core.cli", "--cache", str(cache), "export", "--backbone", "mobilenetv2",
                        "--images", str(STAMPS), "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "file index" in warn[0] and "files.sqlite.corrupt-" in warn[0], r.stderr
    with np.load(out) as z:
        np.testing.assert_allclose(z["embeddings"], template[1]["embeddings"], rtol=1e-4, atol=1e-5)


# ---- the pieces, fast ----------------------------------------------------------------------------
TABLES = {"t": ("k", "v")}
CREATE = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB)"


def _db(tmp_path: Path, n: int = 200) -> Path:
    p = tmp_path / "x.sqlite"
    db = sqlite_heal.Database(p, "test database", TABLES, CREATE)
    db.run(lambda c: c.executemany("INSERT INTO t VALUES (?, ?)", [(str(i), os.urandom(500)) for i in range(n)]))
    db.close()
    return p


@pytest.mark.parametrize("damage,why", [(_other_schema, "older or foreign schema"), (_foreign_db, "another program's"),
                                        (_directory, "a folder where"), (_garbage_header, "not an SQLite database"),
                                        (_truncated, "truncated")])
def test_database_damage_is_moved_aside_and_rebuilt(tmp_path, damage, why):
    p = _db(tmp_path)
    damage(p)
    with pytest.warns(CacheRecoveredWarning, match=why) as w:
        db = sqlite_heal.Database(p, "test database", TABLES, CREATE)
    assert len(w) == 1 and str(db.moved_aside) in str(w[0].message)
    assert db.moved_aside is not None and db.moved_aside.exists()
    assert db.run(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 0
    db.close()


def test_damage_found_while_in_use_heals_once_and_retries(tmp_path):
    """A file damaged under an open store (another process wrote over it): the next operation moves
    it aside once, reconnects and runs on a fresh file; other threads follow the new file."""
    import threading

    p = _db(tmp_path)
    db = sqlite_heal.Database(p, "test database", TABLES, CREATE)
    assert db.run(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 200
    with open(p, "r+b") as f:  # the same inode, its pages overwritten
        f.seek(4096)
        f.write(os.urandom(p.stat().st_size - 4096))
    counts: list[int] = []

    def count() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheRecoveredWarning)
            counts.append(db.run(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]))

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [0, 0, 0, 0]
    assert len([q for q in tmp_path.iterdir() if q.name.startswith("x.sqlite.corrupt-") and not q.name.endswith(("-wal", "-shm"))]) == 1
    db.close()


def test_full_disk_and_lock_errors_are_one_line(tmp_path, monkeypatch):
    from core.errors import CacheError, DiskFullError

    p = tmp_path / "x.sqlite"
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    err = sqlite_heal.translate(full, p, "feature cache")
    assert isinstance(err, DiskFullError) and str(err) == (
        f"the disk holding the cache ({tmp_path}) is full: free space or point --cache / BACKBONE_LENS_CACHE elsewhere")
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
    err = sqlite_heal.translate(busy, p, "feature cache")
    assert isinstance(err, CacheError) and "locked by another process" in str(err)
    assert sqlite_heal.translate(sqlite3.DatabaseError("database disk image is malformed"), p, "x") is None  # damage: healed
    assert isinstance(sqlite_heal.translate(OSError(28, "No space left on device"), p, "x"), DiskFullError)
    assert isinstance(sqlite_heal.translate(OSError(27, "File too large"), p, "x"), DiskFullError)


def test_hash_memo_damage_is_rewritten(tmp_path):
    from core.io.hashing import _hash_file, file_sha256

    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(1000))
    hashes = tmp_path / "hashes"
    want = _hash_file(f)
    assert file_sha256(f, hashes) == want
    (memo,) = hashes.iterdir()
    for bad in (b"", b"{", b"[1, 2]", b'{"key": 1, "sha256": 2}', os.urandom(64)):
        memo.write_bytes(bad)
        assert file_sha256(f, hashes) == want and json.loads(memo.read_text())["sha256"] == want
    rec = json.loads(memo.read_text())
    memo.write_text(json.dumps({**rec, "sha256": "0" * 63}))  # not a digest
    assert file_sha256(f, hashes) == want


def test_converted_weights_checks(tmp_path):
    """The converted-weights check: a payload byte changed, truncation, garbage, a folder."""
    import hashlib

    import torch
    from safetensors.torch import save

    from core.models.dinov2_onnx import _payload_start, converted_problem

    sd = {"a": torch.arange(1000, dtype=torch.float32), "b": torch.ones(10, 10)}
    meta = {"format": "backbone-lens dinov2_onnx v1"}
    data = save(sd, metadata=meta)
    meta["payload_sha256"] = hashlib.sha256(data[_payload_start(data):]).hexdigest()
    p = tmp_path / "w.safetensors"
    p.write_bytes(save(sd, metadata=meta))
    assert converted_problem(p) is None
    good = p.read_bytes()
    p.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    assert "digest" in (converted_problem(p) or "")
    p.write_bytes(good[: len(good) // 2])
    assert "truncated" in (converted_problem(p) or "")
    p.write_bytes(os.urandom(len(good)))
    assert converted_problem(p) is not None
    p.write_bytes(b"")
    assert converted_problem(p) is not None
    p.unlink()
    p.mkdir()
    assert converted_problem(p) == "not a regular file"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage_header", "zero_length", "directory", "weights_folder_is_a_file"])
def test_damaged_converted_weights_are_moved_aside_and_converted_again(tmp_path, damage):
    """The ViT's converted weights (the only file under weights/) damaged: the next load moves it
    aside with one warning and converts the ONNX again; the new file carries its payload digest."""
    from core.models.builtin import builtin
    from core.models.dinov2_onnx import converted_problem, load_or_convert

    onnx = builtin("vits14_saliency").weights_path()
    cache = tmp_path / "cache"
    good, sha = load_or_convert(Path(os.environ["BACKBONE_LENS_CACHE"]), onnx_path=onnx)  # the shared, converted file
    target = cache / "weights" / good.name
    target.parent.mkdir(parents=True)
    shutil.copyfile(good, target)
    if damage == "weights_folder_is_a_file":
        _folder_is_file(cache / "weights")
    else:
        globals()[f"_{damage}"](target)
    with pytest.warns(CacheRecoveredWarning, match="weights") as w:
        path, sha2 = load_or_convert(cache, onnx_path=onnx)
    assert len([x for x in w if issubclass(x.category, CacheRecoveredWarning)]) == 1
    assert path == target and sha2 == sha and converted_problem(path) is None
    assert b"payload_sha256" in path.read_bytes()[:200_000]
    assert [p for p in target.parent.parent.rglob("*.corrupt-*")]  # the damaged one kept for inspection
