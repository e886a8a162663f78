"""Time the similarity indices (core.compare.indices) on N synthetic images: the point estimate, and
the bootstrap draws and shuffles that come with it. Two representations: X [N, 384] and Y [N, 1280]
(X's 384 columns plus 896 of noise, so they are related).

Usage: .venv/bin/python bench/indices.py [--n 100000] [--draws 10] [--shuffles 10]
(the defaults of core.compare.indices.estimate are 200 draws and 100 shuffles)
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from core.compare import indices as I


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--shuffles", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, 384)).astype(np.float32)
    Y = np.hstack([X, rng.normal(size=(args.n, 896)).astype(np.float32)])
    for name in I.INDICES:
        t0 = time.perf_counter()
        I.estimate(name, X, Y, n_boot=0, n_perm=0)
        t1 = time.perf_counter()
        e = I.estimate(name, X, Y, n_boot=args.draws, n_perm=args.shuffles)
        t2 = time.perf_counter()
        print(f"{name:13s} N={args.n}: value {e.value:.3f} on {e.n_images} images; point estimate {t1 - t0:.1f} s; "
              f"with {args.draws} draws + {args.shuffles} shuffles (on {e.n_resample} images) {t2 - t1:.1f} s",
              flush=True)


if __name__ == "__main__":
    main()
