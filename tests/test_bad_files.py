"""The generated corpus of bad and unusual files (tests/bad_files.py) through the folder path and
the upload path: every valid file is kept, every bad one is reported by name with its reason, and
nothing that is not a regular file is ever read (a pipe would hang, /dev/zero would never end)."""
from __future__ import annotations

import signal
import warnings

import pytest

from core.io.images import TooManyFilesError, load_folder, load_uploads
from core.io.policy import ServerPolicy
from tests.bad_files import (
    IGNORED,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    PATH_ONLY,
    make_corpus,
    upload_items,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    expected = make_corpus(base / "root", base / "outside")
    return base / "root", base / "outside", expected


@pytest.fixture
def alarm():
    """Fail instead of hanging if anything blocks (a FIFO opened for reading does)."""
    def boom(*_):
        raise TimeoutError("blocked: a non-regular file was opened")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _check(ds, expected: dict[str, str]) -> None:
    got = {r.name.split("/", 1)[-1]: "ok" for r in ds.records}
    got.update({f.name.split("/", 1)[-1]: f.reason for f in ds.failures})
    assert set(got) == set(expected), (sorted(set(got) - set(expected)), sorted(set(expected) - set(got)))
    wrong = {n: got[n] for n, exp in expected.items()
             if (exp == "ok") != (got[n] == "ok") or (exp != "ok" and exp not in got[n])}
    assert not wrong, wrong


def test_corpus_is_large_enough(corpus):
    _, _, expected = corpus
    assert len(expected) >= 40
    assert sum(v != "ok" for v in expected.values()) >= 25


def test_corpus_through_the_folder_path(corpus, alarm):
    root, outside, expected = corpus
    policy = ServerPolicy(data_roots=(root.resolve(),))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_folder(root, max_pixels=MAX_PIXELS, max_file_bytes=MAX_FILE_BYTES,
                         within=policy.is_within_data_roots)
    _check(ds, expected)
    assert all(r.label == "cls" for r in ds.records)
    assert not any(n in {r.name for r in ds.records} | {f.name for f in ds.failures} for n in IGNORED)
    # the EXIF warning names its file
    exif = [str(w.message) for w in caught if "EXIF" in str(w.message)]
    assert exif and all("corrupt_exif.jpg" in m for m in exif), [str(w.message) for w in caught]


def test_corpus_through_the_upload_path(corpus):
    root, _, expected = corpus
    items = upload_items(root, expected)
    assert len(items) >= 40
    ds = load_uploads(items, "mine", max_pixels=MAX_PIXELS, max_file_bytes=MAX_FILE_BYTES)
    _check(ds, {n: e for n, e in expected.items() if n not in PATH_ONLY})
    assert [r.name for r in ds.records] == [n for n, _ in items if expected[n] == "ok"]  # input order kept


def test_record_read_refuses_what_became_a_pipe(corpus, alarm, tmp_path):
    """A file listed as an image and later replaced by a FIFO is not read when the page asks for it."""
    import os

    from core.io.images import NotRegularFileError

    p = tmp_path / "img.png"
    root, _, _ = corpus
    p.write_bytes((root / "cls" / "rgb.png").read_bytes())
    rec = load_folder(tmp_path).records[0]
    p.unlink()
    os.mkfifo(p)
    with pytest.raises(NotRegularFileError, match="named pipe"):
        rec.read_bytes()


def test_file_count_limits(tmp_path, corpus):
    root, _, _ = corpus
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes((root / "cls" / "rgb.png").read_bytes())
    with pytest.raises(TooManyFilesError, match="more than 4 image files"):
        load_folder(tmp_path, max_files=4)
    assert len(load_folder(tmp_path, max_files=5).records) == 5
    with pytest.raises(TooManyFilesError, match="limit on this server is 2"):
        load_uploads([("a.png", b"x")] * 3, max_files=2)
