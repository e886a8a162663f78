"""Every Prototypes and Compare view on imported sets of 100,000 points, read from their memory maps.

The same core calls as bench/views.py (the pages' defaults), but the features are two *imported sets*
(``backbone-lens import`` of synthetic clustered embeddings: A ``[N, 1280]`` and B ``[N, 384]``, stored
float16 since they exceed the float32 limit of precision "auto"), opened as the pages and the CLI open
them: ``X = set.vectors`` (a read-only float16 memory map), ``y = set.labels()``; Compare takes them as
embedding sources aligned by path (B's rows shuffled, so the alignment does real work). Paths cycle
over the bundled stamps, every 10th one missing.

Per view: seconds, the 1-minute load average when it ended (the machine is shared), and memory: the
peak anonymous resident memory of the process while the view ran (``RssAnon``, sampled every 10 ms:
what the view allocated, the memory map's pages excluded since they are file-backed and shared) and its
rise above the view's start (freed heap is handed back to the OS before each view, so that start is
what is alive). ``--baseline`` runs each Prototypes view a second time on the same values
as float32 arrays in RAM (the Compare views on float32 copies of the aligned sources) and prints the
time ratio.

Usage:
    .venv/bin/python bench/imported.py                  # N = 100,000, 10 classes
    .venv/bin/python bench/imported.py --n 20000 --baseline
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.views import synthetic
from core.classify.classifiers import classifier_info, classifier_names
from core.classify.evaluation import evaluate, few_shot_curve
from core.classify.incremental import class_incremental, class_order
from core.classify.margins import misclassified, prototype_distances
from core.classify.ood import unknown_class_ood
from core.classify.tables import classifier_kwargs, teen_alpha_sweep, teen_repeated
from core.compare.agreement import agreement_map
from core.compare.cka import cka_matrix, rbf_sample_size
from core.compare.indices import INDICES, index_matrices
from core.compare.metrics import feature_metrics, silhouette_sample_size
from core.compare.sources import align_sources, imported_source
from core.geometry.vectors import METRICS
from core.io.imports import import_table
from core.io.policy import ServerPolicy

STAMPS = Path(__file__).resolve().parents[1] / "sample_data" / "stamps"


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _release_freed() -> None:
    """Hand freed heap back to the OS (glibc keeps large freed blocks after its mmap threshold has grown),
    so each view's memory starts from what is alive, not from what earlier views left allocated."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass  # not glibc: the figures then include what the allocator kept


class PeakAnon:
    """The highest ``RssAnon`` of this process while the block runs (a 10 ms sampling thread)."""

    def __enter__(self) -> PeakAnon:
        self.start = self.peak = _rss_anon_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_anon_mb())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_anon_mb())


def _write_npz(path: Path, X: np.ndarray, y: np.ndarray, paths: np.ndarray) -> None:
    np.savez(path, embeddings=X, paths=paths, labels=y)


def make_sets(n: int, classes: int, cache: Path, images: Path) -> tuple[float, float]:
    """Import A and B (B's rows shuffled) into ``cache``; point i's path is ``images/img{i}.png``, a link to
    a bundled stamp (none for every 10th point: not readable). Returns the two import times."""
    A, B, y = synthetic(n, classes)
    stamps = sorted(STAMPS.rglob("*.png"))
    paths = np.array([str(images / f"img{i:07d}.png") for i in range(n)])
    for i in range(n):
        if i % 10 != 9:
            os.symlink(stamps[i % len(stamps)], paths[i])
    perm = np.random.default_rng(7).permutation(n)
    tmp = Path(tempfile.mkdtemp(prefix="bench_imported_"))
    _write_npz(tmp / "A.npz", A, y, paths)
    _write_npz(tmp / "B.npz", B[perm], y[perm], paths[perm])
    del A, B
    gc.collect()
    times = []
    for name in ("A", "B"):
        t = time.perf_counter()
        import_table(tmp / f"{name}.npz", f"bench_{name}", cache=cache)
        times.append(time.perf_counter() - t)
        (tmp / f"{name}.npz").unlink()
    tmp.rmdir()
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--cache", default=None, help="where the sets are imported (default: a temporary folder)")
    ap.add_argument("--skip", default="", help="comma-separated view names to skip (substring match)")
    ap.add_argument("--baseline", action="store_true", help="also time each view on float32 arrays in RAM (ratio)")
    args = ap.parse_args()
    skip = [s for s in args.skip.split(",") if s]
    cache = Path(args.cache or tempfile.mkdtemp(prefix="bench_imported_cache_"))
    images = Path(tempfile.mkdtemp(prefix="bench_imported_images_"))

    ta, tb = make_sets(args.n, args.classes, cache, images)
    gc.collect()
    sa, sb = imported_source("bench_A", cache), imported_source("bench_B", cache)
    print(f"{args.n:,} points, {args.classes} classes: imported A [{args.n}, 1280] in {ta:.1f} s and B [{args.n}, 384] "
          f"in {tb:.1f} s, stored {sa.imported.dtype if sa.imported else '?'}; load average "
          f"{os.getloadavg()[0]:.1f}; RssAnon now {_rss_anon_mb():.0f} MB")
    print(f"{'page':10s} {'view':46s} {'seconds':>8s} {'load':>5s} {'peak anon':>10s} {'rise':>8s}"
          + ("  vs RAM" if args.baseline else ""))
    X, y = sa.X, sa.labels  # the memory map and the labels, as the pages and `evaluate --imported` take them
    R = np.asarray(X, dtype=np.float32) if args.baseline else None  # the same values in RAM (baseline only)

    def run(page: str, view: str, fn: Callable[[np.ndarray], Any], note: str = "") -> Any:
        if any(s in view for s in skip):
            return None
        _release_freed()
        with PeakAnon() as mem:
            t = time.perf_counter()
            out = fn(X)
            dt = time.perf_counter() - t
        ratio = ""
        if R is not None and "align" not in view:
            _release_freed()
            t = time.perf_counter()
            fn(R)
            ratio = f"  {dt / (time.perf_counter() - t):5.2f}x"
        flag = "  > 30 s" if dt > 30 else ""
        print(f"{page:10s} {view:46s} {dt:8.1f} {os.getloadavg()[0]:5.1f} {mem.peak:8.0f}MB {mem.peak - mem.start:6.0f}MB"
              f"{ratio}  {note}{flag}", flush=True)
        return out

    metric, test_size, seed = "cosine", 0.3, 0
    # ---- Prototypes -----------------------------------------------------------------------------------
    run("Prototypes", "prototypes + image-to-prototype distances", lambda F: prototype_distances(F, y, metric))
    results = {}
    for m in classifier_names():
        results[m] = run("Prototypes", f"classifiers: {m}",
                         lambda F, m=m: evaluate(F, y, m, test_size=test_size, seed=seed, **classifier_kwargs(m, metric)))
    pol = ServerPolicy(data_roots=(images.resolve(), STAMPS.resolve()))
    if results.get("nmc") is not None:
        def mistakes(F: np.ndarray) -> Any:
            mis = misclassified(F, y, results["nmc"], metric)
            shown = list(mis.rows[:24]) + list(mis.exemplar[:24])  # the tab's first page of pictures
            readable = sum(sa.imported.image_bytes(int(i), pol) is not None for i in shown)  # type: ignore[union-attr]
            return mis, readable
        run("Prototypes", "misclassified + nearest wrong prototype (+ 48 files)", mistakes)
    run("Prototypes", "few-shot 1,2,3,5 x nb,linear,nmc,nb_per_class x10",
        lambda F: few_shot_curve(F, y, shots=(1, 2, 3, 5), methods=("nb", "linear", "nmc", "nb_per_class"), draws=10,
                                 seed=seed))
    classes = sorted(set(y.tolist()))
    order = class_order(classes, "sorted", seed)
    extra = [m for m in ("lda", "ranpac", "fecam") if classifier_info(m).incremental]
    for m in (*METRICS, *extra):
        kw = {"metric": m} if m in METRICS else {"method": m}
        run("Prototypes", f"class-incremental, 4 tasks: {m}",
            lambda F, kw=kw: class_incremental(F, y, 4, order, test_size, seed, **kw))
    base = classes[: max(1, len(classes) // 2)]
    run("Prototypes", "TEEN, k = 1, 10 draws + alpha sweep (5 draws)",
        lambda F: (teen_repeated(F, y, base, 1, 0.5, 16.0, draws=10, seed=seed, test_size=test_size),
                   teen_alpha_sweep(F, y, base, 1, 16.0, draws=5, seed=seed, test_size=test_size)))
    run("Prototypes", "out-of-distribution scores (no unknown class)",
        lambda F: unknown_class_ood(F, y, (), test_size=test_size, seed=seed))
    if R is not None:  # A's copy is dropped: the Compare views' baseline reads `ram` (below) when given R
        R = np.zeros((1, 1), np.float32)
    gc.collect()

    # ---- Compare: two imported sets as sources, aligned by path -----------------------------------------
    al = run("Compare", "align A and B by path (B shuffled)", lambda F: align_sources([sa, sb]))
    if al is None:
        return
    print(f"{'':10s} {al.summary()}")
    n = al.n_shared
    ram = [np.asarray(f, dtype=np.float32) for f in al.features] if R is not None else []

    def feats(F: np.ndarray) -> list[np.ndarray]:
        """The aligned sources as the comparison reads them (``F is X``), or their float32 copies in RAM."""
        return al.features if F is X else ram

    for i, name in enumerate(("A", "B")):
        run("Compare", f"metrics row {name} (NMC, k-NN, linear, few-shot, silh.)",
            lambda F, i=i: feature_metrics(feats(F)[i], al.labels), f"silhouette on {silhouette_sample_size(n):,}")
    run("Compare", "linear CKA between the sources", lambda F: cka_matrix(feats(F), kind="linear"), f"all {n:,}")
    run("Compare", "RBF CKA between the sources", lambda F: cka_matrix(feats(F), kind="rbf"),
        f"sample of {rbf_sample_size(n):,}")
    run("Compare", "four indices (200 draws, 100 shuffles each)",
        lambda F: index_matrices(list(INDICES), feats(F), al.source_names))
    run("Compare", "agreement map (mutual k-NN overlap per image)", lambda F: agreement_map(*feats(F), k=10),
        "on the index's sample")
    print(f"process peak RSS (incl. file-backed pages of the maps) "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
