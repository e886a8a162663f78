"""Extraction pipeline vs the bare model forward, and cache hits vs extraction, in one run.

Prints, per backbone, on the same images: images/s of a bare ``forward_features`` loop over
pre-decoded, pre-processed batches; images/s of the full pipeline (decode, preprocess, forward,
cache write, through ``extract_features`` with an empty FeatureStore); their ratio; and the
speed-up of re-opening the same images from the cache. Bare and pipeline runs alternate for
``--rounds`` rounds (each round's ratio against the mean of the bare runs just before and after it);
the medians are printed, with the range of the ratio. The pipeline is timed with the next batch
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

import numpy as np
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
    ap.add_argument("--rounds", type=int, default=5, help="interleaved bare / pipeline rounds (medians printed)")
    args = ap.parse_args()

    ds = load_folder(ROOT / "sample_data" / "stamps")
    # distinct cache keys per copy, same pixels: a larger set from the same 48 photos
    records = [replace(r, sha256=f"{r.sha256[:-4]}{k:04d}", name=f"{k}/{r.name}")
               for k in range(args.repeat) for r in ds.records]
    print(f"{len(records)} images, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"default decoding: {'worker thread' if _spare_core() else 'inline'} (a spare core: {_spare_core()})")
    print(f"{'backbone':20s} {'bare img/s':>10s} {'inline':>7s} {'thread':>7s} {'pipeline img/s':>15s} {'ratio':>6s} {'range':>10s} "
          f"{'cache-hit img/s':>16s} {'speed-up':>9s}")
    for name in args.backbones.split(","):
        b = create_backbone(name)
        x = b.preprocess([r.decode() for r in records])
        bare_forward(b, x[: 2 * args.batch_size], args.batch_size)  # warm-up: kernels for this batch shape
        with tempfile.TemporaryDirectory() as tmp:
            # warm-up: the pipeline's first-call costs (decoder plug-ins, worker thread, SQLite)
            extract_features(b, records[: args.batch_size], store=FeatureStore(Path(tmp) / "warm.sqlite"))
            bares, rates, ratios = [], {False: [], True: []}, []
            for k in range(args.rounds):  # interleaved: a slow spell of the machine hits both sides
                bare = bare_forward(b, x, args.batch_size)
                for ahead in (False, True):  # decode inline / on a worker thread during the forward
                    store = FeatureStore(Path(tmp) / f"f{k}{int(ahead)}.sqlite")
                    t = time.perf_counter()
                    fs = extract_features(b, records, store=store, batch_size=args.batch_size, prefetch=ahead)
                    rates[ahead].append(len(records) / (time.perf_counter() - t))
                    assert fs.stats.n_computed == len(records)
                bare = (bare + bare_forward(b, x, args.batch_size)) / 2  # the mean of the runs before and after
                bares.append(bare)
                ratios.append(rates[_spare_core()][-1] / bare)  # what extract_features picks on this machine
            t = time.perf_counter()
            hit = extract_features(b, records, store=FeatureStore(Path(tmp) / "f00.sqlite"), batch_size=args.batch_size)
            hit_rate = len(records) / (time.perf_counter() - t)
            assert hit.stats.forwards == 0
        pipe = float(np.median(rates[_spare_core()]))
        print(f"{name:20s} {np.median(bares):10.1f} {np.median(rates[False]):7.1f} {np.median(rates[True]):7.1f} "
              f"{pipe:15.1f} {np.median(ratios):6.2f} {min(ratios):5.2f}-{max(ratios):4.2f} "
              f"{hit_rate:16.0f} {hit_rate / pipe:8.0f}x", flush=True)

if __name__ == "__main__":
    main()
