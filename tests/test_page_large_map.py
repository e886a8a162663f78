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


@pytest.mark.slow
def test_link_point_opens_an_image_on_the_ordinary_map():
    """``point=I`` also opens image I on the plotly map (under 20,000 images), and the page writes it back."""
    at = AppTest.from_file(EMBEDDINGS, default_timeout=300)
    at.query_params.update({"dataset": "stamps", "backbone": "mobilenetv2", "point": "5"})
    _run(at)
    assert at.selectbox(key="emb_pick").value == 5
    assert any("nearest neighbours share its class" in c.value for c in at.caption)
    assert at.query_params["point"] == "5"
    at.selectbox(key="emb_pick").set_value(None)
    _run(at)
    assert "point" not in at.query_params


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


# ---- box / lasso selection and the first view (issue 20) ---------------------------------------------------
def _map_coords(s) -> np.ndarray:
    """The PCA map the page computed (cached beside the set's vectors)."""
    files = sorted((s.root / "proj").glob("*.npy"))
    assert len(files) == 1, files
    return np.load(files[0])


def _selection_markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Selection") or "bl-selgrid" in m.value]


def test_box_and_lasso_selection_open_a_grid_of_the_first_200_with_the_count(tmp_path):
    from core.geometry.regions import points_in_polygon

    s = _make_set(tmp_path, "sel_set", 500)
    at = AppTest.from_file(EMBEDDINGS, default_timeout=120)
    at.query_params.update({"dataset": "sel_set", "method": "pca"})
    _run(at)
    assert _selection_markdown(at) == []
    C = _map_coords(s)
    (x0, y0), (x1, y1) = C.min(0) - 1, C.max(0) + 1
    at.session_state["emb_bigmap"] = {"select": {"kind": "box", "poly": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}}
    _run(at)
    head, grid = _selection_markdown(at)
    assert head.startswith("**Selection (box): 500 points** · the first 200 by point number below · by class: ")
    assert "data-count='500' data-shown='200'" in grid
    cells = re.findall(r"data-point='(\d+)'", grid)
    assert [int(c) for c in cells] == list(range(200))  # the first 200 by point number
    assert grid.count("not readable") == 20  # every 10th path does not exist
    assert grid.count("<img ") == 180 and f"#17 · {s.path(17)} · " in grid
    # a lasso: exactly the points inside it (even-odd rule), the count of all of them
    mx, my = np.median(C, axis=0)
    lasso = [[x0, y0], [mx, y0], [mx, my], [x0, my + (my - y0)]]
    want = np.flatnonzero(points_in_polygon(C, lasso))
    assert 0 < len(want) < 500
    at.session_state["emb_bigmap"] = {"select": {"kind": "lasso", "poly": lasso}}
    _run(at)
    head, grid = _selection_markdown(at)
    n = len(want)
    assert head.startswith(f"**Selection (lasso): {n:,} point")
    assert [int(c) for c in re.findall(r"data-point='(\d+)'", grid)] == want[:200].tolist()
    codes = s.codes[want]
    top = max(range(len(s.classes)), key=lambda c: (np.sum(codes == c), -c))
    assert f"by class: {s.classes[top]} {np.sum(codes == top):,}" in head
    # cleared: no grid; a malformed region from the browser selects nothing and breaks nothing
    at.session_state["emb_bigmap"] = {"select": {"clear": True}}
    _run(at)
    assert _selection_markdown(at) == []
    at.session_state["emb_bigmap"] = {"select": {"kind": "lasso", "poly": [[0, 0], [1, "x"]]}}
    _run(at)
    assert _selection_markdown(at) == []


def test_an_imported_path_outside_the_data_roots_is_never_read(tmp_path, monkeypatch):
    """The large map shows a recorded file only under the server's data roots (core.io.policy)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    stamp = sorted(STAMPS.rglob("*.png"))[0]
    (outside / "private.png").write_bytes(stamp.read_bytes())
    V = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    f = tmp_path / "roots.npz"
    np.savez(f, embeddings=V, paths=np.array([str(outside / "private.png")] * 15 + [str(stamp)] * 15),
             labels=np.array(["a"] * 30))
    s = import_table(f, "roots_set")
    monkeypatch.setenv("BACKBONE_LENS_DATA_ROOTS", str(STAMPS))  # the test folder is no longer a root
    at = AppTest.from_file(EMBEDDINGS, default_timeout=120)
    at.query_params.update({"dataset": "roots_set", "method": "pca"})
    _run(at)
    C = _map_coords(s)
    (x0, y0), (x1, y1) = C.min(0) - 1, C.max(0) + 1
    at.session_state["emb_bigmap"] = {"select": {"kind": "box", "poly": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}}
    _run(at)
    _, grid = _selection_markdown(at)
    assert grid.count("not readable") == 15 and grid.count("<img ") == 15


_FIT = """() => { for (const el of document.querySelectorAll('*')) {
    if (el.shadowRoot && el.shadowRoot.__pointmap) { const pm = el.shadowRoot.__pointmap;
      const xs = [], ys = [];
      for (let i = 0; i < pm.n; i += 7) { const [x, y] = pm.toScreen(pm.xy[2 * i], pm.xy[2 * i + 1]); xs.push(x); ys.push(y); }
      xs.sort((a, b) => a - b); ys.sort((a, b) => a - b);
      const q = (a, f) => a[Math.floor(f * (a.length - 1))];
      return {w: pm.canvas.width, h: pm.canvas.height, x0: q(xs, 0.01), x1: q(xs, 0.99), y0: q(ys, 0.01), y1: q(ys, 0.99),
              inView: pm.inView, n: pm.n, selected: pm.wrap.dataset.selected || ""}; } } return null; }"""


@pytest.mark.slow
@pytest.mark.browser
def test_100k_map_starts_fitted_and_a_box_then_a_lasso_open_their_thumbnails(browser, app_url, tmp_path):
    n = 100_000
    _make_set(tmp_path, "browser100k", n, dim=48, classes=10)
    ctx = browser.new_context(viewport={"width": 1500, "height": 1400})
    page = ctx.new_page()
    page.goto(f"{app_url}/embeddings?dataset=browser100k&method=pca")
    page.wait_for_function(f"() => {{ const s = ({_PM})(); return s && s.n === {n} && s.frames > 0; }}", timeout=300_000)
    wait_idle(page, timeout=300_000)
    page.wait_for_timeout(500)
    fit = page.evaluate(_FIT)
    # the first view fits the points: the middle 98 % of them span most of the canvas one way or the other
    spread = max((fit["x1"] - fit["x0"]) / fit["w"], (fit["y1"] - fit["y0"]) / fit["h"])
    assert spread > 0.6, fit
    assert 0 <= fit["x0"] and fit["x1"] <= fit["w"] and 0 <= fit["y0"] and fit["y1"] <= fit["h"], fit
    box = page.locator(".pm-canvas").bounding_box()
    cx = box["x"] + (fit["x0"] + fit["x1"]) / 2
    left, top = box["x"] + fit["x0"], box["y"] + fit["y0"]
    right, bottom = box["x"] + fit["x1"], box["y"] + fit["y1"]
    page.get_by_role("button", name="Box", exact=True).click()
    page.mouse.move(left, top)  # the left half of the map
    page.mouse.down()
    page.mouse.move(cx, (top + bottom) / 2, steps=5)
    page.mouse.move(cx, bottom, steps=5)
    page.mouse.up()
    page.locator(".bl-selgrid").wait_for(timeout=120_000)
    wait_idle(page)
    count = int(page.locator(".bl-selgrid").get_attribute("data-count"))
    js = int(page.evaluate(_FIT)["selected"])
    assert count == js and count > 200  # Python's selection is the one the map counted
    assert page.locator(".bl-selcell").count() == 200
    assert page.get_by_text(f"Selection (box): {count:,} points").is_visible()
    page.locator(".bl-selcell img").first.wait_for(state="visible")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "embeddings_100k_selection.png"), full_page=True)
    # a lasso replaces it
    page.get_by_role("button", name="Lasso", exact=True).click()
    pts = [(cx, top), (right, top + 0.2 * (bottom - top)), (right, bottom), (cx + 0.3 * (right - cx), bottom)]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:] + pts[:1]:
        page.mouse.move(*p, steps=6)
    page.mouse.up()
    page.wait_for_function("() => { const g = document.querySelector('.bl-selgrid'); "
                           f"return g && g.getAttribute('data-count') !== '{count}'; }}", timeout=120_000)
    wait_idle(page)
    lasso = int(page.locator(".bl-selgrid").get_attribute("data-count"))
    assert lasso == int(page.evaluate(_FIT)["selected"]) and 0 < lasso != count
    assert page.get_by_text(f"Selection (lasso): {lasso:,} point").is_visible()
    page.keyboard.press("Escape")  # clears
    page.locator(".bl-selgrid").wait_for(state="detached", timeout=60_000)
    assert page.evaluate(_FIT)["selected"] == ""
    ctx.close()
