"""Projection speed (PCA, UMAP, t-SNE at 1k / 10k / 50k points) and UMAP quality of the fast
settings against plain umap-learn defaults.

Speed: each (method, N) runs in a fresh Python process that projects the same data twice:
"cold" is the first call (includes ``import umap`` and numba JIT / cache loading), "warm" the
second. Quality: trustworthiness (k=10, cosine, on the original embeddings) of 2,000 points
embedded by plain ``umap.UMAP(metric="cosine")`` and by ``core.projection.projectors`` at both of its UMAP
epoch settings; PCA and t-SNE for reference.

Data: ``--embeddings file.npz`` (key ``embeddings``, ``[n0, D]``) replicated with noise to N rows,
else synthetic anisotropic Gaussian clusters in 384 dims.

Usage: .venv/bin/python bench/projection.py [--embeddings emb.npz] [--sizes 1000,10000,50000]
       [--methods pca,umap,tsne] [--tsne-max 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from core.projection.projectors import ProjectionParams, project

TRUST_N = 2_000
TRUST_K = 10


def load_embeddings(path: str | Path) -> np.ndarray:
    """Embeddings ``[N, D]`` float32 from an ``.npz`` with an ``embeddings`` array."""
    with np.load(path) as z:
        if "embeddings" not in z.files:
            raise ValueError(f"{path}: no 'embeddings' array (found {z.files}); save with np.savez(path, embeddings=X)")
        X = np.asarray(z["embeddings"], dtype=np.float32)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"{path}: 'embeddings' must be [N, D] with N >= 2, got shape {X.shape}")
    return X


def synthetic_embeddings(n: int, d: int = 384, n_clusters: int = 20, seed: int = 0) -> np.ndarray:
    """``[n, d]`` Gaussian clusters whose covariances have a power-law spectrum (variance of
    direction j ~ j^-0.6, like the decaying PCA spectrum of real embeddings) in random orientations."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, d + 1) ** -0.3  # std per direction
    rot = [np.linalg.qr(rng.normal(size=(d, d)))[0] for _ in range(4)]  # [d, d] orthogonal
    centres = (rng.normal(size=(n_clusters, d)) * scale * 4) @ rot[0]  # [k, d]
    lab = rng.integers(0, n_clusters, n)
    X = np.empty((n, d), dtype=np.float32)
    for c in range(n_clusters):
        m = lab == c
        X[m] = centres[c] + (rng.normal(size=(m.sum(), d)) * scale) @ rot[c % 4]
    return X


def replicate(X: np.ndarray, n: int, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """``[n, D]``: rows of ``X`` drawn with replacement plus Gaussian noise of ``noise`` times
    each feature's std."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(X), n)
    return (X[idx] + noise * X.std(axis=0) * rng.normal(size=(n, X.shape[1]))).astype(np.float32)


def get_data(n: int, embeddings: str | None, seed: int = 0) -> np.ndarray:
    """The benchmark data: replicated real embeddings if a path is given, else synthetic."""
    return replicate(load_embeddings(embeddings), n, seed=seed) if embeddings else synthetic_embeddings(n, seed=seed)


def worker(method: str, n: int, embeddings: str | None) -> dict[str, float]:
    """Two identical projections in this process: ``{"cold": s, "warm": s}``."""
    X = get_data(n, embeddings)
    params = ProjectionParams(method)
    out = {}
    for tag in ("cold", "warm"):
        t = time.perf_counter()
        project(X, params)
        out[tag] = time.perf_counter() - t
    return out


def run_worker(method: str, n: int, embeddings: str | None, timeout: float) -> dict[str, float] | str:
    """``worker`` in a fresh interpreter; a string says why there is no result."""
    cmd = [sys.executable, __file__, "--worker", method, str(n)] + (["--embeddings", embeddings] if embeddings else [])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if r.returncode != 0:
        return f"failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def trust_table(embeddings: str | None, seed: int = 0) -> list[tuple[str, float, float]]:
    """``(setting, seconds, trustworthiness)`` on TRUST_N points; run after the speed table so
    numba is warm."""
    import umap
    from sklearn.manifold import trustworthiness

    X = get_data(TRUST_N, embeddings, seed=seed + 1)
    settings = {
        "umap-learn defaults (cosine, raw D)":
            lambda: umap.UMAP(metric="cosine", random_state=seed, n_jobs=1).fit_transform(X),
        "core umap, N<=2000 setting (500 ep)": lambda: project(X, ProjectionParams("umap", seed=seed)),
        "core umap, large-N setting (200 ep)": lambda: project(X, ProjectionParams("umap", seed=seed, n_epochs=200)),
        "core pca": lambda: project(X, ProjectionParams("pca", seed=seed)),
        "core tsne": lambda: project(X, ProjectionParams("tsne", seed=seed)),
    }
    rows = []
    for name, fn in settings.items():
        if "umap" in name:
            fn()  # warm up: numba compiles each UMAP code path once per process
        t = time.perf_counter()
        E = fn()
        dt = time.perf_counter() - t
        rows.append((name, dt, float(trustworthiness(X, E, n_neighbors=TRUST_K, metric="cosine"))))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embeddings", default=None, help=".npz with an 'embeddings' array [N, D]")
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--methods", default="pca,umap,tsne")
    ap.add_argument("--tsne-max", type=int, default=10_000, help="skip t-SNE above this N")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per (method, N) process")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.embeddings)))
        return

    import sklearn
    import umap

    t_all = time.perf_counter()
    src = f"{args.embeddings} replicated with noise" if args.embeddings else "synthetic clusters, D=384"
    print(f"data: {src}; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load avg {os.getloadavg()[0]:.2f}; umap-learn {umap.__version__}, scikit-learn {sklearn.__version__}")
    print(f"{'method':6s} {'N':>7s} {'cold s':>8s} {'warm s':>8s}")
    for method in args.methods.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            if method == "tsne" and n > args.tsne_max:
                print(f"{method:6s} {n:7d}  skipped: t-SNE grows ~N log N, several minutes per call at "
                      f"this size on 2 cores; raise --tsne-max to run it")
                continue
            r = run_worker(method, n, args.embeddings, args.timeout)
            if isinstance(r, str):
                print(f"{method:6s} {n:7d}  {r}")
            else:
                print(f"{method:6s} {n:7d} {r['cold']:8.2f} {r['warm']:8.2f}", flush=True)

    print(f"\ntrustworthiness (k={TRUST_K}, cosine, on the original embeddings), N={TRUST_N}, warm:")
    print(f"{'setting':38s} {'s':>6s} {'trust':>7s}")
    for name, dt, tw in trust_table(args.embeddings):
        print(f"{name:38s} {dt:6.2f} {tw:7.4f}")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s, load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
