"""Jobs owned by browser sessions (pages/shared/jobs.py): a closed session's jobs are released after
the grace checks and only then, a tab that comes back within the grace keeps them, a job another
session still wants keeps running; on the Embeddings page a background fit is cancelled with its
button (PCA kept) and computed again on request (AppTest, the fit held on an event so the test
decides when it ends); in a real browser an extraction is cancelled and resumed, and a closed tab's
queued map is released by the server's watcher."""
from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from core.errors import Cancelled
from core.projection.jobs import JobPool
from pages.shared.jobs import ClosedSessionReleaser, widget_key
from tests.conftest import ROOT, SCREENSHOTS, wait_idle

WAIT = 30  # seconds: generous on a loaded machine; every wait ends as soon as its event is set


def _held_pool() -> tuple[JobPool, threading.Event]:
    """A pool whose jobs run until the returned event is set (stand-ins for long fits)."""
    go = threading.Event()

    def fit(value):
        assert go.wait(WAIT)
        return value

    pool = JobPool(max_workers=4)
    pool.fit = fit  # type: ignore[attr-defined]
    return pool, go


def test_a_closed_session_is_released_after_the_grace_checks_and_not_before():
    pool, go = _held_pool()
    active = {"tab-1": True, "tab-2": True}
    releaser = ClosedSessionReleaser(lambda o: active[o], grace=2)
    releaser.watch(pool)
    releaser.watch(pool)  # idempotent
    one = pool.submit("umap-1", pool.fit, 1, owner="tab-1")  # type: ignore[attr-defined]
    two = pool.submit("umap-2", pool.fit, 2, owner="tab-2")  # type: ignore[attr-defined]
    assert releaser.check() == {}
    active["tab-1"] = False  # its tab closed
    assert releaser.check() == {}  # first check: not yet (it may be reconnecting)
    assert not one.done()
    assert releaser.check() == {"tab-1": ["umap-1"]}  # second check in a row: released
    with pytest.raises(Cancelled):
        one.result(timeout=0)
    assert not two.done() and pool.owners() == {"tab-2"}
    assert releaser.check() == {}
    go.set()
    assert two.result(timeout=WAIT) == 2


def test_a_tab_that_reconnects_within_the_grace_keeps_its_jobs():
    pool, go = _held_pool()
    active = {"tab": True}
    releaser = ClosedSessionReleaser(lambda o: active[o], grace=2)
    releaser.watch(pool)
    fut = pool.submit("tsne", pool.fit, "map", owner="tab")  # type: ignore[attr-defined]
    for state in (False, True, False, True, False):  # never inactive twice in a row
        active["tab"] = state
        assert releaser.check() == {}
    go.set()
    assert fut.result(timeout=WAIT) == "map"


def test_a_job_another_session_still_wants_keeps_running():
    pool, go = _held_pool()
    active = {"a": True, "b": True}
    releaser = ClosedSessionReleaser(lambda o: active[o], grace=1)
    releaser.watch(pool)
    shared = pool.submit("umap", pool.fit, "m", owner="a")  # type: ignore[attr-defined]
    assert pool.submit("umap", pool.fit, "m", owner="b") is shared  # type: ignore[attr-defined]
    active["a"] = False
    assert releaser.check() == {"a": []}  # released, but b still wants the map
    assert not shared.done()
    active["b"] = False
    assert releaser.check() == {"b": ["umap"]}
    with pytest.raises(Cancelled):
        shared.result(timeout=0)
    go.set()


def test_the_watcher_checks_every_pool_until_stopped():
    pools = [_held_pool(), _held_pool()]
    gone = set()
    releaser = ClosedSessionReleaser(lambda o: o not in gone, grace=2)
    futs = []
    for k, (pool, _) in enumerate(pools):
        releaser.watch(pool)
        futs.append(pool.submit(f"job-{k}", pool.fit, k, owner="tab"))  # type: ignore[attr-defined]
    stop = threading.Event()
    thread = threading.Thread(target=releaser.run, args=(0.02, stop), daemon=True)
    thread.start()
    time.sleep(0.2)
    assert not any(f.done() for f in futs)  # an active session's jobs are left alone
    gone.add("tab")
    for f in futs:
        with pytest.raises(Cancelled):
            f.result(timeout=WAIT)
    stop.set()
    thread.join(WAIT)
    assert not thread.is_alive()
    for _, go in pools:
        go.set()


def test_cancel_one_key_releases_only_that_job():
    pool, go = _held_pool()
    umap = pool.submit("umap", pool.fit, "u", owner="tab")  # type: ignore[attr-defined]
    tsne = pool.submit("tsne", pool.fit, "t", owner="tab")  # type: ignore[attr-defined]
    other = pool.submit("pca", pool.fit, "p", owner="other-tab")  # type: ignore[attr-defined]
    assert pool.release("tab", keys=["umap", "pca"]) == ["umap"]  # pca is not this owner's
    with pytest.raises(Cancelled):
        umap.result(timeout=0)
    go.set()
    assert tsne.result(timeout=WAIT) == "t" and other.result(timeout=WAIT) == "p"


# ---- the Embeddings page in AppTest: a background fit cancelled and computed again ---------------
@pytest.mark.slow
def test_embeddings_page_cancels_a_background_fit_and_keeps_pca(monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from pages.embeddings import cache

    st.cache_resource.clear()  # a fresh job pool: no map finished by another test
    go, calls = threading.Event(), []
    real_fit = cache.fit

    def held_fit(X, params):  # PCA (fitted inline) at once; the background fits wait for the test
        if params.method != "pca":
            calls.append(params.method)
            assert go.wait(120)
        return real_fit(X, params)

    monkeypatch.setattr(cache, "fit", held_fit)
    at = AppTest.from_file(str(ROOT / "pages" / "embeddings" / "page.py"), default_timeout=300)
    at.query_params["method"] = "tsne"
    try:
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        assert any("t-SNE is being computed in the background" in i.value for i in at.info)
        assert any(m.value.startswith("**PCA of mobilenetv2 embeddings**") for m in at.markdown)
        (cancel,) = [b for b in at.button if b.label == "Cancel t-SNE"]
        pool = cache.jobs()
        assert pool.running == 1
        cancel.click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert any(i.value.startswith("t-SNE cancelled: showing PCA") for i in at.info), [i.value for i in at.info]
        assert any(m.value.startswith("**PCA of mobilenetv2 embeddings**") for m in at.markdown)
        assert pool.running == 0 and len(pool) == 0  # this session was its only owner: cancelled, slot free
        at.run()  # a rerun does not start it again
        assert calls == ["tsne"] and pool.running == 0
        (again,) = [b for b in at.button if b.label == "Compute t-SNE"]
        again.click().run()
        assert any("t-SNE is being computed in the background" in i.value for i in at.info)
        assert calls == ["tsne"] and pool.running == 1  # the fit still running was taken back, not started twice
        go.set()
        deadline = time.time() + 120
        while not any(m.value.startswith("**t-SNE of mobilenetv2") for m in at.markdown) and time.time() < deadline:
            time.sleep(0.5)
            at.run()
        assert any(m.value.startswith("**t-SNE of mobilenetv2") for m in at.markdown)
        assert not at.error, [e.value for e in at.error]
    finally:
        go.set()


# ---- a real browser ------------------------------------------------------------------------------
def _layer(page, layer: str) -> None:
    """Choose a block in the sidebar's Layer box."""
    box = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Layer")
    box.click()
    page.keyboard.type(layer)  # typing opens the list filtered to the block (a click alone may not open it at the sidebar's foot)
    page.get_by_role("option", name=layer, exact=True).click()


@pytest.mark.slow
def test_browser_extraction_cancelled_then_resumed(page, app_url):
    """The ViT's block 3 on the stamps (48 images, not cached): Cancel during the progress bar keeps
    the batches written; the page says how many are cached; Resume computes only the others."""
    page.goto(f"{app_url}/embeddings?dataset=stamps&backbone=vits14_saliency")
    page.get_by_text("PCA of vits14_saliency embeddings").wait_for(timeout=600_000)
    wait_idle(page)
    _layer(page, "3")
    cancel = page.get_by_role("button", name="Cancel")
    cancel.wait_for(timeout=300_000)
    bar = page.get_by_test_id("stProgress")
    assert "/ 48 images" in bar.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "extraction_running.png"))
    cancel.click()
    note = page.get_by_text(re.compile(r"Cancelled: \d+ of 48 images cached"))
    note.wait_for(timeout=300_000)
    wait_idle(page)
    n = int(re.search(r"Cancelled: (\d+) of 48", note.inner_text()).group(1))
    assert 0 < n < 48 and n % 16 == 0, n  # whole batches of 16 kept
    page.screenshot(path=str(SCREENSHOTS / "extraction_cancelled.png"), full_page=True)
    assert not page.get_by_test_id("stException").count()
    page.get_by_role("button", name="Resume").click()
    toast = page.get_by_text(re.compile(r"vits14_saliency: extracted \d+ images"))
    toast.wait_for(timeout=600_000)
    assert re.search(r"extracted (\d+) images", toast.inner_text()).group(1) == str(48 - n)  # only the others
    wait_idle(page, timeout=600_000)
    page.get_by_text("PCA of vits14_saliency embeddings").wait_for()
    assert not page.get_by_test_id("stException").count() and not page.get_by_test_id("stAlertContentError").count()


def _imported_set(name: str, n: int, folder, dim: int = 16):
    from core.io.imports import import_table

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, dim))
    lab = rng.integers(0, 6, size=n)
    V = (centres[lab] + 0.15 * rng.normal(size=(n, dim))).astype(np.float32)
    f = folder / f"{name}.npz"
    np.savez(f, embeddings=V, paths=np.array([f"/nonexistent/{i}.jpg" for i in range(n)]),
             labels=np.array([f"c{c}" for c in lab]))
    return import_table(f, name)


@pytest.mark.slow
def test_browser_map_cancelled_and_a_closed_tab_releases_its_job(browser, app_url, _session_cache, tmp_path):
    """Tab A asks for a UMAP of 20,000 imported points, cancels it (PCA kept), asks again (the fit
    still running is taken back); tab B asks for a t-SNE of the same points (queued behind A's fit)
    and closes: the server's watcher cancels B's job within its grace (the log names it)."""
    _imported_set("release_set", 20_000, tmp_path)
    log = _session_cache / "streamlit.log"
    a = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    a.goto(f"{app_url}/embeddings?dataset=release_set&method=umap")
    a.get_by_role("button", name="Cancel UMAP").wait_for(timeout=300_000)
    assert a.get_by_text(re.compile(r"UMAP: .*showing PCA meanwhile")).count()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    a.screenshot(path=str(SCREENSHOTS / "map_computing.png"))
    a.get_by_role("button", name="Cancel UMAP").click()
    a.get_by_text("UMAP cancelled: showing PCA.").wait_for(timeout=120_000)
    wait_idle(a)
    assert a.get_by_text(re.compile(r"PCA map · imported set")).count()
    a.screenshot(path=str(SCREENSHOTS / "map_cancelled.png"), full_page=True)
    a.get_by_role("button", name="Compute UMAP").click()  # asked again: a fresh fit
    a.get_by_role("button", name="Cancel UMAP").wait_for(timeout=120_000)

    b_ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    b = b_ctx.new_page()
    b.goto(f"{app_url}/embeddings?dataset=release_set&method=tsne")
    b.get_by_role("button", name="Cancel t-SNE").wait_for(timeout=300_000)
    before = log.read_text()
    t0 = time.time()
    b_ctx.close()  # the tab closes while its t-SNE is queued (or running)
    pattern = re.compile(r"browser session \S+ closed: cancelled 1 background job\(s\) only it wanted: \(imported:release_set.*tsne")
    while time.time() - t0 < 120 and not pattern.search(log.read_text()[len(before):]):
        time.sleep(0.5)
    assert pattern.search(log.read_text()[len(before):]), log.read_text()[len(before):][-2000:]
    released_after = time.time() - t0
    assert released_after < 60, released_after  # 2 checks 5 s apart, plus a loaded machine's delays
    assert a.get_by_role("button", name="Cancel UMAP").count() or a.get_by_text("UMAP map · imported set").count()
    a.context.close()


def test_widget_keys_are_stable_and_distinct():
    assert widget_key("_cancel", ("a", 1)) == widget_key("_cancel", ("a", 1)) != widget_key("_cancel", ("a", 2))
