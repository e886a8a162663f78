"""Extraction pipeline vs the bare model forward, and cache hits vs extraction, in one run.

Prints, per backbone, on the same images: images/s of a bare ``forward_features`` loop over
pre-decoded, pre-processed batches; images/s of the full pipeline (decode, preprocess, forward,
cache write, through ``extract_features`` with an empty FeatureStore); their ratio; and the
speed-up of re-opening the same images from the cache. The pipeline is timed with the next batch
decoded inline and on a worker thread; "pipeline" is the one extract_features picks here.

Usage: .venv/bin/python bench/extract.py [--backbones mobilenetv2,vits14_saliency] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from core.io.images import load_folder
from core.io.store import FeatureStore
from core.models.extract import _spare_core, extract_features
from core.models.registry import create_backbone

ROOT = Path(__file__).resolve().parents[1]


def bare_forward(backbone, x: torch.Tensor, batch_size: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(x), batch_size):
        backbone.forward_features(x[i:i + batch_size])
    return len(x) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", default="mobilenetv2,efficientnet_lite0,vits14_saliency")
    ap.add_argument("--repeat", type=int, default=2, help="dataset copies (distinct sha256 per copy)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    ds = load_folder(ROOT / "sample_data" / "stamps")
    # distinct cache keys per copy, same pixels: a larger set from the same 48 photos
    records = [replace(r, sha256=f"{r.sha256[:-4]}{k:04d}", name=f"{k}/{r.name}")
               for k in range(args.repeat) for r in ds.records]
    print(f"{len(records)} images, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"default decoding: {'worker thread' if _spare_core() else 'inline'} (a spare core: {_spare_core()})")
    print(f"{'backbone':20s} {'bare img/s':>10s} {'inline':>7s} {'thread':>7s} {'pipeline img/s':>15s} {'ratio':>6s} "
          f"{'cache-hit img/s':>16s} {'speed-up':>9s}")
    for name in args.backbones.split(","):
        b = create_backbone(name)
        x = b.preprocess([r.decode() for r in records])
        bare_forward(b, x[: 2 * args.batch_size], args.batch_size)  # warm-up: kernels for this batch shape
        bare = bare_forward(b, x, args.batch_size)
        with tempfile.TemporaryDirectory() as tmp:
            # warm-up: the pipeline's first-call costs (decoder plug-ins, worker thread, SQLite)
            extract_features(b, records[: args.batch_size], store=FeatureStore(Path(tmp) / "warm.sqlite"))
            rates = {}
            for ahead in (False, True):  # decode inline / on a worker thread during the forward
                store = FeatureStore(Path(tmp) / f"f{int(ahead)}.sqlite")
                t = time.perf_counter()
                fs = extract_features(b, records, store=store, batch_size=args.batch_size, prefetch=ahead)
                rates[ahead] = len(records) / (time.perf_counter() - t)
                assert fs.stats.n_computed == len(records)
            pipe = rates[_spare_core()]  # what extract_features picks by default on this machine
            t = time.perf_counter()
            hit = extract_features(b, records, store=FeatureStore(Path(tmp) / "f1.sqlite"), batch_size=args.batch_size)
            hit_rate = len(records) / (time.perf_counter() - t)
            assert hit.stats.forwards == 0
        bare = max(bare, bare_forward(b, x, args.batch_size))  # the better of two bare runs, before and after
        print(f"{name:20s} {bare:10.1f} {rates[False]:7.1f} {rates[True]:7.1f} {pipe:15.1f} {pipe / bare:6.2f} "
              f"{hit_rate:16.0f} {hit_rate / pipe:8.0f}x")


if __name__ == "__main__":
    main()
