"""Imported sets on the Embeddings page and shareable deep links: AppTest (fast, no weights) for the
sidebar's dataset list and the ?dataset=&backbone=&method=&point= parameters, and a 20,000-point
imported set in headless Chromium (hover thumbnail, click to neighbours, pan/zoom, the link reopened
in a second browser context)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.io.imports import import_table
from tests.conftest import ROOT, SCREENSHOTS, STAMPS, wait_idle

EMBEDDINGS = str(ROOT / "pages" / "embeddings" / "page.py")


def _make_set(tmp_path, name: str, n: int, dim: int = 32, classes: int = 6, seed: int = 0):
    """A clustered set whose paths cycle over the stamps; every 10th path does not exist."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    lab = rng.integers(0, classes, size=n)
    V = (centres[lab] + 0.15 * rng.normal(size=(n, dim))).astype(np.float16)
    stamps = sorted(str(p) for p in STAMPS.rglob("*.png"))
    paths = np.array([f"/nonexistent/{i}.jpg" if i % 10 == 9 else stamps[i % len(stamps)] for i in range(n)])
    f = tmp_path / f"{name}.npz"
    np.savez(f, embeddings=V.astype(np.float32), paths=paths, labels=np.array([f"c{c}" for c in lab]))
    return import_table(f, name)


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_imported_set_is_listed_and_a_link_opens_it_with_method_and_point(tmp_path):
    s = _make_set(tmp_path, "link_set", 300)
    at = AppTest.from_file(EMBEDDINGS, default_timeout=120)
    at.query_params.update({"dataset": "link_set", "method": "pca", "point": "17"})
    _run(at)
    radio = at.sidebar.radio(key="ds_source")
    assert "link_set · 300 imported points" in radio.options and radio.value == "imported:link_set"
    assert any(m.value.startswith("**PCA map · imported set **link_set**") for m in at.markdown)
    assert any(m.value.startswith(f"**{s.path(17)}** · class **") for m in at.markdown)  # the linked point is open
    assert any("nearest neighbours share its class" in c.value for c in at.caption)
    assert at.query_params["dataset"] == "link_set" and at.query_params["point"] == "17"
    assert "backbone" not in at.query_params  # an imported set has no backbone to choose


def test_link_to_a_missing_set_says_so_and_sidebar_writes_the_link_back(tmp_path):
    at = AppTest.from_file(str(ROOT / "pages" / "home" / "page.py"), default_timeout=60)
    at.query_params["dataset"] = "no_such_set"
    _run(at)
    assert any("no_such_set" in w.value for w in at.sidebar.warning)


@pytest.mark.slow
def test_link_with_backbone_and_method_on_a_folder_dataset():
    at = AppTest.from_file(EMBEDDINGS, default_timeout=300)
    at.query_params.update({"dataset": "stamps", "backbone": "efficientnet_lite0", "method": "tsne"})
    _run(at)
    assert at.sidebar.radio(key="ds_source").value == "Sample stamps"
    assert at.segmented_control(key="emb_method").value == "tsne"
    assert any("efficientnet_lite0 embeddings" in m.value for m in at.markdown)
    assert at.query_params["backbone"] == "efficientnet_lite0" and at.query_params["method"] == "tsne"


# ---- a real browser -------------------------------------------------------------------------------
_PM = """() => { for (const el of document.querySelectorAll('*')) {
    if (el.shadowRoot && el.shadowRoot.__pointmap) { const pm = el.shadowRoot.__pointmap;
        return {n: pm.n, frames: +(pm.wrap.dataset.frames || 0), mode: pm.mode, inView: pm.inView,
                loads: +(pm.wrap.dataset.loads || 0)}; } } return null; }"""
_POINT = """() => { for (const el of document.querySelectorAll('*')) {
    if (el.shadowRoot && el.shadowRoot.__pointmap) { const pm = el.shadowRoot.__pointmap;
      const r = pm.canvas.getBoundingClientRect();
      for (let i = 0; i < pm.n; i++) {
        if (i % 10 === 9) continue;
        const [fx, fy] = pm.toScreen(pm.xy[2 * i], pm.xy[2 * i + 1]);
        const x = Math.round(r.left + fx) - r.left, y = Math.round(r.top + fy) - r.top;  // where the mouse can be
        if (x > 40 && y > 40 && x < pm.canvas.width - 40 && y < pm.canvas.height - 40 && pm.nearest(x, y, 8) === i)
          return {i, x: r.left + x, y: r.top + y};
      } } } return null; }"""


@pytest.mark.slow
@pytest.mark.browser
def test_20k_imported_points_in_chromium(browser, app_url, tmp_path):
    n = 20_000
    s = _make_set(tmp_path, "browser20k", n, dim=64, classes=12)
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = ctx.new_page()
    page.goto(f"{app_url}/embeddings?dataset=browser20k")
    page.wait_for_function(f"() => {{ const s = ({_PM})(); return s && s.n === {n} && s.frames > 0; }}", timeout=180_000)
    wait_idle(page)
    st = page.evaluate(_PM)
    assert st["mode"] in ("density", "points") and st["inView"] == n  # the whole map is in view
    pt = page.evaluate(_POINT)
    page.mouse.move(pt["x"], pt["y"])  # hover: the thumbnail of that very image
    page.locator(".pm-tip img").wait_for(state="visible", timeout=30_000)
    i = int(page.locator(".pm-tip").get_attribute("data-point"))  # the point under the mouse (ties: any)
    assert i % 10 != 9 and s.path(i) in page.locator(".pm-tip").inner_text()
    page.mouse.click(pt["x"], pt["y"])  # click: the image and its 10 neighbours
    page.get_by_text("nearest neighbours share its class").wait_for(timeout=30_000)
    wait_idle(page)
    assert page.get_by_text(f"point {i:,}").is_visible()
    assert re.search(rf"point={i}\b", page.url) and "dataset=browser20k" in page.url
    frames0 = page.evaluate(_PM)["frames"]
    box = page.locator(".pm-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(10):  # zoom in far: density -> points -> images
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(80)
    wait_idle(page)
    page.wait_for_timeout(1500)  # the in-map thumbnails asked for by the zoom
    wait_idle(page)
    after = page.evaluate(_PM)
    assert after["frames"] > frames0 and after["inView"] < n
    assert after["loads"] == 1  # hover, click and zoom reruns never re-sent the coordinates
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "embeddings_20k_zoomed.png"))
    link = page.url
    ctx.close()
    # the same link in another browser context opens the same set with the same point
    ctx2 = browser.new_context(viewport={"width": 1500, "height": 1100})
    page2 = ctx2.new_page()
    page2.goto(link)
    page2.get_by_text("nearest neighbours share its class").wait_for(timeout=120_000)
    wait_idle(page2)
    assert page2.get_by_text(f"point {i:,}").is_visible()
    page2.wait_for_function(f"() => {{ const s = ({_PM})(); return s && s.n === {n} && s.frames > 0; }}", timeout=60_000)
    page2.wait_for_timeout(1500)
    page2.screenshot(path=str(SCREENSHOTS / "embeddings_20k_link.png"))
    ctx2.close()
