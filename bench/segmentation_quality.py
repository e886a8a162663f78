"""Segmentation quality on real ground truth: the stamps pasted onto crops of the bundled scene photos
(``scenes``: clutter and other objects around the stamp) or onto plain textured backgrounds
(``textures``: the stamp is the only object).

Prints the mean IoU of each mask method (patch-PCA foreground, thresholded CLS attention, normalized
cut, boundary prior; click-on-object similarity with Otsu's threshold and with the border rule; the
patch-grid ceiling and the whole-picture floor), each also made pixel-sharp by the guided filter
(``+gf``), for each backbone and input size, and the best automatic (no click) column.

Usage:
    .venv/bin/python bench/segmentation_quality.py                      # all stamps, both benchmarks, 224 and 448
    .venv/bin/python bench/segmentation_quality.py --sizes 448 --backbones vits14_saliency --backgrounds textures
    .venv/bin/python bench/segmentation_quality.py --sizes 224 --backbones vits14_saliency --thresholds 0.3 0.5
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from core.io.images import load_folder
from core.models.registry import create_backbone
from core.segment.quality import AUTOMATIC as AUTO_METHODS
from core.segment.quality import GF, METHODS, REFINED, composite_on_textures, composite_stamps, evaluate

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [c for m in METHODS for c in ([m, m + GF] if m in REFINED else [m])]
AUTOMATIC = [c for c in COLUMNS if c.split("+")[0] in AUTO_METHODS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["vits14_saliency", "mobilenetv2", "efficientnet_lite0"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[224, 448])
    ap.add_argument("--backgrounds", nargs="+", choices=["scenes", "textures"], default=["scenes", "textures"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N stamps")
    ap.add_argument("--layers", nargs="+", type=int, default=[-1], help="block(s) of the patch tokens")
    ap.add_argument("--thresholds", nargs="*", type=float, default=[],
                    help="also score click masks at these fixed cosine thresholds (default: Otsu only)")
    args = ap.parse_args()

    stamps = load_folder(ROOT / "sample_data" / "stamps").records[: args.limit]
    scenes = sorted((ROOT / "sample_data" / "scenes").glob("*.jpg"))
    backbones = {name: create_backbone(name) for name in args.backbones}
    for bg in args.backgrounds:
        comps = (composite_stamps(stamps, scenes, seed=args.seed) if bg == "scenes"
                 else composite_on_textures(stamps, seed=args.seed))
        fg = np.mean([c.mask.mean() for c in comps])
        print(f"\n[{bg}] {len(comps)} composites (320x320, stamps on "
              f"{f'crops of {len(scenes)} scenes' if bg == 'scenes' else 'plain textures'}, seed {args.seed}); "
              f"object area {fg:.1%} of the picture on average")
        print(f"{'backbone':18s} {'size':>4s} {'grid':>5s} {'block':>5s} {'click thr':>9s} | "
              + " ".join(f"{c:>{max(9, len(c))}s}" for c in COLUMNS) + " |    best auto | seconds")
        for name, b in backbones.items():
            for size in args.sizes:
                for layer in args.layers:
                    for thr in [None, *args.thresholds]:
                        t0 = time.perf_counter()
                        r = evaluate(b, comps, size=size, layer=layer, click_threshold=thr)
                        means = {c: r.mean(c) for c in COLUMNS}
                        cells = " ".join(f"{'n/a':>{max(9, len(c))}s}" if np.isnan(v) else f"{v:{max(9, len(c))}.3f}"
                                         for c, v in means.items())
                        best = max((c for c in AUTOMATIC if not np.isnan(means[c])), key=lambda c: means[c])
                        print(f"{name:18s} {size:4d} {r.grid[0]:2d}x{r.grid[1]:<2d} {r.layer:5d} "
                              f"{r.click_threshold:>9s} | {cells} | {best:>12s} | {time.perf_counter() - t0:.1f}",
                              flush=True)


if __name__ == "__main__":
    main()
