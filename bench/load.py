"""Load test: N concurrent browser users on one app server (headless Chromium, Playwright).

Each user is its own browser context (its own Streamlit session), starting 1 s after the previous
one: it opens the app, adds four stamps of its own in the sidebar's photos box (one batch, as a new
class), shows only its photos, then opens Saliency and then Segmentation. A
page counts as done when Streamlit has finished running it and the page's first picture is shown;
a user succeeds when every step finished without an error or exception box.

Rounds (``--rounds R``): the same N users come back R times, each round with fresh browser contexts
(new sessions; the previous round's are closed). Printed per round: successes (goal: all), page
latency (click in the navigation -> page done) p50 / p95 over all users and pages, per-page medians,
wall time, the server's resident memory (RSS, from /proc) at the end of the round and its peak
during it; at the start, the RSS once the server has started and served one page (the "before"), and
at the end the growth from the end of round 1 to the end of the last round (goal: bounded, no
growth).

``--under extraction``: while the users work, another process runs ``backbone-lens extract`` over the
sample stamps into the *server's own* feature cache, again and again (the ViT, a new input size and
block each time, so every run computes and writes): CPU contention plus a second writer on the
same SQLite files. Printed: how many extractions ran and any that failed (goal: none; a lock held
too long would show here as "locked by another process").

The server is started here (a free loopback port, the feature cache in a temp folder that links
the converted weights, so no user finds features another run left) unless --url names one.

Usage: .venv/bin/python bench/load.py [--users 8] [--rounds 10] [--under quiet|extraction]
       [--url http://127.0.0.1:8501 --pid PID --cache DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import subprocess
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


def _rss_kb(pid: int) -> int:
    """Current VmRSS of a process (kB), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Extraction(threading.Thread):
    """``backbone-lens extract`` into ``cache`` over and over until stopped, each run with another
    (input size, block) of the ViT so that it computes and writes every time."""

    def __init__(self, cache: Path, images: Path = STAMPS, backbone: str = "vits14_saliency"):
        super().__init__(daemon=True)
        self.cache, self.images, self.backbone = cache, images, backbone
        self.halt = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.runs: list[tuple[int, int, int, float, str]] = []  # (size, layer, exit status, seconds, last stderr line)

    def run(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        for size, layer in itertools.product(range(224, 449, 14), range(11, -1, -1)):
            if self.halt.is_set():
                return
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "--cache", str(self.cache), "extract", "--backbone", self.backbone,
                 "--images", str(self.images), "--size", str(size), "--layer", str(layer)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            _, err = self.proc.communicate()
            if self.halt.is_set():
                return  # stopped by us: not a result
            last = next((ln for ln in reversed(err.replace("\r", "\n").splitlines()) if ln.strip()), "")
            self.runs.append((size, layer, self.proc.returncode, time.perf_counter() - t0, last))

    def stop(self) -> None:
        self.halt.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.join(60)


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
        await sidebar.get_by_test_id("stExpander").filter(has_text="Add your photos").locator("summary").click()
        await _idle(page)
        files = [p for fs in _user_files(user, workdir).values() for p in fs]
        await sidebar.locator("input[type='file']").set_input_files([str(p) for p in files])
        for f in files:  # as a person does: Add once every photo is listed (sent to the server)
            await sidebar.get_by_text(f.name, exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)
        await sidebar.get_by_text("a new class", exact=True).click()
        await sidebar.get_by_label("Class name (for a new class)").fill(f"user{user}")
        await page.wait_for_timeout(1000)
        await sidebar.get_by_role("button", name="Add", exact=True).click()
        await _idle(page)
        await sidebar.get_by_text(f"Your photos ({len(files)})").wait_for(timeout=PAGE_TIMEOUT_MS)
        await sidebar.get_by_text("Only your photos", exact=True).click()  # the pages then work on these alone
        await _idle(page)
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


async def _warm_up(url: str) -> None:
    """One visit to the home page, so the "before" RSS is that of a server that has served a page."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(url, wait_until="domcontentloaded")
            await page.get_by_text(HOME_TEXT).wait_for(timeout=PAGE_TIMEOUT_MS)
            await _idle(page)
        finally:
            await browser.close()


def _report_round(k: int, results: list[UserResult], wall: float, rss_end_kb: int, peak_kb: int) -> None:
    ok = [r for r in results if r.ok]
    pages = [v for r in ok for key, v in r.latencies.items() if key != "upload"]
    line = (f"round {k}: {len(ok)}/{len(results)} users succeeded, wall {wall:.1f} s, load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if pages:
        line += f"; pages p50 {statistics.median(pages):.1f} s, p95 {_pct(pages, 0.95):.1f} s"
    if rss_end_kb:
        line += f"; server RSS at the end {rss_end_kb / 1024:.0f} MiB, peak {peak_kb / 1024:.0f} MiB"
    print(line, flush=True)
    for step in ("upload", "Saliency", "Segmentation"):
        xs = [r.latencies[step] for r in ok if step in r.latencies]
        if xs:
            print(f"  {step:<12} median {statistics.median(xs):.1f} s, max {max(xs):.1f} s")
    for r in results:
        if not r.ok:
            print(f"  user {r.user} failed: {r.error}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1, help="the users come back this many times (fresh sessions)")
    ap.add_argument("--under", choices=("quiet", "extraction"), default="quiet",
                    help="extraction: a concurrent `backbone-lens extract` into the server's cache throughout")
    ap.add_argument("--url", help="an app already running (default: start one here)")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    ap.add_argument("--cache", help="with --url and --under extraction: that server's cache folder")
    args = ap.parse_args(argv)
    if args.url and args.under == "extraction" and not args.cache:
        ap.error("--under extraction with --url needs --cache (the server's cache folder)")
    workdir = Path(tempfile.mkdtemp(prefix="bl-load-"))
    proc = None
    if args.url:
        url, pid, cache = args.url, args.pid, Path(args.cache) if args.cache else None
    else:
        cache = workdir / "cache"
        cache.mkdir()
        link_converted_weights(cache)
        proc, url = start_app(cache)
        pid = proc.pid
    extraction = _Extraction(cache) if args.under == "extraction" and cache is not None else None
    all_results: list[UserResult] = []
    rss_after: list[int] = []
    t_all = time.perf_counter()
    try:
        asyncio.run(_warm_up(url))
        rss_before = _rss_kb(pid) if pid else 0
        print(f"{args.users} users x {args.rounds} rounds, {args.under}; server RSS before: "
              f"{rss_before / 1024:.0f} MiB (started, one page served)", flush=True)
        if extraction is not None:
            extraction.start()
        for k in range(1, args.rounds + 1):
            sampler = _RssSampler(pid) if pid else None
            if sampler:
                sampler.start()
            t0 = time.perf_counter()
            results = asyncio.run(_run(url, args.users, workdir / f"round{k}"))
            wall = time.perf_counter() - t0
            if sampler:
                sampler.halt.set()
                sampler.join()
            time.sleep(2.0)  # let the closed sessions' script runs end before reading the RSS
            rss_after.append(_rss_kb(pid) if pid else 0)
            _report_round(k, results, wall, rss_after[-1], sampler.peak_kb if sampler else 0)
            all_results += results
    finally:
        if extraction is not None:
            extraction.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    ok = [r for r in all_results if r.ok]
    pages = [v for r in ok for key, v in r.latencies.items() if key != "upload"]
    print(f"all rounds: {len(ok)}/{len(all_results)} user visits succeeded, errors {len(all_results) - len(ok)}, "
          f"wall {time.perf_counter() - t_all:.1f} s")
    if pages:
        print(f"page latency over every round, {len(pages)} pages: p50 {statistics.median(pages):.1f} s, "
              f"p95 {_pct(pages, 0.95):.1f} s")
    if pid and rss_after:
        print(f"server RSS: before {rss_before / 1024:.0f} MiB, after each round "
              + ", ".join(f"{x / 1024:.0f}" for x in rss_after)
              + f" MiB; growth from round 1 to round {len(rss_after)}: {(rss_after[-1] - rss_after[0]) / 1024:+.0f} MiB")
    failed_extractions = 0
    if extraction is not None:
        failed = [r for r in extraction.runs if r[2] != 0]
        failed_extractions = len(failed)
        secs = [r[3] for r in extraction.runs if r[2] == 0]
        print(f"concurrent extraction: {len(extraction.runs)} runs finished, {len(failed)} failed"
              + (f", median {statistics.median(secs):.1f} s per run of 48 images" if secs else ""))
        for size, layer, rc, _, last in failed:
            print(f"  extract --size {size} --layer {layer}: exit {rc}: {last}")
    if len(ok) < len(all_results):
        print(f"screenshots of failed users in {workdir}")
    return 0 if len(ok) == len(all_results) and not failed_extractions else 1


if __name__ == "__main__":
    sys.exit(main())
