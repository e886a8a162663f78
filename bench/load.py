"""Load test: N concurrent browser users on one app server (headless Chromium, Playwright).

Each user is its own browser context (its own Streamlit session), starting 1 s after the previous
one: it opens the app, uploads four stamps of
its own in the sidebar (one batch), then opens Saliency and then Segmentation. A
page counts as done when Streamlit has finished running it and the page's first picture is shown;
a user succeeds when every step finished without an error or exception box.

Printed: successes, page latency (click in the navigation -> page done) p50 / p95 over all
users and pages, per-page medians, wall time, and the server process's peak resident memory
(sampled every 0.2 s from /proc).

The server is started here (a free loopback port, the feature cache in a temp folder that links
the converted weights, so no user finds features another run left) unless --url names one.

Usage: .venv/bin/python bench/load.py [--users 8] [--url http://127.0.0.1:8501 --pid PID]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, link_converted_weights, start_app

STAMPS = ROOT / "sample_data" / "stamps"
HOME_TEXT = "See what pretrained vision backbones see"
IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
PAGE_TIMEOUT_MS = 600_000
STAGGER_S = 1.0


@dataclass
class UserResult:
    user: int
    ok: bool = False
    latencies: dict[str, float] = field(default_factory=dict)
    error: str = ""


class _RssSampler(threading.Thread):
    """Peak VmRSS of a process (kB), sampled until stopped."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_kb = pid, every_s, 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            self.halt.wait(self.every_s)


def _user_files(user: int, workdir: Path) -> dict[str, list[Path]]:
    """Two stamps of two classes, different for each user (so no result is shared by content)."""
    out: dict[str, list[Path]] = {}
    classes = sorted(p.name for p in STAMPS.iterdir())
    for c in (classes[user % len(classes)], classes[(user + 3) % len(classes)]):
        files = sorted((STAMPS / c).glob("*.png"))
        d = workdir / f"user{user}"
        d.mkdir(parents=True, exist_ok=True)
        out[c] = []
        for k in range(2):
            src = files[(user // len(classes) * 2 + k) % len(files)]
            dst = d / f"u{user}_{c}_{k}.png"
            shutil.copy(src, dst)
            out[c].append(dst)
    return out


def _say(user: int, what: str) -> None:
    print(f"  user {user}: {what}", file=sys.stderr, flush=True)


async def _idle(page) -> None:
    await page.wait_for_timeout(500)
    await page.wait_for_function(IDLE_JS, timeout=PAGE_TIMEOUT_MS)


async def _check_no_error(page, where: str) -> None:
    for tid in ("stException",):
        if await page.get_by_test_id(tid).count():
            raise RuntimeError(f"{where}: {(await page.get_by_test_id(tid).first.inner_text())[:200]}")
    alerts = page.get_by_test_id("stAlertContentError")
    if await alerts.count():
        raise RuntimeError(f"{where}: {(await alerts.first.inner_text())[:200]}")


async def _user(browser, url: str, user: int, workdir: Path) -> UserResult:
    res = UserResult(user)
    await asyncio.sleep(user * STAGGER_S)  # people do not all arrive in the same second
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)  # a loaded 2-core machine: waits, not failures
    page.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    try:
        await page.goto(url, wait_until="domcontentloaded")
        await page.get_by_text(HOME_TEXT).wait_for(timeout=PAGE_TIMEOUT_MS)
        await _idle(page)
        sidebar = page.get_by_test_id("stSidebar")
        t0 = time.perf_counter()
        await sidebar.get_by_text("Uploads", exact=True).click()
        await _idle(page)
        files = [p for fs in _user_files(user, workdir).values() for p in fs]
        await sidebar.locator("input[type='file']").set_input_files([str(p) for p in files])
        await sidebar.get_by_label("Class name for this batch (optional)").fill(f"user{user}")
        await page.wait_for_timeout(1000)
        await sidebar.get_by_role("button", name="Add to dataset").click()
        await _idle(page)
        await sidebar.get_by_text(f"{len(files)} uploaded images").wait_for(timeout=PAGE_TIMEOUT_MS)
        res.latencies["upload"] = time.perf_counter() - t0
        _say(user, f"uploaded in {res.latencies['upload']:.1f} s")
        await _check_no_error(page, "upload")
        for title in ("Saliency", "Segmentation"):
            t0 = time.perf_counter()
            await page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
            await page.get_by_role("heading", name=title).first.wait_for(timeout=PAGE_TIMEOUT_MS)
            await _idle(page)
            await page.get_by_test_id("stMain").get_by_test_id("stImage").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            await _idle(page)
            res.latencies[title] = time.perf_counter() - t0
            await _check_no_error(page, title)
            _say(user, f"{title} in {res.latencies[title]:.1f} s")
        res.ok = True
    except Exception as e:  # one user's failure is a result, not the end of the run
        res.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        _say(user, f"failed: {res.error}")
        await page.screenshot(path=str(workdir / f"user{user}_failed.png"), full_page=True)
    finally:
        await ctx.close()
    return res


async def _run(url: str, users: int, workdir: Path) -> list[UserResult]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            return list(await asyncio.gather(*(_user(browser, url, i, workdir) for i in range(users))))
        finally:
            await browser.close()


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--url", help="an app already running (default: start one here)")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bl-load-"))
    proc = None
    if args.url:
        url, pid = args.url, args.pid
    else:
        (workdir / "cache").mkdir()
        link_converted_weights(workdir / "cache")
        proc, url = start_app(workdir / "cache")
        pid = proc.pid
    sampler = _RssSampler(pid) if pid else None
    if sampler:
        sampler.start()
    t0 = time.perf_counter()
    try:
        results = asyncio.run(_run(url, args.users, workdir))
    finally:
        wall = time.perf_counter() - t0
        if sampler:
            sampler.halt.set()
            sampler.join()
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    ok = [r for r in results if r.ok]
    pages = [v for r in ok for k, v in r.latencies.items() if k != "upload"]
    print(f"users: {args.users}, succeeded: {len(ok)}/{len(results)}, wall {wall:.1f} s, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if pages:
        print(f"page latency (navigation click -> page done), {len(pages)} pages: "
              f"p50 {statistics.median(pages):.1f} s, p95 {_pct(pages, 0.95):.1f} s")
        for step in ("upload", "Saliency", "Segmentation"):
            xs = [r.latencies[step] for r in ok if step in r.latencies]
            print(f"  {step:<12} median {statistics.median(xs):.1f} s, max {max(xs):.1f} s")
    if sampler:
        print(f"peak server RSS: {sampler.peak_kb / 1024:.0f} MiB")
    for r in results:
        if not r.ok:
            print(f"user {r.user} failed: {r.error} (screenshot in {workdir})")
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
