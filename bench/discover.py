"""Category discovery at scale: seconds and peak memory of `core.discover` at 10,000 and 100,000 images.

Synthetic clustered float32 features (as read from the feature cache) of 30 classes, 20 known and 10
hidden (the GCD protocol: half of each known class's images keep their labels, the rest and every
hidden image are unlabelled), at D = 384 (the ViT's width) and 1,280 (MobileNetV2's). Each size runs
in its own process, so its peak resident memory is its own; "work MB" is that peak minus the resident
memory once the features exist (what discovery itself holds). Phases, with the library's defaults:

- ``ss-kmeans``: :func:`core.discover.discover` with k = 10 (SS-k-means, n_init 10, fitted on at most
  20,000 unlabelled images then all assigned; the cluster summaries);
- ``kmeans_all``: the plain k-means baseline on all images (same settings);
- ``auto-k``: :func:`core.discover.estimate_k` (k-means runs on a 3,000-image sample, 5 per candidate,
  candidates 0..40 on a coarse grid then refined).

With ``--page``, instead: the Discover page's run (:func:`core.discover.discover` with ``k="auto"`` and a
progress callback, as the page's worker makes it): seconds, the number of progress reports and the longest
wait between two of them (how long the page's bar can stand still).

With ``--stamps``, instead: All / Old / New of SS-k-means and of k-means on all images for the three
built-in backbones on the bundled stamps, the mean over 4 sets of 3 hidden classes x 5 seeds.

Usage:
    .venv/bin/python bench/discover.py                   # 10k and 100k, D 384 and 1280
    .venv/bin/python bench/discover.py --sizes 100000 --dims 1280
    .venv/bin/python bench/discover.py --stamps
    .venv/bin/python bench/discover.py --page --sizes 100000 --dims 384,1280
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KNOWN, HIDDEN = 20, 10
STAMP_SPLITS = (("fish", "insects", "tools"), ("birds", "flowers", "vegetables"), ("bovines", "fruit", "tools"),
                ("birds", "fish", "fruit"))


def synthetic(n: int, d: int, classes: int = KNOWN + HIDDEN, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X [n, d] float32, labels [n])``: class centres plus per-image noise in a 64-D latent space,
    mapped into ``d`` dimensions by a fixed random matrix, plus noise of its own (made in blocks)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, 64))
    M = rng.normal(size=(64, d)) / 8
    X = np.empty((n, d), np.float32)
    for s in range(0, n, 20_000):
        yb = y[s:s + 20_000]
        z = centres[yb] + 1.5 * rng.normal(size=(len(yb), 64))  # classes overlap a little
        X[s:s + 20_000] = z @ M + 0.3 * rng.normal(size=(len(yb), d))
    return X, np.array([f"class_{c:02d}" for c in y])


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(n: int, d: int) -> dict:
    """Every phase at one size, in this process."""
    from core.discover import discover, estimate_k, hide_classes, kmeans, split_cluster_accuracy

    X, y = synthetic(n, d)
    base = rss_mb()
    split = hide_classes(y, [f"class_{c:02d}" for c in range(KNOWN, KNOWN + HIDDEN)])
    shown = np.where(split.labelled, y, "")
    out = {"n": n, "d": d, "load_before": os.getloadavg()[0], "data_mb": X.nbytes / 2**20}
    t, c = time.perf_counter(), time.process_time()
    disc = discover(X, shown, k=HIDDEN)
    out["ss_s"], out["ss_cpu"] = time.perf_counter() - t, time.process_time() - c
    u = disc.unlabelled
    out["ss"] = split_cluster_accuracy(y[u], disc.assignment[u], split.old[u]).as_dict()
    out["n_fit"] = disc.fit.n_fit
    t, c = time.perf_counter(), time.process_time()
    km = kmeans(X, KNOWN + HIDDEN)
    out["km_s"], out["km_cpu"] = time.perf_counter() - t, time.process_time() - c
    out["km"] = split_cluster_accuracy(y[u], km.labels[u], split.old[u]).as_dict()
    lab = split.labelled
    t, c = time.perf_counter(), time.process_time()
    curve = estimate_k(X[lab], y[lab], X[~lab])
    out["auto_s"], out["auto_cpu"] = time.perf_counter() - t, time.process_time() - c
    out["auto_k"], out["auto_points"] = curve.best, len(curve.k_new)
    out["work_mb"] = peak_mb() - base
    out["peak_mb"] = peak_mb()
    out["load_after"] = os.getloadavg()[0]
    return out


def page_run(n: int, d: int) -> dict:
    """The Discover page's call at one size: ``discover(k="auto")`` with a progress callback."""
    from core.discover import discover, hide_classes

    X, y = synthetic(n, d)
    split = hide_classes(y, [f"class_{c:02d}" for c in range(KNOWN, KNOWN + HIDDEN)])
    shown = np.where(split.labelled, y, "")
    stamps_: list[tuple[float, str]] = []
    out = {"n": n, "d": d, "load_before": os.getloadavg()[0]}
    t0, c = time.perf_counter(), time.process_time()
    disc = discover(X, shown, "auto", progress=lambda done, total, stage: stamps_.append((time.perf_counter(), stage)))
    end = time.perf_counter()
    out["s"], out["cpu"] = end - t0, time.process_time() - c
    times = [t0] + [t for t, _ in stamps_] + [end]
    gaps = np.diff(times)
    out["reports"], out["max_gap"], out["first"] = len(stamps_), float(gaps.max()), float(gaps[0])
    worst = int(np.argmax(gaps))
    out["max_gap_stage"] = stamps_[min(worst, len(stamps_) - 1)][1] if stamps_ else ""
    out["k_new"] = disc.k_new
    out["load_after"] = os.getloadavg()[0]
    return out


def stamps() -> None:
    from core.discover import evaluate_discovery
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.extract import extract_features
    from core.models.registry import create_backbone

    records = load_folder(ROOT / "sample_data" / "stamps").records
    print(f"stamps: 48 images, 8 classes; 3 hidden, 50 % of the others' images labelled; mean over "
          f"{len(STAMP_SPLITS)} hidden sets x 5 seeds; load average {os.getloadavg()[0]:.1f}")
    print(f"{'backbone':20s} {'SS All':>7s} {'Old':>6s} {'New':>6s} {'km All':>7s} {'Old':>6s} {'New':>6s}")
    for name in ("vits14_saliency", "mobilenetv2", "efficientnet_lite0"):
        fs = extract_features(create_backbone(name), records, store=FeatureStore())
        X, y = fs["embedding"], np.asarray(fs.labels)
        rows = []
        for hidden in STAMP_SPLITS:
            for seed in range(5):
                r = evaluate_discovery(X, y, hidden, seed=seed)
                rows.append([r.ss_kmeans.all, r.ss_kmeans.old, r.ss_kmeans.new,
                             r.kmeans_all.all, r.kmeans_all.old, r.kmeans_all.new])
        print(f"{name:20s} " + " ".join(f"{v:6.3f}" for v in np.mean(rows, axis=0)))


def _acc(a: dict) -> str:
    return "/".join(f"{a[k]:.3f}" for k in ("all", "old", "new"))


def _sec(r: dict, phase: str) -> str:
    return f"{r[phase + '_s']:6.1f} ({r[phase + '_cpu']:5.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--dims", default="384,1280")
    ap.add_argument("--stamps", action="store_true", help="accuracy on the bundled stamps instead")
    ap.add_argument("--page", action="store_true", help="the Discover page's run: seconds and progress reports")
    ap.add_argument("--one", nargs=2, type=int, metavar=("N", "D"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(page_run(*args.one) if args.page else one(*args.one)))
        return
    if args.page:
        print("the Discover page's run: discover(k='auto') with progress; seconds wall (CPU of the process)")
        for n in (int(s) for s in args.sizes.split(",")):
            for d in (int(s) for s in args.dims.split(",")):
                p = subprocess.run([sys.executable, __file__, "--page", "--one", str(n), str(d)], capture_output=True,
                                   text=True, cwd=ROOT)
                if p.returncode:
                    print(p.stderr[-2000:])
                    raise SystemExit(p.returncode)
                r = json.loads(p.stdout.strip().splitlines()[-1])
                print(f"N {n:,} D {d}: {r['s']:.1f} s ({r['cpu']:.1f}), k_new {r['k_new']}; {r['reports']} progress "
                      f"reports, first after {r['first']:.1f} s, longest wait {r['max_gap']:.1f} s (before a "
                      f"'{r['max_gap_stage']}' report); load average {r['load_before']:.1f}-{r['load_after']:.1f}",
                      flush=True)
        return
    if args.stamps:
        stamps()
        return
    print(f"{KNOWN} known + {HIDDEN} hidden classes, synthetic clustered float32 features; {os.cpu_count()} CPUs")
    print("seconds: wall (CPU time of the process, both cores summed)")
    print(f"{'N':>8s} {'D':>5s} {'ss-kmeans':>14s} {'kmeans_all':>14s} {'auto-k':>14s} {'work MB':>8s} "
          f"{'peak MB':>8s} {'features MB':>12s}  load avg  accuracy (SS All/Old/New | k-means All/Old/New), auto k")
    for n in (int(s) for s in args.sizes.split(",")):
        for d in (int(s) for s in args.dims.split(",")):
            p = subprocess.run([sys.executable, __file__, "--one", str(n), str(d)], capture_output=True, text=True,
                               cwd=ROOT)
            if p.returncode:
                print(p.stderr[-2000:])
                raise SystemExit(p.returncode)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"{n:8d} {d:5d} {_sec(r, 'ss'):>14s} {_sec(r, 'km'):>14s} {_sec(r, 'auto'):>14s} {r['work_mb']:8.0f} "
                  f"{r['peak_mb']:8.0f} {r['data_mb']:12.0f}  {r['load_before']:4.1f}-{r['load_after']:4.1f}  "
                  f"{_acc(r['ss'])} | {_acc(r['km'])}, k={r['auto_k']} ({r['auto_points']} candidates; fitted on "
                  f"{r['n_fit']:,})", flush=True)


if __name__ == "__main__":
    main()
