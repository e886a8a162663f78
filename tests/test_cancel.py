"""Cancelling long jobs: extraction stops between batches keeping what it wrote; the JobPool drops a
queued job, abandons a running one (its slot goes to the next job at once), lets a cooperative job
stop itself, and cancels what only a departed owner wanted; a large map stops between blocks."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.errors import BackboneLensError, Cancelled
from core.projection.jobs import JobPool

WAIT = 30  # seconds: generous on a loaded machine; every wait below ends as soon as its event is set


def _blocker():
    """A job that runs until released (a stand-in for a UMAP fit that cannot be interrupted)."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def job(value):
        started.set()
        assert release.wait(WAIT)
        finished.set()
        return value

    return job, started, release, finished


def test_cancelled_is_a_backbone_lens_error():
    assert issubclass(Cancelled, BackboneLensError)


def test_a_queued_job_is_dropped_and_never_runs():
    pool = JobPool(max_workers=1)
    job, started, release, _ = _blocker()
    first = pool.submit("a", job, 1)
    assert started.wait(WAIT)
    ran = threading.Event()
    second = pool.submit("b", lambda: ran.set())
    assert pool.cancel("b") is True
    with pytest.raises(Cancelled, match="before it started"):
        second.result(timeout=WAIT)
    release.set()
    assert first.result(timeout=WAIT) == 1
    time.sleep(0.2)
    assert not ran.is_set() and pool.get("b") is None
    assert pool.cancel("b") is False and pool.cancel("a") is False  # gone / already finished


def test_a_running_job_is_abandoned_and_its_slot_goes_to_the_next_job():
    pool = JobPool(max_workers=1)
    job, started, release, finished = _blocker()
    fit = pool.submit("umap", job, "map")
    assert started.wait(WAIT)
    queued = pool.submit("pca", lambda: "pca map")
    assert not queued.done() and pool.running == 1
    assert pool.cancel("umap") is True
    with pytest.raises(Cancelled, match="while running"):
        fit.result(timeout=WAIT)
    assert queued.result(timeout=WAIT) == "pca map"  # ran while the abandoned fit still runs
    assert not finished.is_set()
    assert pool.get("umap") is None
    release.set()
    assert finished.wait(WAIT)
    time.sleep(0.2)
    with pytest.raises(Cancelled):  # the abandoned run's late result is discarded
        fit.result(timeout=0)
    assert pool.running == 0 and pool.get("umap") is None
    again = pool.submit("umap", lambda: "fresh")  # its thread has returned: a new request starts afresh
    assert again is not fit and again.result(timeout=WAIT) == "fresh"


def test_asking_again_while_an_abandoned_job_still_runs_takes_it_back():
    pool = JobPool(max_workers=1)
    job, started, release, finished = _blocker()
    fit = pool.submit("umap", job, "map", owner="tab")
    assert started.wait(WAIT)
    assert pool.cancel("umap") is True and pool.running == 0
    ran_twice = threading.Event()
    again = pool.submit("umap", lambda: ran_twice.set(), owner="tab")  # Cancel, then "Compute UMAP" again
    assert again is not fit and not again.done() and pool.running == 1  # the same thread, counted again
    assert pool.owners() == {"tab"}
    queued = pool.submit("tsne", lambda: "t")
    assert not queued.done()  # the slot is the taken-back job's again
    release.set()
    assert again.result(timeout=WAIT) == "map" and queued.result(timeout=WAIT) == "t"
    with pytest.raises(Cancelled):  # the first future stays cancelled
        fit.result(timeout=0)
    assert not ran_twice.is_set() and pool.running == 0


def test_a_cooperative_job_taken_back_before_it_looked_goes_on():
    pool = JobPool(max_workers=1)
    gate, looked = threading.Event(), []

    def fit(cancel):
        assert gate.wait(WAIT)
        looked.append(cancel.is_set())
        return "placed"

    first = pool.submit("map", fit, pass_cancel=True)
    assert pool.cancel("map") is True
    again = pool.submit("map", fit, pass_cancel=True)
    gate.set()
    assert again.result(timeout=WAIT) == "placed" and looked == [False]
    with pytest.raises(Cancelled):
        first.result(timeout=0)


def test_a_cooperative_job_stops_at_its_next_check():
    pool = JobPool(max_workers=1)
    steps, stopped = [], threading.Event()

    def fit(n, cancel):
        for i in range(n):
            if cancel.is_set():
                stopped.set()
                raise Cancelled(f"stopped at step {i}")
            steps.append(i)
            time.sleep(0.01)
        return "done"

    fut = pool.submit("k", fit, 100_000, pass_cancel=True)
    while not steps:
        time.sleep(0.01)
    pool.cancel("k")
    assert stopped.wait(WAIT)  # the thread itself stopped (its CPU is free), not just abandoned
    with pytest.raises(Cancelled):
        fut.result(timeout=0)
    assert len(steps) < 100_000


def test_release_cancels_only_what_no_other_owner_wants():
    pool = JobPool(max_workers=1)
    job, started, release, _ = _blocker()
    shared = pool.submit("shared", job, "s", owner="tab-1")
    assert started.wait(WAIT)
    assert pool.submit("shared", job, "s", owner="tab-2") is shared
    own = pool.submit("own", lambda: "o", owner="tab-1")
    anyone = pool.submit("anyone", lambda: "x", owner="tab-1")
    pool.submit("anyone", lambda: "x")  # also wanted with no owner: never released
    assert pool.owners() == {"tab-1", "tab-2"}
    assert pool.release("tab-1") == ["own"]
    with pytest.raises(Cancelled):
        own.result(timeout=0)
    assert not shared.done()
    assert pool.release("tab-2") == ["shared"]
    with pytest.raises(Cancelled):
        shared.result(timeout=WAIT)
    assert anyone.result(timeout=WAIT) == "x"
    release.set()


def test_a_failed_job_stays_failed_until_forgotten():
    pool = JobPool(max_workers=2, max_done=2)

    def boom():
        raise ValueError("bad input")

    fut = pool.submit("k", boom)
    with pytest.raises(ValueError, match="bad input"):
        fut.result(timeout=WAIT)
    assert pool.submit("k", lambda: 1) is fut
    pool.forget("k")
    assert pool.submit("k", lambda: 1).result(timeout=WAIT) == 1
    for i in range(5):
        pool.submit(i, lambda i=i: i).result(timeout=WAIT)
    time.sleep(0.1)
    assert len(pool) <= 2  # finished jobs beyond max_done dropped


def test_a_large_map_stops_between_blocks():
    from core.projection.projectors import ProjectionParams
    from core.projection.sampled import project_sampled

    X = np.random.default_rng(0).normal(size=(5_000, 16)).astype(np.float32)
    p = ProjectionParams("pca", n_components=2)
    seen: list[int] = []
    with pytest.raises(Cancelled, match="after placing"):
        project_sampled(X, p, sample=1_000, chunk=500, progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) >= 2)
    assert len(seen) == 2 and seen[-1] < 5_000  # two blocks of 500 indices placed, then it stopped
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled, match="before its fit"):
        project_sampled(X, p, sample=1_000, cancel=ev)


@pytest.mark.slow
def test_extraction_cancelled_keeps_its_written_batches_and_resumes(get_backbone, stamps, tmp_path):
    from core.io.store import FeatureStore
    from core.models.extract import extract_features

    b = get_backbone("mobilenetv2")
    store = FeatureStore(tmp_path / "features.sqlite")
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 16:  # two batches of 8 written: a user presses Cancel
            stop.set()

    with pytest.raises(Cancelled, match="after 16 of 48 images; the 16 images extracted so far are kept"):
        extract_features(b, stamps.records, batch_size=8, store=store, progress=progress, cancel=stop, prefetch=False)
    assert len(store) == 16
    fs = extract_features(b, stamps.records, batch_size=8, store=store)  # resumes where it stopped
    assert fs.stats.n_computed == 32 and fs.stats.n_cached == 16
    ref = extract_features(b, stamps.records, batch_size=8)  # no cache at all
    np.testing.assert_allclose(fs["embedding"], ref["embedding"], rtol=1e-4, atol=1e-5)
    with pytest.raises(Cancelled, match="^extraction cancelled after 0 of 48 images$"):  # a callable works too
        extract_features(b, stamps.records, batch_size=8, cancel=lambda: True)


@pytest.mark.slow
def test_the_report_card_stops_between_images(get_backbone, stamps):
    from core.explain.report import ReportSettings, saliency_report

    records = [r for r in stamps.records if r.label in ("birds", "fish")][:8]
    done: list[str] = []
    scored = lambda: [m for m in done if m.startswith("scored")]  # noqa: E731 (the first report is the cache look-up)
    with pytest.raises(Cancelled, match="report cancelled after 1 of 2 images"):
        saliency_report(get_backbone("mobilenetv2"), records, methods=["Grad-CAM"], settings=ReportSettings(limit=2),
                        progress=lambda d, t, msg: done.append(msg), cancel=lambda: len(scored()) >= 1)
    assert len(scored()) == 1
