"""Extraction at dataset scale: images/s and peak memory of the local and the Ray engine, and the
time to re-open a large cached set.

For each size N, synthetic labelled JPEGs (8 classes, 512x384, distinct bytes) are generated once
under --workdir, then ``backbone-lens extract`` runs in a fresh process with an empty cache:

* local: ``extract --backbone B --images DIR`` (into the feature store); peak RSS of that process
  (``wait4``), and its growth per image over a run on ``--base`` images (the model's footprint).
* ray: ``extract --engine ray --out SHARDS`` on a private local Ray; peak RSS summed over the
  driver and every process it started (Ray's services and workers), sampled every 0.2 s.

``--open N`` instead builds a cached set of N tiny images (features written straight into the
store) and times re-opening it as the app and the CLI do: folder listing, file hashes (from the
file index), feature look-up and read-back, in a fresh process.

Usage:
  .venv/bin/python bench/scale.py [--sizes 2000,20000] [--engines local,ray] [--backbone mobilenetv2]
  .venv/bin/python bench/scale.py --open 100000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 8


def _make_image(args: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    path, i, w, h = args
    if path.exists():
        return
    rng = np.random.default_rng(i)
    c = i % CLASSES
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = (np.sin(xx / (20 + i % 13)) * 60 + np.cos(yy / (15 + i % 7)) * 60)[..., None]
    hue = np.array([(c * 37) % 255, (c * 91) % 255, (c * 53) % 255], np.float32)
    noise = rng.integers(-12, 13, size=(h, w, 3), dtype=np.int16)
    img = np.clip(base + hue + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    Image.fromarray(img).save(tmp, format="JPEG" if w > 64 else "PNG", quality=85)
    os.replace(tmp, path)


def make_images(folder: Path, n: int, w: int = 512, h: int = 384, ext: str = "jpg") -> Path:
    """``folder/class<k>/img<i>.<ext>`` for i < n (kept between runs)."""
    jobs = [(folder / f"class{i % CLASSES}" / f"img{i:07d}.{ext}", i, w, h) for i in range(n)]
    jobs = [j for j in jobs if not j[0].exists()]
    if jobs:
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            list(pool.map(_make_image, jobs, chunksize=256))
    return folder


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (kB), from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def run_cli(argv: list[str], cache: Path) -> tuple[float, int, int]:
    """Run ``backbone-lens`` in a new process: (wall s, peak RSS of the process kB, peak tree RSS kB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BACKBONE_LENS_CACHE": str(cache)}
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "core.cli", *argv], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak_tree = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_tree[0] = max(peak_tree[0], _tree_rss_kb(p.pid))
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    th.join()
    wall = time.perf_counter() - t
    out = p.stdout.read() if p.stdout else ""
    if p.returncode:
        raise RuntimeError(f"backbone-lens {' '.join(argv)} failed ({p.returncode}): {out}")
    return wall, usage.ru_maxrss, max(peak_tree[0], usage.ru_maxrss)


def bench_engines(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = args.engines.split(",")
    print(f"backbone {args.backbone}, input {args.size or 'default'}, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; synthetic 512x384 JPEGs, "
          f"{CLASSES} classes; fresh cache per run")
    print(f"{'engine':6s} {'N':>7s} {'wall s':>8s} {'img/s':>7s} {'peak RSS MB':>12s} {'tree RSS MB':>12s} "
          f"{'KB/image over base':>19s}")
    for engine in engines:
        base_rss = None
        for n in [args.base] + sizes:
            folder = make_images(work / f"synthetic-{n}", n)
            with tempfile.TemporaryDirectory(dir=work) as tmp:
                argv = ["extract", "--backbone", args.backbone, "--images", str(folder),
                        "--batch-size", str(args.batch_size)] + (["--size", str(args.size)] if args.size else [])
                if engine == "ray":
                    argv += ["--engine", "ray", "--out", str(Path(tmp) / "shards")]
                    if args.workers:
                        argv += ["--workers", str(args.workers)]
                wall, rss, tree = run_cli(argv, Path(tmp) / "cache")
            measure = tree if engine == "ray" else rss
            if n == args.base:
                base_rss = measure
                growth = ""
            else:
                growth = f"{(measure - base_rss) / (n - args.base):19.1f}" if base_rss else ""
            print(f"{engine:6s} {n:7d} {wall:8.1f} {n / wall:7.1f} {rss / 1024:12.0f} {tree / 1024:12.0f} {growth}",
                  flush=True)


_OPEN_SCRIPT = """
import os, sys, time
from core.io.images import load_folder
from core.io.store import FeatureStore
from core.models.extract import extract_features
from core.models.registry import create_backbone
b = create_backbone(sys.argv[2])
clock = lambda: (time.perf_counter(), time.process_time())
t0 = clock()
ds = load_folder(sys.argv[1])
t1 = clock()
fs = extract_features(b, ds.records, store=FeatureStore(), keep=False)
t2 = clock()
assert fs.stats.forwards == 0 and fs.stats.n_cached == len(ds.records), fs.stats
full = extract_features(b, ds.records, store=FeatureStore())
t3 = clock()
assert full.stats.forwards == 0
d = [[b_[k] - a_[k] for k in (0, 1)] for a_, b_ in ((t0, t1), (t1, t2), (t2, t3))]
print(len(ds.records), *[f"{v:.2f}" for pair in d for v in pair], os.getloadavg()[0], full["embedding"].shape[1])
"""


def bench_open(args: argparse.Namespace) -> None:
    from core.io.images import load_folder
    from core.io.store import FeatureKey, FeatureStore
    from core.models.extract import feature_layers, preprocessing_id
    from core.models.registry import create_backbone

    n = args.open
    work = Path(args.workdir)
    folder = make_images(work / f"tiny-{n}", n, w=32, h=32, ext="png")
    cache = work / f"open-cache-{n}"
    os.environ["BACKBONE_LENS_CACHE"] = str(cache)
    b = create_backbone(args.backbone)
    layers = feature_layers(b, ("embedding",), None)
    prep = preprocessing_id(b.spec, b.spec.input_size)
    store = FeatureStore()
    if len(store) < n:  # first open: hashes every file and fills the store with stand-in features
        t = time.perf_counter()
        ds = load_folder(folder)
        print(f"first open (reads and hashes {len(ds.records)} files): {time.perf_counter() - t:.1f} s")
        rng = np.random.default_rng(0)
        dim = 1280
        for i in range(0, len(ds.records), 2000):
            store.put_many({FeatureKey(b.spec.weights_id, prep, layers["embedding"], "embedding", r.sha256):
                            rng.normal(size=dim).astype(np.float32) for r in ds.records[i:i + 2000]})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BACKBONE_LENS_CACHE": str(cache)}
    res = subprocess.run([sys.executable, "-c", _OPEN_SCRIPT, str(folder), args.backbone], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    count = int(res[0])
    (lw, lc), (kw, kc), (rw, rc) = [(float(res[1 + 2 * i]), float(res[2 + 2 * i])) for i in range(3)]
    print(f"re-open a cached set of {count} images, {os.cpu_count()} CPUs, load average {float(res[7]):.1f} "
          f"(wall s / CPU s of this process):")
    print(f"  folder listing + hashes (file index) {lw:.2f} / {lc:.2f}")
    print(f"  feature look-up (which are cached)   {kw:.2f} / {kc:.2f}")
    print(f"  open = listing + hashes + look-up    {lw + kw:.2f} / {lc + kc:.2f}")
    print(f"  reading all embeddings back [{count}, {res[8]}] float32: {rw:.2f} / {rc:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--backbone", default="mobilenetv2")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=None, help="model input side (default: the backbone's)")
    ap.add_argument("--workers", type=int, default=None, help="Ray model actors")
    ap.add_argument("--base", type=int, default=64, help="images of the baseline run (the model's footprint)")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "backbone-lens-scale"))
    ap.add_argument("--open", type=int, default=0, help="time re-opening a cached set of this many images instead")
    args = ap.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.open:
        bench_open(args)
    else:
        bench_engines(args)


if __name__ == "__main__":
    main()
