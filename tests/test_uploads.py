"""core.io.uploads: the server's upload store (reload, isolation, bounds, expiry, damage, concurrency)."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import threading
import warnings
from pathlib import Path

import pytest

from core.io.images import load_folder
from core.io.policy import Limits
from core.io.uploads import (
    UploadLimitError,
    UploadLimits,
    UploadStore,
    UploadStoreWarning,
    UploadTokenError,
    check_token,
    clean_label,
    new_token,
    with_uploads,
)
from tests.conftest import SCENES, STAMPS

CAT = ("cat.jpg", (SCENES / "cat.jpg").read_bytes())
ASTRONAUT = ("astronaut.jpg", (SCENES / "astronaut.jpg").read_bytes())
COFFEE = ("coffee.jpg", (SCENES / "coffee.jpg").read_bytes())
ROCKET = ("rocket.jpg", (SCENES / "rocket.jpg").read_bytes())
BIRDS = [(p.name, p.read_bytes()) for p in sorted((STAMPS / "birds").glob("*.png"))]


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_tokens_are_128_random_bits_and_short_ones_are_refused():
    toks = {new_token() for _ in range(100)}
    assert len(toks) == 100 and all(len(t) == 22 and check_token(t) == t for t in toks)
    for bad in ("", "abc", "a" * 21, "../../etc/passwd-xxxxxxxxxxxxxxx", "x" * 22 + "/", 12345):
        with pytest.raises(UploadTokenError):
            check_token(bad)  # type: ignore[arg-type]


def test_a_reload_sees_the_uploads_and_another_token_sees_none(tmp_path):
    tok = new_token()
    s = UploadStore(tok, root=tmp_path)
    r = s.add([CAT, ASTRONAUT])
    assert [f.name for f in r.added] == ["cat.jpg", "astronaut.jpg"] and not r.failures and not r.duplicates
    s.add(BIRDS[:2], label="  my   birds ")
    again = UploadStore(tok, root=tmp_path)  # the page after a reload: same link, same token
    ds = again.dataset()
    assert [(x.name, x.label) for x in ds.records] == [("cat.jpg", ""), ("astronaut.jpg", ""),
                                                      (BIRDS[0][0], "my birds"), (BIRDS[1][0], "my birds")]
    assert ds.records[0].sha256 == hashlib.sha256(CAT[1]).hexdigest() and ds.records[0].read_bytes() == CAT[1]
    assert ds.records[0].decode().size == (451, 300)
    assert [(b.title, len(b)) for b in again.batches()] == [("unlabelled", 2), ("new class my birds", 2)]
    other = UploadStore(new_token(), root=tmp_path)
    assert other.batches() == [] and len(other.dataset()) == 0
    # nothing on disk names the token; a token with no uploads wrote nothing
    assert not any(tok in str(p) for p in _files(tmp_path))
    assert len(list((tmp_path / "sessions").iterdir())) == 1


def test_a_fresh_token_writes_nothing(tmp_path):
    UploadStore(new_token(), root=tmp_path / "u").dataset()
    assert not (tmp_path / "u").exists()


def test_each_upload_is_validated_once_and_one_object_of_the_session(tmp_path):
    s = UploadStore(new_token(), root=tmp_path)
    r = s.add([CAT, ("notes.png", b"hello, not an image"), ("empty.jpg", b""), ("C:\\Users\\me\\copy.jpg", CAT[1])])
    assert [f.name for f in r.added] == ["cat.jpg"]
    assert r.duplicates == ["copy.jpg"]  # same content in one batch: stored once; the path part dropped
    assert {f.name: f.reason for f in r.failures}.keys() == {"notes.png", "empty.jpg"}
    assert "not an image" in r.failures[0].reason or "not an image" in r.failures[1].reason
    r2 = s.add([CAT], label="cats")  # already in the session (unlabelled): a duplicate, not a second copy
    assert r2.added == [] and r2.duplicates == ["cat.jpg"] and s.usage() == (1, len(CAT[1]))
    with pytest.raises(ValueError, match="slash"):
        s.add([COFFEE], label="a/b")
    assert clean_label("  new\tclass ") == "new class"


def test_too_large_pictures_are_refused_by_name(tmp_path):
    s = UploadStore(new_token(), root=tmp_path, limits=UploadLimits(max_pixels=100_000))
    r = s.add([CAT, BIRDS[0]])  # the cat is 451 x 300 = 135,300 pixels
    assert [f.name for f in r.added] == [BIRDS[0][0]]
    assert r.failures[0].name == "cat.jpg" and "too large" in r.failures[0].reason


def test_limits_refuse_a_whole_batch_and_write_nothing(tmp_path):
    lim = UploadLimits(max_files=3, session_bytes=len(CAT[1]) + len(ASTRONAUT[1]) + 10,
                       total_bytes=2 * (len(CAT[1]) + len(ASTRONAUT[1])) + 10)
    a = UploadStore(new_token(), root=tmp_path, limits=lim)
    a.add([CAT])
    before = _files(tmp_path)
    with pytest.raises(UploadLimitError, match="limit of 3 per session"):
        a.add(BIRDS[:3])  # 1 + 3 files > 3, refused before decoding
    with pytest.raises(UploadLimitError, match="per session"):
        a.add([ASTRONAUT, COFFEE])  # bytes per session
    assert _files(tmp_path) == before and a.usage()[0] == 1
    a.add([ASTRONAUT])
    b = UploadStore(new_token(), root=tmp_path, limits=lim)
    b.add([CAT, ASTRONAUT])  # content is per session: b's copies count again
    c = UploadStore(new_token(), root=tmp_path, limits=lim)
    with pytest.raises(UploadLimitError, match="upload space is full"):
        c.add([COFFEE])
    assert c.usage() == (0, 0)
    a.remove_file(hashlib.sha256(ASTRONAUT[1]).hexdigest())
    assert c.add([COFFEE]).added  # space freed
    assert UploadLimits.from_limits(Limits()).ttl_s == 24 * 3600


def test_sessions_expire_24_hours_after_last_use(tmp_path):
    clock = Clock()
    old, kept = new_token(), new_token()
    UploadStore(old, root=tmp_path, clock=clock).add([CAT])
    clock.t += 3600
    UploadStore(kept, root=tmp_path, clock=clock).add([COFFEE])
    clock.t += 23 * 3600  # old: 24 h since last use (not more), kept: 23 h
    assert len(UploadStore(old, root=tmp_path, clock=clock).dataset()) == 1  # opening it is a use
    clock.t += 23.5 * 3600  # old: 23.5 h since that open; kept: 46.5 h
    assert len(UploadStore(new_token(), root=tmp_path, clock=clock).dataset()) == 0  # any open sweeps
    assert len(UploadStore(kept, root=tmp_path, clock=clock).dataset()) == 0
    assert len(UploadStore(old, root=tmp_path, clock=clock).dataset()) == 1
    assert len(list((tmp_path / "sessions").iterdir())) == 1


def test_a_damaged_stored_copy_is_dropped_with_a_warning(tmp_path):
    tok = new_token()
    UploadStore(tok, root=tmp_path).add([CAT, COFFEE, ROCKET])
    s = UploadStore(tok, root=tmp_path)
    blobs = next((tmp_path / "sessions").iterdir()) / "blobs"
    (blobs / hashlib.sha256(COFFEE[1]).hexdigest()).write_bytes(b"\x00" * len(COFFEE[1]))  # same size, other bytes
    (blobs / hashlib.sha256(ROCKET[1]).hexdigest()).unlink()
    with pytest.warns(UploadStoreWarning) as caught:
        ds = s.dataset()
    assert sorted(str(w.message).split(":")[0] for w in caught) == ["upload coffee.jpg", "upload rocket.jpg"]
    assert [r.name for r in ds.records] == ["cat.jpg"]
    assert {f.name for f in ds.failures} == {"coffee.jpg", "rocket.jpg"} and s.dropped == ds.failures
    assert "upload it again" in ds.failures[0].reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = UploadStore(tok, root=tmp_path).dataset()  # dropped for good: no second warning
    assert [r.name for r in again.records] == ["cat.jpg"] and not again.failures
    assert UploadStore(tok, root=tmp_path).add([COFFEE]).added  # and can be uploaded again


def test_a_damaged_list_of_files_is_dropped_with_a_warning(tmp_path):
    tok = new_token()
    UploadStore(tok, root=tmp_path).add([CAT])
    manifest = next((tmp_path / "sessions").iterdir()) / "manifest.json"
    manifest.write_text('{"version": 1, "batches": {"": {"created": 1, "files": [{"name": 3}]}}}')
    s = UploadStore(tok, root=tmp_path)
    with pytest.warns(UploadStoreWarning, match="damaged"):
        assert s.batches() == []
    s.add([COFFEE])
    assert [r.name for r in UploadStore(tok, root=tmp_path).dataset().records] == ["coffee.jpg"]
    assert json.loads(manifest.read_text())["version"] == 1


def test_remove_one_or_a_batch_and_join_the_dataset(tmp_path):
    s = UploadStore(new_token(), root=tmp_path)
    s.add([CAT, COFFEE])
    s.add(BIRDS[:3], label="garden birds")
    s.remove_file(hashlib.sha256(COFFEE[1]).hexdigest())
    assert [(b.label, [f.name for f in b.files]) for b in s.batches()] == [
        ("", ["cat.jpg"]), ("garden birds", [n for n, _ in BIRDS[:3]])]
    base = load_folder(STAMPS)
    joined = with_uploads(base, s.dataset())
    assert len(joined) == len(base) + 4 and joined.root == base.root
    assert joined.classes == sorted([*base.classes, "garden birds"]) and not joined.is_labelled
    assert [r.label for r in joined.records[len(base):]] == ["", "garden birds", "garden birds", "garden birds"]
    s.remove_batch("garden birds")
    assert [b.label for b in s.batches()] == [""]
    blobs = next((tmp_path / "sessions").iterdir()) / "blobs"
    assert [p.name for p in blobs.iterdir()] == [hashlib.sha256(CAT[1]).hexdigest()]  # removed files are deleted
    s.clear()
    assert s.batches() == [] and not list((tmp_path / "sessions").iterdir())


def _writer(root: str, token: str, files: list[tuple[str, bytes]], label: str) -> None:
    for f in files:
        UploadStore(token, root=root).add([f], label=label)


def test_concurrent_writers_lose_nothing(tmp_path):
    tok = new_token()
    stamps = [(p.name, p.read_bytes()) for p in sorted(STAMPS.rglob("*.png"))][:16]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tok, stamps[i::4], f"class {i % 2}")) for i in range(2)]
    threads = [threading.Thread(target=_writer, args=(str(tmp_path), tok, stamps[i::4], f"class {i % 2}"))
               for i in range(2, 4)]
    for w in [*procs, *threads]:
        w.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ds = UploadStore(tok, root=tmp_path).dataset()
    assert sorted(r.name for r in ds.records) == sorted(n for n, _ in stamps) and not ds.failures
    assert {r.label for r in ds.records} == {"class 0", "class 1"}
    blobs = next((tmp_path / "sessions").iterdir()) / "blobs"
    assert len(list(blobs.iterdir())) == 16  # no temporary file left behind
