"""Maps of 100,000 and 1,000,000 points in a real browser (headless Chromium through Playwright).

One run:
1. generates synthetic clustered sets (float16 vectors, 384-D, 24 classes; paths cycle over the
   bundled stamp photos, every 10th path points at a missing file so the placeholder shows),
   written as Parquet and imported with `core.io.imports.import_table` (timed);
2. starts the app on a free port with its own cache, opens each set once so its PCA map is cached
   (timed: the first-ever open), then in a fresh browser context measures
   - first paint: from navigation to `/embeddings?dataset=NAME` until the map has drawn its points;
   - hover: mouse onto a point until its thumbnail is in the tooltip;
   - click: mouse click on a point until the opened image and its 10 neighbours are shown;
   - pan / zoom: 12 wheel steps and 6 drags, the map's own frame times (ms per redraw);
   - browser memory: the renderer's JS heap (CDP) and the resident memory of Chromium's processes;
3. times the exact neighbour search on the stored float16 vectors directly and checks it against a
   float32 brute force (recall@10 over 20 queries).

Usage: .venv/bin/python bench/maps.py [--sizes 100000,1000000] [--dim 384] [--keep DIR]
The machine is shared: the load average is printed with the figures.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, start_app

sys.path.insert(0, str(ROOT))


def synthetic_parquet(path: Path, n: int, dim: int = 384, classes: int = 24, seed: int = 0,
                      block: int = 100_000) -> None:
    """``n`` clustered points (Gaussian blobs around random unit centres, float16 values) as a Parquet
    table of (path, label, vector), written block by block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.01, 0.03, size=classes).astype(np.float32)
    stamps = sorted(str(p) for p in (ROOT / "sample_data" / "stamps").rglob("*.png"))
    writer = None
    try:
        for s in range(0, n, block):
            b = min(block, n - s)
            lab = rng.integers(0, classes, size=b)
            V = (centres[lab] + rng.normal(size=(b, dim)).astype(np.float32) * spread[lab, None]).astype(np.float16)
            idx = np.arange(s, s + b)
            paths = [f"/nonexistent/img_{i:07d}.jpg" if i % 10 == 9 else stamps[i % len(stamps)] for i in idx]
            flat = pa.array(V.astype(np.float32).reshape(-1))
            vec = pa.FixedSizeListArray.from_arrays(flat, dim)
            t = pa.table({"path": paths, "label": [f"cluster_{c:02d}" for c in lab], "vector": vec})
            if writer is None:
                writer = pq.ParquetWriter(path, t.schema, compression="none")
            writer.write_table(t)
    finally:
        if writer is not None:
            writer.close()


CLICKS = 5  # points clicked per set (the median is reported)

# JavaScript run in the page: the point map object lives on the component's shadow root.
_PM = """() => { for (const el of document.querySelectorAll('*')) {
    if (el.shadowRoot && el.shadowRoot.__pointmap) return el.shadowRoot.__pointmap; } return null; }"""


def _pm_eval(page, body: str, arg=None):
    return page.evaluate(f"(arg) => {{ const pm = ({_PM})(); if (!pm) return null; {body} }}", arg)


def wait_map(page, n: int, timeout_s: float = 120.0) -> None:
    """Until the map holds ``n`` points and has drawn a frame."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        st = _pm_eval(page, "return {n: pm.n, frames: +(pm.wrap.dataset.frames || 0), mode: pm.mode};")
        if st and st["n"] == n and st["frames"] > 0:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the map did not draw {n} points within {timeout_s} s")


def point_on_screen(page, want_readable: bool = True, start: int = 0) -> tuple[int, float, float]:
    """A point well inside the canvas (index, page x, page y), the first from index ``start`` on;
    readable path when asked (index % 10 != 9)."""
    return tuple(_pm_eval(page, """
        const r = pm.canvas.getBoundingClientRect();
        for (let i = arg.start; i < pm.n; i += 1) {
            if (arg.readable && i % 10 === 9) continue;
            const [x, y] = pm.toScreen(pm.xy[2 * i], pm.xy[2 * i + 1]);
            if (x > 60 && y > 60 && x < pm.canvas.width - 60 && y < pm.canvas.height - 60 && pm.nearest(x, y, 8) === i)
                return [i, r.left + x, r.top + y];
        }
        return null;""", {"readable": want_readable, "start": start}))


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass  # ended meanwhile
    return 0.0


def memory(page, cdp, browser_cdp) -> dict[str, float]:
    """The page's JS heap (MB, CDP) and the resident memory of this browser's own processes (MB):
    the renderer processes (the tab) and all of them (browser, GPU, utility, renderers)."""
    m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
    procs = browser_cdp.send("SystemInfo.getProcessInfo")["processInfo"]
    rss = {p["id"]: (p["type"], _rss_mb(p["id"])) for p in procs}
    return {"js_heap_mb": m.get("JSHeapUsedSize", 0) / 2**20,
            "renderer_rss_mb": max((r for t, r in rss.values() if t == "renderer"), default=0.0),
            "browser_rss_mb": sum(r for _, r in rss.values())}


def measure_browser(url: str, name: str, n: int, browser, browser_cdp) -> dict[str, float]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Performance.enable")
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    page.goto(f"{url}/embeddings?dataset={name}")
    wait_map(page, n)
    out["first_paint_s"] = time.perf_counter() - t0
    page.wait_for_timeout(1500)  # let the page settle (the map reports 'loaded' back)
    # hover: the thumbnail in the tooltip
    i, x, y = point_on_screen(page, True)
    page.mouse.move(x - 30, y - 30)
    page.wait_for_timeout(300)
    t0 = time.perf_counter()
    page.mouse.move(x, y)
    page.locator(".pm-tip img").wait_for(state="visible", timeout=30_000)
    out["hover_thumbnail_s"] = time.perf_counter() - t0
    # click: the opened image and its neighbours, on CLICKS different points (median)
    clicks, start = [], 0
    for _ in range(CLICKS):
        i, x, y = point_on_screen(page, True, start)
        page.mouse.move(x, y)
        page.wait_for_timeout(600)  # the hover's own rerun is over
        shown = page.evaluate("() => (document.body.innerText.match(/· point [0-9,]+/) || [''])[0]")
        t0 = time.perf_counter()
        page.mouse.click(x, y)
        # the opened point's caption ("... · point 85,571") changes (the map opens the top-most point
        # under the cursor, which need not be i) and its neighbours are listed
        page.wait_for_function("(before) => { const t = document.body.innerText; const m = t.match(/· point [0-9,]+/); "
                               "return m && m[0] !== before && t.includes('nearest neighbours share its class'); }",
                               arg=shown, timeout=30_000)
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)
        clicks.append(time.perf_counter() - t0)
        start = i + max(1, n // (CLICKS + 1))
    out["click_neighbours_s"] = float(np.median(clicks))
    out["click_max_s"] = max(clicks)
    out["clicked_point"] = i
    # pan / zoom: the map's own redraw times
    frames = []
    box = page.locator(".pm-canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    for step in range(12):
        page.mouse.wheel(0, -240 if step < 8 else 240)
        page.wait_for_timeout(120)
        frames.append(float(_pm_eval(page, "return pm.frameMs;")))
    for k in range(6):
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 80 * (1 if k % 2 else -1), cy + 40, steps=4)
        page.mouse.up()
        page.wait_for_timeout(120)
        frames.append(float(_pm_eval(page, "return pm.frameMs;")))
    out["frame_ms_median"] = float(np.median(frames))
    out["frame_ms_max"] = float(np.max(frames))
    out.update(memory(page, cdp, browser_cdp))
    shot = ROOT / "artifacts" / "screenshots" / f"bench_maps_{n}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=False)
    out["screenshot"] = str(shot)
    ctx.close()
    return out


def measure_neighbours(name: str, cache: Path, queries: int = 20) -> dict[str, float]:
    from core.geometry.chunked import chunked_cosine_neighbours
    from core.io.imports import open_imported

    s = open_imported(name, cache)
    X, norms = s.vectors, np.asarray(s.norms)
    rng = np.random.default_rng(1)
    qs = rng.choice(s.n, size=queries, replace=False)
    times, hits = [], 0
    chunked_cosine_neighbours(np.asarray(X[0], np.float32), X, norms, k=10, exclude=[0])  # warm
    for q in qs:
        t0 = time.perf_counter()
        nb = chunked_cosine_neighbours(np.asarray(X[q], np.float32), X, norms, k=10, exclude=[q])
        times.append(time.perf_counter() - t0)
        if len(qs) and q == qs[0] or s.n <= 200_000:  # brute force in float32 (slow at 1M: one query)
            ref = np.empty(s.n, np.float32)
            for a in range(0, s.n, 65_536):
                B = np.asarray(X[a:a + 65_536], np.float32)
                ref[a:a + len(B)] = (B @ np.asarray(X[q], np.float32)) / np.maximum(norms[a:a + len(B)], 1e-12)
            ref[q] = -np.inf
            top = set(np.argpartition(-ref, 9)[:10].tolist())
            hits += len(top & set(nb.indices[0].tolist()))
    checked = queries if s.n <= 200_000 else 1
    return {"neighbours_median_s": float(np.median(times)), "recall_at_10": hits / (10 * checked),
            "recall_queries": checked}


def measure_umap(name: str, cache: Path, rows: int) -> dict[str, float]:
    """UMAP fitted on a 20,000-point sample of the first ``rows`` points of a set, the rest placed by
    their nearest sample points (what the page does above 50,000 points): fit time, placement rate,
    and the time that rate implies for the whole set. Progress is printed per block."""
    from core.io.imports import open_imported
    from core.projection.projectors import ProjectionParams
    from core.projection.sampled import SAMPLE, project_sampled

    s = open_imported(name, cache)
    X = s.vectors[:rows]
    ticks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    def tick(done: int, total: int) -> None:
        ticks.append((time.perf_counter() - t0, done))
        print(f"  UMAP {done:,} / {total:,} placed, {ticks[-1][0]:.0f} s", flush=True)

    project_sampled(X, ProjectionParams("umap", n_components=2, metric="cosine"), sample=SAMPLE["umap"],
                    progress=tick, place="neighbours")
    total = time.perf_counter() - t0
    fit = ticks[0][0] - (ticks[1][0] - ticks[0][0]) if len(ticks) > 1 else total  # first tick = fit + one block
    rate = (ticks[-1][1] - ticks[0][1]) / max(ticks[-1][0] - ticks[0][0], 1e-9) if len(ticks) > 1 else float("nan")
    return {"umap_rows": rows, "umap_total_s": total, "umap_fit_s": fit, "umap_transform_points_per_s": rate,
            "umap_implied_s_for_set": fit + (s.n - SAMPLE["umap"]) / rate}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--keep", default=None, help="keep the generated files and cache in this folder")
    ap.add_argument("--umap-rows", type=int, default=0,
                    help="also time UMAP (20k-sample fit, the rest placed by neighbours) on this many points of the "
                         "largest set")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bl_maps_"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    cache.mkdir(exist_ok=True)
    from core.io.imports import import_table, list_imported

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {}
    have = {s.name: s.n for s in list_imported(cache)}
    for n in sizes:
        name = f"synthetic_{n // 1000}k"
        r = rows[n] = {}
        if have.get(name) != n:
            f = work / f"{name}.parquet"
            t0 = time.perf_counter()
            synthetic_parquet(f, n, args.dim)
            r["generate_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            import_table(f, name, cache=cache, precision="float16")  # what the bench describes, at any size
            r["import_s"] = time.perf_counter() - t0
            f.unlink()
        r.update(measure_neighbours(name, cache))
        print(f"[{n:,}] generated/imported: {r}", flush=True)
    from playwright.sync_api import sync_playwright

    proc, url = start_app(cache)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            browser_cdp = browser.new_browser_cdp_session()
            for n in sizes:
                name = f"synthetic_{n // 1000}k"
                ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
                page = ctx.new_page()
                t0 = time.perf_counter()
                page.goto(f"{url}/embeddings?dataset={name}")
                wait_map(page, n, timeout_s=600)
                rows[n]["first_open_uncached_s"] = time.perf_counter() - t0
                ctx.close()
                rows[n].update(measure_browser(url, name, n, browser, browser_cdp))
                print(f"[{n:,}] browser: {rows[n]}", flush=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    if args.umap_rows:
        r = measure_umap(f"synthetic_{max(sizes) // 1000}k", cache, args.umap_rows)
        print(f"UMAP: {r}")
    print(f"\nload average: {os.getloadavg()}")
    print("| points | import s | first open (PCA computed) s | first paint (cached) s | hover thumbnail s | "
          "click -> 10 neighbours s (median / max of 5) | neighbour search s | recall@10 | frame ms median / max | "
          "JS heap MB | tab (renderer) RSS MB | browser RSS MB (all its processes) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, r in rows.items():
        print(f"| {n:,} | {r.get('import_s', float('nan')):.1f} | {r['first_open_uncached_s']:.1f} | "
              f"{r['first_paint_s']:.2f} | {r['hover_thumbnail_s']:.2f} | {r['click_neighbours_s']:.2f} / {r['click_max_s']:.2f} | "
              f"{r['neighbours_median_s']:.3f} | {r['recall_at_10']:.2f} | {r['frame_ms_median']:.0f} / "
              f"{r['frame_ms_max']:.0f} | {r['js_heap_mb']:.0f} | {r['renderer_rss_mb']:.0f} | {r['browser_rss_mb']:.0f} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
