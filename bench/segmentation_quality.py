"""Segmentation quality on real ground truth (stamps composited onto the bundled scene photos).

Prints the mean IoU of patch-PCA foreground, thresholded CLS attention and click-on-object similarity
masks (plus the patch-grid ceiling and the whole-picture floor) for each backbone and input size.

Usage:
    .venv/bin/python bench/segmentation_quality.py                      # all stamps, 224 and 448
    .venv/bin/python bench/segmentation_quality.py --sizes 224 --backbones vits14_saliency --thresholds 0.3 0.5
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from core.io.images import load_folder
from core.models.registry import create_backbone
from core.segment.quality import composite_stamps, evaluate

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("pca", "cls_attention", "click", "oracle", "full")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["vits14_saliency", "mobilenetv2", "efficientnet_lite0"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[224, 448])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N stamps")
    ap.add_argument("--layers", nargs="+", type=int, default=[-1], help="block(s) of the patch tokens")
    ap.add_argument("--thresholds", nargs="*", type=float, default=[],
                    help="also score click masks at these fixed cosine thresholds (default: Otsu only)")
    args = ap.parse_args()

    stamps = load_folder(ROOT / "sample_data" / "stamps").records[: args.limit]
    scenes = sorted((ROOT / "sample_data" / "scenes").glob("*.jpg"))
    comps = composite_stamps(stamps, scenes, seed=args.seed)
    fg = np.mean([c.mask.mean() for c in comps])
    print(f"{len(comps)} composites (320x320, stamps on crops of {len(scenes)} scenes, seed {args.seed}); "
          f"object area {fg:.1%} of the picture on average\n")
    print(f"{'backbone':20s} {'size':>4s} {'grid':>5s} {'block':>5s} {'click thr':>9s} | "
          + " ".join(f"{c:>13s}" for c in COLUMNS) + " | seconds")
    for name in args.backbones:
        b = create_backbone(name)
        for size in args.sizes:
            for layer in args.layers:
                for thr in [None, *args.thresholds]:
                    t0 = time.perf_counter()
                    r = evaluate(b, comps, size=size, layer=layer, click_threshold=thr)
                    cells = " ".join(f"{'n/a':>13s}" if np.isnan(r.mean(c)) else f"{r.mean(c):13.3f}" for c in COLUMNS)
                    print(f"{name:20s} {size:4d} {r.grid[0]:2d}x{r.grid[1]:<2d} {r.layer:5d} {r.click_threshold:>9s} | "
                          f"{cells} | {time.perf_counter() - t0:.1f}", flush=True)


if __name__ == "__main__":
    main()
