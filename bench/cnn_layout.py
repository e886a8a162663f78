"""CNN weights channels-last (as TimmBackbone stores them) vs contiguous, in one run.

Prints, per CNN backbone, on the same images: seconds of a batch-8 bare forward, of a forward + backward
(the Grad-CAM maps' work) and of the whole extraction pipeline (``extract_features``: decode, preprocess,
forward, cache write, a fresh FeatureStore each run) with the model's convolution weights stored
contiguous and channels-last, the two alternating for ``--rounds`` rounds; the medians and their ratio,
and the largest difference of the logits between the two layouts.

Usage: .venv/bin/python bench/cnn_layout.py [--backbones mobilenetv2,efficientnet_lite0] [--repeat 3] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from core.io.images import load_folder
from core.io.store import FeatureStore
from core.models.extract import extract_features
from core.models.registry import create_backbone

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def seconds(fn: Callable[[], object], n: int = 3) -> float:
    fn()  # warm-up: oneDNN's kernels and weight reorders for this shape
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def measure(name: str, records: list, rounds: int) -> None:
    b = create_backbone(name)
    model = b.model
    x = b.preprocess([r.decode() for r in records[:8]])  # [8, 3, S, S] contiguous, as the pages pass it

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def forward_backward() -> None:
        xx = x.clone().requires_grad_(True)
        model(xx)[:, 0].sum().backward()

    def pipeline() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            fs = extract_features(b, records, store=FeatureStore(Path(tmp) / "f.sqlite"))
            assert fs.stats.n_computed == len(records)

    parts = {"forward (8)": forward, "forward+backward": forward_backward, "extraction": pipeline}
    times: dict[str, dict[str, list[float]]] = {part: {k: [] for k in LAYOUTS} for part in parts}
    logits = {}
    for _ in range(rounds):
        for layout, fmt in LAYOUTS.items():
            model.to(memory_format=fmt)
            for part, fn in parts.items():
                times[part][layout].append(seconds(fn, n=1 if part == "extraction" else 3))
            with torch.inference_mode():
                logits[layout] = model(x)
    model.to(memory_format=torch.channels_last)  # as TimmBackbone keeps it
    for part, t in times.items():
        a, c = statistics.median(t["contiguous"]), statistics.median(t["channels-last"])
        print(f"{name:20s} {part:18s} {a:13.3f} {c:16.3f} {a / c:5.2f}x")
    diff = (logits["contiguous"] - logits["channels-last"]).abs().max().item()
    print(f"{name:20s} largest logit difference {diff:.2e} (largest logit {logits['contiguous'].abs().max().item():.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="mobilenetv2,efficientnet_lite0")
    ap.add_argument("--repeat", type=int, default=3, help="dataset copies (distinct sha256 per copy)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians printed)")
    args = ap.parse_args()
    ds = load_folder(ROOT / "sample_data" / "stamps")
    records = [replace(r, sha256=f"{r.sha256[:-4]}{k:04d}", name=f"{k}/{r.name}")
               for k in range(args.repeat) for r in ds.records]
    print(f"{len(records)} images, torch threads {torch.get_num_threads()}")
    print(f"{'backbone':20s} {'part':18s} {'contiguous s':>13s} {'channels-last s':>16s} {'ratio':>6s}")
    for name in args.backbones.split(","):
        measure(name, records, args.rounds)


if __name__ == "__main__":
    main()
