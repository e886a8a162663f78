"""Latency of the interactive paths of the Saliency and Segmentation pages (server side, CPU).

1. Segmentation: a click to a new mask on cached patch tokens (vits14_saliency at 448 px: a 32x32 grid),
   core maths alone, then with the figures the page draws, then a whole rerun of the page script
   (Streamlit AppTest, tokens already cached) after a threshold change, which does the same work as a
   click. Goal: under 50 ms for the click itself.
2. Saliency: the attention maps of one uploaded picture (ViT-S/14 at 224 px): decode, preprocess,
   one forward with attention capture, CLS maps, rollout, the 12x7 mosaic and an enlarged map.
   Goal: under 0.5 s (the bare forward is about 0.15 s).

Medians over repeats after a warm-up. The machine is shared, so the load average is printed too.

Usage: .venv/bin/python bench/interactive.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core import render
from core.explain.attention import vit_attention
from core.io.images import decode_image
from core.models.registry import create_backbone
from core.segment.click import click_mask
from core.segment.similarity import cross_similarity, pixel_to_patch
from core.segment.threshold import threshold_mask

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT / "sample_data" / "scenes"


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, min) seconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def report(label: str, t: tuple[float, float], goal: float | None = None) -> None:
    med, best = t
    verdict = "" if goal is None else (f"  (goal < {goal * 1e3:.0f} ms: {'met' if med < goal else 'MISSED'})")
    print(f"  {label:58s} median {med * 1e3:8.1f} ms   min {best * 1e3:8.1f} ms{verdict}", flush=True)


def bench_click(repeats: int) -> None:
    b = create_backbone("vits14_saliency")
    size = 448
    grid = b.spec.grid(size)
    names = ["cat.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg"]
    imgs = [decode_image((SCENES / n).read_bytes(), n) for n in names]
    with torch.inference_mode():
        toks = b.patch_tokens(b.preprocess(imgs, size))[:].float().numpy()  # [4, 32, 32, 384], "cached"
    tokens, others = toks[0], toks[1:]
    img = imgs[0]
    shown = render.fit(img, 448).size
    rng = np.random.default_rng(0)
    clicks = [(float(rng.uniform(0, shown[0])), float(rng.uniform(0, shown[1]))) for _ in range(64)]
    state = {"n": 0}

    def next_click():
        state["n"] = (state["n"] + 1) % len(clicks)
        return clicks[state["n"]]

    def core_only():
        q = pixel_to_patch(next_click(), shown, grid)
        return click_mask(tokens, q).mask, cross_similarity(tokens[q], others)  # [32, 32], [3, 32, 32]

    def with_figures():
        q = pixel_to_patch(next_click(), shown, grid)
        click = click_mask(tokens, q)
        sim, thr, mask = click.similarity, click.threshold, click.mask
        maps = [sim, *cross_similarity(tokens[q], others)]
        scale = render.ColorScale(float(min(m.min() for m in maps)), 1.0, "viridis", "cosine to the clicked patch")
        clickable = render.mask_panel(img, mask, max_side=448, marker=(q, grid))
        panels = [render.heat_panel(im, m, scale, max_side=260) for im, m in zip(imgs, maps)]
        heat = render.stack([render.row(panels[:2], scale), render.row(panels[2:])])
        small = render.row([render.mask_panel(im, threshold_mask(m, thr), max_side=170)
                            for im, m in zip(imgs[1:], maps[1:])])
        return clickable, heat, small

    print(f"Segmentation click, {b.spec.name} at {size} px ({grid[0]}x{grid[1]} grid, D={tokens.shape[-1]}), "
          f"3 other pictures, tokens cached:")
    report("similarity + Otsu mask + 3 cross-image maps (core)", timeit(core_only, repeats), goal=0.05)
    report("... + the figures the page draws (PIL)", timeit(with_figures, repeats), goal=0.05)


def bench_click_page(repeats: int) -> None:
    """A whole rerun of pages/segmentation.py (AppTest) after a threshold change, tokens cached."""
    import sys

    from streamlit.testing.v1 import AppTest

    sys.path.insert(0, str(ROOT))  # the page imports pages.common

    at = AppTest.from_file(str(ROOT / "pages" / "segmentation" / "page.py"), default_timeout=600)
    at.run()
    at.selectbox(key="size_vits14_saliency").set_value(448)
    at.run()
    at.toggle(key="seg_auto").set_value(False)
    at.run()
    if at.exception:
        raise RuntimeError([e.message for e in at.exception])
    values = iter(np.linspace(0.2, 0.8, 1000))

    def rerun():
        at.slider(key="seg_thr").set_value(round(float(next(values)), 2))
        at.run()

    report("whole page rerun (AppTest, 448 px, threshold moved)", timeit(rerun, max(5, repeats // 4), warmup=1))


def bench_attention(repeats: int) -> None:
    b = create_backbone("vits14_saliency")
    size = 224
    data = (SCENES / "cat.jpg").read_bytes()
    L = b.spec.num_layers
    x = b.preprocess([decode_image(data, "cat.jpg")], size)
    print(f"\nSaliency attention, {b.spec.name} at {size} px, one uploaded picture (cat.jpg, 451x300):")
    report("bare forward_features (reference)", timeit(lambda: b.forward_features(x), repeats))

    def maps_only():
        img = decode_image(data, "cat.jpg")
        a = vit_attention(b, b.preprocess([img], size))  # [L, H, T, T] and [L, H, h, w]
        return a, a.rollout("mean", 0.9, L // 2)

    def with_figures():
        img = decode_image(data, "cat.jpg")
        a = vit_attention(b, b.preprocess([img], size))
        ro = a.rollout("mean", 0.9, L // 2)
        maps = np.concatenate([a.cls_maps, a.cls_maps.mean(1, keepdims=True)], axis=1)  # [L, H+1, h, w]
        maps = maps / maps.max(axis=(2, 3), keepdims=True)
        base = render.fit(img, 84)
        scale = render.ColorScale(0.0, 1.0, "inferno", "attention / tile max")
        tiles = [[render.fast_overlay(base, m, scale, alpha=0.55) for m in row] for row in maps]
        mosaic = render.grid(tiles, [f"block {i}" for i in range(L)],
                             [f"head {i}" for i in range(maps.shape[1])], scale)
        big = render.heat_figure(img, a.cls_maps[-1].mean(0), render.ColorScale(0, float(a.cls_maps[-1].mean(0).max())))
        rfig = render.heat_figure(img, ro, render.ColorScale(0.0, 1.0))
        return mosaic, big, rfig

    report("decode + attention of every block + CLS maps + rollout", timeit(maps_only, repeats), goal=0.5)
    report("... + mosaic (12x7 tiles), enlarged map, rollout figure", timeit(with_figures, repeats), goal=0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-page", action="store_true", help="skip the whole-page AppTest rerun")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average before: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    bench_click(args.repeats)
    if not args.no_page:
        bench_click_page(args.repeats)
    bench_attention(args.repeats)
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
