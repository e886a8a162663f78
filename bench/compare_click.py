"""Click on the Compare page's agreement map -> the opened image's panel redrawn, as a user feels it.

Starts the app (``streamlit run app.py``) on a free loopback port with a cache of its own, opens the Compare
page by its link (``/compare?dataset=stamps&compare=A,B,C``: three backbones on the bundled stamps), waits for
the first full run (extraction with a progress bar per backbone, then the metrics, CKA and indices), then
clicks ``--clicks`` points of the agreement map and times each click until the panel names the clicked
image. The agreement map is a fragment: a click reruns that view alone. For contrast it then times one
rerun of the whole page (the panel's "Open it side by side below" button).

Usage:
    .venv/bin/python bench/compare_click.py [--clicks 12] [--backbones mobilenetv2,vits14_saliency,efficientnet_lite0]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from app_server import CHROMIUM, CHROMIUM_ARGS, link_converted_weights, start_app

POINT = """([i]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(
      g => ((g.layout.title || {}).text || '').includes('coloured by neighbours shared with'));
  gd.scrollIntoView({block: 'center'});
  const fl = gd._fullLayout, r = gd.getBoundingClientRect(), tr = gd._fullData[0];
  return {x: r.left + fl._size.l + fl.xaxis.l2p(tr.x[i]), y: r.top + fl._size.t + fl.yaxis.l2p(tr.y[i]),
          n: tr.x.length, chosen: gd._fullData[1].customdata[0], name: tr.text[i].split('<br>')[0]};
}"""
PANEL_IS = """([name]) => [...document.querySelectorAll('[data-testid=stMarkdownContainer]')]
    .some(e => e.innerText.startsWith(name + ' ') && / neighbours shared by /.test(e.innerText))"""


def _idle(page, timeout: int = 900_000) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=12)
    ap.add_argument("--backbones", default="mobilenetv2,vits14_saliency,efficientnet_lite0")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        link_converted_weights(cache)
        proc, url = start_app(cache)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1600, "height": 1200})
                t0 = time.perf_counter()
                page.goto(f"{url}/compare?dataset=stamps&compare={args.backbones}")
                page.get_by_text("Side by side", exact=True).wait_for(timeout=900_000)
                _idle(page)
                first = time.perf_counter() - t0
                print(f"first open ({args.backbones}, cold cache: extraction, metrics, CKA, indices, side by side): "
                      f"{first:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
                times = []
                pt = page.evaluate(POINT, [0])
                n = pt["n"]
                for c in range(args.clicks + 1):  # the first click warms the fragment path up
                    chosen = page.evaluate(POINT, [0])["chosen"]
                    i = (chosen + 1 + (c * 7) % (n - 1)) % n  # never the opened image
                    pt = page.evaluate(POINT, [i])
                    t = time.perf_counter()
                    page.mouse.click(pt["x"], pt["y"])
                    page.wait_for_function(PANEL_IS, arg=[pt["name"]], timeout=120_000, polling="raf")
                    dt = time.perf_counter() - t
                    if c:
                        times.append(dt)
                    _idle(page)
                t = time.perf_counter()
                page.get_by_role("button", name="Open it side by side below").click()
                page.wait_for_timeout(200)
                _idle(page)
                full = time.perf_counter() - t
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"agreement-map click -> panel: median {statistics.median(times):.2f} s, slowest {max(times):.2f} s over "
          f"{len(times)} clicks; the whole page rerun by 'Open it side by side below' (that image's saliency and patch "
          f"tokens for every backbone): {full:.1f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
