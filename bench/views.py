"""Every view of the Prototypes and Compare pages at dataset scale: seconds and peak memory per view.

Calls the same core functions the pages call, with the pages' default parameters, on synthetic
clustered features of N images (float32, as read from the feature cache): backbone A ``[N, 1280]``
(MobileNetV2's width) and backbone B ``[N, 384]`` (the ViT's), related through a shared class
structure. The page adds its own drawing on top (a second or two). Each view is timed once, in the
order a user meets them; the peak resident memory of the process after each view shows what a
view holds.

Usage:
    .venv/bin/python bench/views.py                 # N = 100,000, 10 classes
    .venv/bin/python bench/views.py --n 20000 --classes 24
"""
from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from core.classify.classifiers import classifier_info, classifier_names
from core.classify.evaluation import evaluate, few_shot_curve
from core.classify.incremental import class_incremental, class_order
from core.classify.margins import misclassified, prototype_distances
from core.classify.ood import unknown_class_ood
from core.classify.tables import classifier_kwargs, teen_alpha_sweep, teen_repeated
from core.compare.cka import cka_matrix, layer_cka, layer_cka_sample_size, rbf_sample_size
from core.compare.indices import INDICES, index_matrices
from core.compare.metrics import feature_metrics, silhouette_sample_size
from core.geometry.vectors import METRICS


def synthetic(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A [n, 1280], B [n, 384], labels [n])``: class centres plus per-image noise in a shared
    64-D latent space, mapped into each width by a fixed random matrix (plus noise of its own)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    z = rng.normal(size=(classes, 64))[y] * 1.0 + rng.normal(size=(n, 64)) * 1.2  # [n, 64]
    A = np.empty((n, 1280), np.float32)
    B = np.empty((n, 384), np.float32)
    Ma, Mb = rng.normal(size=(64, 1280)) / 8, rng.normal(size=(64, 384)) / 8
    for s in range(0, n, 20_000):  # in blocks: no float64 [n, 1280] temporary
        A[s:s + 20_000] = np.abs(z[s:s + 20_000] @ Ma + 0.5 * rng.normal(size=(len(z[s:s + 20_000]), 1280)))
        B[s:s + 20_000] = z[s:s + 20_000] @ Mb + 0.5 * rng.normal(size=(len(z[s:s + 20_000]), 384))
    return A, B, np.array([f"class_{c:02d}" for c in y])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(page: str, view: str, fn: Callable[[], Any], note: str = "") -> Any:
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    flag = "" if dt <= 30 else "  > 30 s"
    print(f"{page:10s} {view:44s} {dt:8.1f} s {peak_mb():9.0f} MB  {note}{flag}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--skip", default="", help="comma-separated view names to skip (substring match)")
    args = ap.parse_args()
    skip = [s for s in args.skip.split(",") if s]

    t0 = time.perf_counter()
    A, B, y = synthetic(args.n, args.classes)
    print(f"{args.n:,} images, {args.classes} classes; A [{args.n}, 1280], B [{args.n}, 384] float32 "
          f"(made in {time.perf_counter() - t0:.1f} s, {peak_mb():.0f} MB)")
    print(f"{'page':10s} {'view':44s} {'seconds':>10s} {'peak RSS':>12s}")
    X, metric, test_size, seed = A, "cosine", 0.3, 0
    run = lambda page, view, fn, note="": None if any(s in view for s in skip) else timed(page, view, fn, note)  # noqa: E731

    # ---- Prototypes (pages/prototypes.py, default tab parameters) ---------------------------------
    run("Prototypes", "prototypes + image-to-prototype distances", lambda: prototype_distances(X, y, metric))
    results = {}
    for m in classifier_names():
        results[m] = run("Prototypes", f"classifiers: {m}",
                         lambda m=m: evaluate(X, y, m, test_size=test_size, seed=seed, **classifier_kwargs(m, metric)))
    if results.get("nmc") is not None:
        run("Prototypes", "misclassified images", lambda: misclassified(X, y, results["nmc"], metric))
    run("Prototypes", "few-shot 1,2,3,5 x nb,linear,nmc,nb_per_class x10",
        lambda: few_shot_curve(X, y, shots=(1, 2, 3, 5), methods=("nb", "linear", "nmc", "nb_per_class"), draws=10, seed=seed))
    classes = sorted(set(y))
    order = class_order(classes, "sorted", seed)
    extra = [m for m in ("lda", "ranpac", "fecam") if classifier_info(m).incremental]
    for m in (*METRICS, *extra):  # the tab runs each behind one progress bar
        kw = {"metric": m} if m in METRICS else {"method": m}
        run("Prototypes", f"class-incremental, 4 tasks: {m}", lambda kw=kw: class_incremental(X, y, 4, order, test_size, seed, **kw))
    base = classes[: max(1, len(classes) // 2)]
    run("Prototypes", "TEEN, k = 1, 10 draws + alpha sweep (5 draws)",
        lambda: (teen_repeated(X, y, base, 1, 0.5, 16.0, draws=10, seed=seed, test_size=test_size),
                 teen_alpha_sweep(X, y, base, 1, 16.0, draws=5, seed=seed, test_size=test_size)))
    run("Prototypes", "out-of-distribution scores (no unknown class)", lambda: unknown_class_ood(X, y, (), test_size=test_size, seed=seed))

    # ---- Compare (pages/compare.py) -----------------------------------------------------------------
    n = args.n
    for name, F in (("A", A), ("B", B)):
        run("Compare", f"metrics row {name} (NMC, k-NN, linear, few-shot, silh.)", lambda F=F: feature_metrics(F, y),
            f"silhouette on {silhouette_sample_size(n):,}")
    run("Compare", "linear CKA between backbones", lambda: cka_matrix([A, B], kind="linear"), f"all {n:,}")
    run("Compare", "RBF CKA between backbones", lambda: cka_matrix([A, B], kind="rbf"), f"sample of {rbf_sample_size(n):,}")
    rng = np.random.default_rng(1)
    blocks = [B + (0.5 * i * rng.normal(size=B.shape)).astype(np.float32) for i in range(4)]  # 4 "blocks", [n, 384] each
    run("Compare", "layer-by-layer CKA, 4 x 4 blocks", lambda: layer_cka(blocks, blocks),
        f"minibatches on {layer_cka_sample_size(n):,}")
    run("Compare", "four indices (200 draws, 100 shuffles each)",
        lambda: index_matrices(list(INDICES), [A, B], ["A", "B"],
                               progress=lambda d, t: print(f"{'':10s}   {d} / {t} indices", flush=True)))


if __name__ == "__main__":
    main()
