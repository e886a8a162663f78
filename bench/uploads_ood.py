"""The new per-upload pieces at scale: the "far from every class" rule (calibration and one verdict) at
N = 1,000 / 10,000 / 100,000 dataset images, and the upload store's add / reload / sweep with many sessions.

Rule: synthetic clustered float32 features (``[N, 1280]`` and ``[N, 384]``, 10 classes); calibration
cross-fits 5 folds on at most ``MAX_REFERENCE`` images (a stratified sample), so it stops growing there.
Store: ``--sessions`` sessions of 10 small PNGs each, then the time of one more add (its bounds read
every session's list of files), of a reload (a new store object reading and hashing its files) and of
a sweep of every session. Peak resident memory of the process is printed after each step.

Usage:
    .venv/bin/python bench/uploads_ood.py
    .venv/bin/python bench/uploads_ood.py --sizes 1000 10000 --sessions 100
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import tempfile
import time

import numpy as np
from PIL import Image

from core.classify.ood_rule import calibrate_ood
from core.io.uploads import UploadLimits, UploadStore, new_token


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(n: int, d: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d)).astype(np.float32)
    X = centres[y] + 0.8 * rng.normal(size=(n, d)).astype(np.float32)  # [n, d]
    return X, y.astype(str)


def bench_rule(sizes: list[int]) -> None:
    print("far-from-every-class rule: calibrate (5 folds) + judge 4 images")
    for d in (384, 1280):
        for n in sizes:
            X, y = synthetic(n, d)
            U = synthetic(4, d, seed=1)[0] + 3.0
            for score in ("cosine", "mahalanobis"):
                t0 = time.perf_counter()
                ref = calibrate_ood(X, y, score=score)  # type: ignore[arg-type]
                t1 = time.perf_counter()
                ref.judge(U)
                t2 = time.perf_counter()
                print(f"  N={n:>7,} D={d:>4} {score:11s} reference {ref.n_reference:>6,}  calibrate {t1 - t0:6.2f} s  "
                      f"judge {1000 * (t2 - t1):7.1f} ms  peak RSS {_peak_mb():7.0f} MB")


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), i % 256, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def bench_store(n_sessions: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        lim = UploadLimits()
        t0 = time.perf_counter()
        toks = [new_token() for _ in range(n_sessions)]
        for s, tok in enumerate(toks):
            UploadStore(tok, root=root, limits=lim).add([(f"{s}_{i}.png", _png(s * 10 + i)) for i in range(10)])
        fill = time.perf_counter() - t0
        t0 = time.perf_counter()
        UploadStore(toks[0], root=root, limits=lim).add([("one-more.png", _png(99_999))])
        add = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = UploadStore(toks[0], root=root, limits=lim).dataset()
        reload = time.perf_counter() - t0
        os.utime(os.path.join(root, ".swept"), (0, 0))  # make the next open sweep every session
        t0 = time.perf_counter()
        UploadStore(new_token(), root=root, limits=lim)
        sweep = time.perf_counter() - t0
        print(f"  {n_sessions:>5} sessions x 10 files: filled in {fill:6.1f} s; one more add {1000 * add:7.1f} ms; reload "
              f"({len(ds)} files, hashed) {1000 * reload:6.1f} ms; sweep {1000 * sweep:6.1f} ms; peak RSS {_peak_mb():.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[1_000, 10_000, 100_000])
    ap.add_argument("--sessions", nargs="+", type=int, default=[10, 100, 1000])
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    bench_rule(args.sizes)
    print("upload store")
    for n in args.sessions:
        bench_store(n)


if __name__ == "__main__":
    main()
