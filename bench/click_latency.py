"""Click -> new mask drawn, as a user feels it: the Segmentation page in headless Chromium.

Starts the app (``streamlit run app.py``) on a free loopback port, opens the Segmentation page with
vits14_saliency at the chosen input size, waits for the first full run, then clicks the picture at
``--clicks`` points and times each click until the clickable picture shows the new mask (its image
source changed and finished loading). With the click view as a fragment only that view reruns.

Usage:
    .venv/bin/python bench/click_latency.py [--size 448] [--clicks 12] [--sharp] [--app PATH/app.py]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, link_converted_weights, start_app

FRAME = "iframe[title^='streamlit_image_coordinates']"
IMAGE_READY = """([sel, old]) => {
    const f = document.querySelector(sel);
    const i = f && f.contentDocument && f.contentDocument.getElementById('image');
    return !!i && i.src !== old && i.complete && i.naturalWidth > 0 ? i.src : false;
}"""


def _idle(page, timeout: int = 600_000) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--clicks", type=int, default=12)
    ap.add_argument("--sharp", action="store_true", help="turn 'Pixel-sharp edges' on first")
    ap.add_argument("--app", type=Path, default=ROOT / "app.py")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        link_converted_weights(cache)
        proc, url = start_app(cache, args.app.resolve())
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 1300})
                page.goto(url)
                nav = page.get_by_test_id("stSidebarNav").get_by_text("Segmentation", exact=True)
                nav.wait_for(timeout=300_000)
                _idle(page)
                nav.click()
                page.get_by_role("heading", name="Segmentation").wait_for(timeout=300_000)
                _idle(page)
                page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(
                    has_text="Input size").click()
                page.get_by_role("option", name=str(args.size), exact=True).click()
                _idle(page)
                if args.sharp:
                    page.get_by_text("Pixel-sharp edges").click()
                    _idle(page)
                page.wait_for_function(IMAGE_READY, arg=[FRAME, ""], timeout=300_000)
                img = page.frame_locator(FRAME).locator("#image")
                box = img.bounding_box()
                times = []
                for n in range(args.clicks + 1):  # the first click warms the fragment path up
                    old = page.evaluate(IMAGE_READY, [FRAME, ""])
                    u, v = 0.15 + 0.7 * ((n * 0.37) % 1), 0.15 + 0.7 * ((n * 0.61) % 1)
                    t0 = time.perf_counter()
                    img.click(position={"x": u * box["width"], "y": v * box["height"]})
                    page.wait_for_function(IMAGE_READY, arg=[FRAME, old], timeout=120_000, polling="raf")
                    dt = time.perf_counter() - t0
                    if n:
                        times.append(dt)
                    _idle(page)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(20)
    ms = sorted(t * 1e3 for t in times)
    print(f"click -> new mask drawn, Segmentation page, vits14_saliency at {args.size} px"
          f"{', pixel-sharp edges' if args.sharp else ''} ({args.app}): median {statistics.median(ms):.0f} ms, "
          f"min {ms[0]:.0f}, max {ms[-1]:.0f} over {len(ms)} clicks; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
