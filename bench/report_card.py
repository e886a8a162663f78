"""The saliency report card at dataset speed: seconds per image, and per image in units of one plain forward pass.

For each backbone and each limit, in one run:
1. one plain forward pass of one 224 px picture through the backbone (the model output the scores read,
   under ``inference_mode``; median of 5 after a warm-up), and the per-picture cost in a batch of the card's
   size (8 on the CPU, 32 on a GPU);
2. the card end to end as a user runs it: ``backbone-lens saliency-report --limit N --json`` in a fresh
   process with an empty cache (Python start, imports, weights, embeddings of the dataset, every method
   scored), wall time and peak memory of that process;
3. the same command again on the filled cache (the second run scores nothing).

It prints the card's own seconds per image and their ratio to the plain forward (the number of forward
passes' worth of work one picture costs), with the load average beside each line: the machine is shared.
``--grow`` builds a larger labelled set from the stamps (each photo, its mirror image and its 90-degree
rotation, alpha channels kept) for limits over 48.

Usage: .venv/bin/python bench/report_card.py [--backbones mobilenetv2,vits14_saliency] [--limits 8]
       [--images sample_data/stamps] [--grow] [--device cpu] [--threads 2] [--save DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def grow(src: Path, dest: Path) -> Path:
    """Every photo of ``src/<class>/`` three times under ``dest/<class>/``: as is, mirrored, rotated 90 degrees."""
    from PIL import Image

    for p in sorted(src.rglob("*.png")):
        out = dest / p.parent.relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        im = Image.open(p)
        im.save(out / p.name)
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out / f"{p.stem}_mirror.png")
        im.transpose(Image.Transpose.ROTATE_90).save(out / f"{p.stem}_rot90.png")
    return dest


def plain_forward(name: str, device: str) -> tuple[float, float, int]:
    """``(seconds for one picture alone, seconds per picture in a batch, that batch)`` through the scored
    output; the batch is the card's (:func:`core.explain.faithfulness.scoring_batch`: 8 on the CPU)."""
    import torch

    from core.explain.faithfulness import scoring_batch
    from core.explain.targets import ModelOutput
    from core.models.registry import create_backbone

    b = create_backbone(name)
    b.model.to(device)
    out = ModelOutput(b, "logits" if b.spec.has_classifier else "embedding")
    s = b.spec.input_size
    B = scoring_batch(b.device)
    one, many = torch.randn(1, 3, s, s, device=device), torch.randn(B, 3, s, s, device=device)
    times: dict[int, list[float]] = {1: [], B: []}
    with torch.inference_mode():
        for x in (one, many):
            out(x)  # warm-up
            for _ in range(5 if x is one else 2):
                if device == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                out(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                times[x.shape[0]].append((time.perf_counter() - t) / x.shape[0])
    return statistics.median(times[1]), statistics.median(times[B]), B


def run_card(name: str, images: Path, limit: int, cache: Path, device: str, threads: int) -> tuple[float, dict, float]:
    """``(wall seconds, the card's JSON, peak RSS MiB)`` of one CLI run in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c",
           f"import resource, sys, torch; torch.set_num_threads({threads}); from core.cli import main; "
           "rc = main(sys.argv[1:]); "
           "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)",
           "--cache", str(cache), "saliency-report", "--backbone", name, "--images", str(images), "--limit", str(limit),
           "--device", device, "--json"]
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"{name} --limit {limit} failed:\n{p.stderr[-2000:]}")
    rss = next(int(ln.split()[1]) for ln in p.stderr.splitlines() if ln.startswith("peak_rss_kib")) / 1024
    return wall, json.loads(p.stdout), rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", default="mobilenetv2,vits14_saliency")
    ap.add_argument("--limits", default="8")
    ap.add_argument("--images", default=str(ROOT / "sample_data" / "stamps"))
    ap.add_argument("--grow", action="store_true", help="three views of every photo (for limits over the dataset)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", default=None, help="folder to write each card's JSON to (<backbone>_<limit>.json)")
    args = ap.parse_args()
    import torch

    from core.explain.methods import available_methods
    from core.explain.scoring import FaithfulnessSettings, forwards_per_picture
    from core.io.paths import cache_dir
    from core.models.registry import create_backbone

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        images = grow(Path(args.images), Path(tmp) / "grown") if args.grow else Path(args.images)
        print(f"device {args.device}, {args.threads} threads, images {images}"
              f"{' (grown x3)' if args.grow else ''}; {_load()}")
        for name in args.backbones.split(","):
            f1, fb, batch = plain_forward(name, args.device)
            spec = create_backbone(name).spec
            n_methods = len(available_methods(spec))
            print(f"{name}: one plain forward {f1 * 1000:.1f} ms alone, {fb * 1000:.1f} ms per picture in a batch of {batch}; "
                  f"{n_methods} methods, {forwards_per_picture(n_methods, FaithfulnessSettings())} perturbed inputs "
                  f"per picture at most (fewer where maps coincide); {_load()}")
            for limit in (int(v) for v in args.limits.split(",")):
                cache = Path(tmp) / f"cache_{name}_{limit}"
                cache.mkdir()
                weights = cache_dir() / "weights"  # converted weights are made once per install, not per card
                if weights.is_dir():
                    (cache / "weights").symlink_to(weights, target_is_directory=True)
                wall, card, rss = run_card(name, images, limit, cache, args.device, args.threads)
                n = len(card["images"])
                if args.save:
                    Path(args.save).mkdir(parents=True, exist_ok=True)
                    (Path(args.save) / f"{name}_{limit}.json").write_text(json.dumps(card))
                per = card["seconds"] / n
                print(f"  {n:4d} images: {wall:7.1f} s end to end (card {card['seconds']:.1f} s), {per:6.2f} s per image "
                      f"= {per / f1:6.0f} x one forward alone, {per / fb:6.0f} x one batched forward; peak RSS "
                      f"{rss:,.0f} MiB; {_load()}")
                wall2, card2, _ = run_card(name, images, limit, cache, args.device, args.threads)
                print(f"  {n:4d} images again (cached): {wall2:7.1f} s end to end, {card2['n_computed']} scored; {_load()}")


if __name__ == "__main__":
    main()
