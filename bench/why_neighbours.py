"""Why neighbours: cost of one pair, and the deletion check over neighbour pairs.

    .venv/bin/python bench/why_neighbours.py speed      # seconds and peak memory per backbone and input size
    .venv/bin/python bench/why_neighbours.py deletion   # top pairs vs random patches on 8 neighbour pairs

``speed``: for each built-in backbone at 224 and 448 px, one pair (two stamps) in a fresh process: a
plain forward of the pair (the embeddings alone, for the ratio), the decomposition (one forward of the
pair; the CLS-stream re-run for the ViT), the deletion check (18 more images through the model), the
figure, and the process's peak RSS. The pair matrix is ``[Na, Nb]``
(1024 x 1024 for the ViT at 448 px); nothing depends on the dataset's size.

``deletion``: eight images drawn at random (seed 1) with their nearest neighbour under each backbone;
for each pair the cosine drop when the patches of the top k pairs are blurred in both images, against
the mean drop of 8 random draws of as many patches (k = 10, 30, 100).
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STAMPS = ROOT / "sample_data" / "stamps"
PAIR = ("birds/crow.png", "bovines/bull.png")
NAMES = ("mobilenetv2", "efficientnet_lite0", "vits14_saliency")


def _speed_one(name: str, size: int, queue) -> None:
    from core.io.images import decode_image
    from core.models.registry import create_backbone
    from core.relate.figure import why_figure
    from core.relate.why import why_neighbours

    torch.set_num_threads(2)
    images = [decode_image((STAMPS / p).read_bytes(), p) for p in PAIR]
    bb = create_backbone(name)
    why_neighbours(bb, *images, size=size)  # warm-up (first-call allocations, lazy imports)
    x = bb.preprocess(images, size)
    tf = time.perf_counter()
    with torch.inference_mode():
        bb.embed(x)
    forward = time.perf_counter() - tf
    t0 = time.perf_counter()
    r = why_neighbours(bb, *images, size=size)
    t1 = time.perf_counter()
    why_neighbours(bb, *images, size=size, check=True)
    t2 = time.perf_counter()
    why_figure(*images, r)
    t3 = time.perf_counter()
    queue.put((name, size, r.grids[0], r.method, forward, t1 - t0, (t2 - t1) - (t1 - t0), t3 - t2,
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def speed() -> None:
    import os

    print(f"load average {os.getloadavg()[0]:.1f} (2 cores)")
    print("backbone            size  grid    method       forward s  decompose s (x forward)  check s  figure s  peak RSS MB")
    ctx = mp.get_context("spawn")
    for name in NAMES:
        for size in (224, 448):
            q = ctx.Queue()
            p = ctx.Process(target=_speed_one, args=(name, size, q))
            p.start()
            row = q.get()
            p.join()
            n, s, g, m, fwd, dec, chk, fig, rss = row
            print(f"{n:18s}  {s:4d}  {g[0]:2d}x{g[1]:<2d}   {m:11s}  {fwd:9.2f}  {dec:11.2f} ({dec / fwd:4.1f}x)     "
                  f"{chk:7.2f}  {fig:8.2f}  {rss:11.0f}")


def deletion(names=NAMES, ks=(10, 30, 100), n_pairs: int = 8) -> None:
    import os

    from core.io.images import load_folder
    from core.models.registry import create_backbone
    from core.relate.contributions import top_links
    from core.relate.deletion import deletion_check
    from core.relate.why import why_neighbours

    print(f"load average {os.getloadavg()[0]:.1f} (2 cores)")
    ds = load_folder(STAMPS)
    images = [r.decode() for r in ds.records]
    for name in names:
        bb = create_backbone(name)
        with torch.inference_mode():
            e = torch.cat([bb.embed(bb.preprocess(images[i:i + 16])) for i in range(0, len(images), 16)])
        e = torch.nn.functional.normalize(e, dim=-1)
        sim = e @ e.T
        sim.fill_diagonal_(-2)
        nn = sim.argmax(1)
        idx = np.random.default_rng(1).choice(len(images), n_pairs, replace=False)
        top = {k: [] for k in ks}
        rnd = {k: [] for k in ks}
        for i in idx:
            j = int(nn[i])
            r = why_neighbours(bb, images[i], images[j])
            x = bb.preprocess([images[i], images[j]])
            for k in ks:
                c = deletion_check(bb, x, r.block, top_links(r.terms, k), r.grids)
                top[k].append(c.top_drop)
                rnd[k].append(c.random_drop)
            print(f"  {name}: {ds.records[i].name} ~ {ds.records[j].name}: cosine {r.cosine:.3f}, "
                  + ", ".join(f"k={k} {top[k][-1]:+.4f} vs {rnd[k][-1]:+.4f}" for k in ks), flush=True)
        for k in ks:
            t, q = np.array(top[k]), np.array(rnd[k])
            print(f"{name} ({r.method}) k={k}: top pairs drop more in {(t > q).sum()}/{len(t)} pairs; "
                  f"mean drop {t.mean():+.4f} vs random {q.mean():+.4f}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "speed"
    {"speed": speed, "deletion": deletion}[what]()
