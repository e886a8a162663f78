"""The concept atlas at dataset scale, and the choice of method for ViT tokens.

Scale (default): for each token shape and size N, a fresh process fills an empty feature cache with N
images' synthetic float16 patch tokens of the real shapes (MobileNetV2 / EfficientNet-Lite0: a 7x7 map of
1280 non-negative channels, made of 40 ReLU'd parts; the DINOv2 ViT-S/14 at 224 px: 16x16 signed tokens of
384) and embeddings, 10 classes, then times :func:`core.concepts.atlas.concept_atlas` exactly as the CLI runs
it: the cache look-up of the features (no forward: the extraction itself is excluded and measured by
``bench/scale.py``), the sample + fit, the encoding of every image chunk by chunk (codes written to the
cached float16 map), the scores (class table, deletion test, variance); then a second open (from the
atlas cache). The cache is filled by another process; the peak RSS (``ru_maxrss``) is the atlas process's,
beside its RSS after the imports.

Methods (``--methods``): on the real stamps, each concept method for each built-in backbone at several k:
variance of the pooled features explained and the deletion test (what README "Concept atlas" reports).

Usage:
  .venv/bin/python bench/concepts.py [--sizes 2000,20000] [--shapes cnn,vit] [--k 12]
  .venv/bin/python bench/concepts.py --methods [--ks 8,12,16]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {"cnn": (7, 7, 1280), "vit": (16, 16, 384)}
CLASSES = 10


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _CachedOnly:
    """Stands in for a backbone whose features are all in the cache (nothing is ever run through it)."""

    def __init__(self, shape: str):
        from core.models.spec import BackboneSpec

        h, _, _ = SHAPES[shape]
        self.spec = BackboneSpec(name=f"synthetic_{shape}", source="local", family="cnn" if shape == "cnn" else "vit",
                                 architecture="synthetic", weights_name="synthetic", weights_sha256="0" * 64,
                                 input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), patch_size=224 // h,
                                 num_prefix_tokens=0, num_layers=1, size_multiple=224 // h)

    def resolve_layer(self, layer=None, kind="embedding"):
        from core.models.layers import resolve_layer

        return resolve_layer(self.spec, kind, layer)

    def extract(self, *_a, **_k):
        raise AssertionError("the bench's features are all cached; nothing should run a forward")


def _fill(store, backbone, shape: str, n: int, seed: int = 0):
    """Synthetic labelled records and their tokens + embeddings in ``store`` (batches of 256 images)."""
    from core.io.images import ImageRecord
    from core.io.store import FeatureKey
    from core.models.extract import preprocessing_id

    h, w, D = SHAPES[shape]
    rng = np.random.default_rng(seed)
    parts = rng.standard_normal((40, D)).astype(np.float32)
    if shape == "cnn":
        parts = np.abs(parts)
    favour = rng.integers(0, 40, size=(CLASSES, 4))  # each class leans on 4 parts
    prep = preprocessing_id(backbone.spec, 224)
    records = [ImageRecord(f"{i:064x}", f"class{i % CLASSES}/img{i:07d}.png", f"class{i % CLASSES}", None) for i in range(n)]
    for s in range(0, n, 256):
        idx = np.arange(s, min(n, s + 256))
        codes = rng.exponential(0.2, size=(len(idx), h, w, 40)).astype(np.float32) * (rng.random((len(idx), h, w, 40)) < 0.15)
        for j, i in enumerate(idx):
            codes[j][:, :, favour[i % CLASSES]] += rng.exponential(0.5, size=(h, w, 4)).astype(np.float32)
        tok = codes @ parts + 0.2 * rng.standard_normal((len(idx), h, w, D)).astype(np.float32)
        if shape == "cnn":
            tok = np.clip(tok, 0.0, 6.0)  # ReLU6, as the real maps
        emb = tok.mean(axis=(1, 2)) if shape == "cnn" else rng.standard_normal((len(idx), D)).astype(np.float32)
        entries = {}
        for j, i in enumerate(idx):
            sha = records[i].sha256
            entries[FeatureKey(backbone.spec.weights_id, prep, 0, "patch_tokens", sha)] = tok[j].astype(np.float16)
            entries[FeatureKey(backbone.spec.weights_id, prep, 0, "embedding", sha)] = emb[j]
        store.put_many(entries)
    return records


def fill(shape: str, n: int, work: Path) -> None:
    """A fresh feature cache under ``work`` holding ``n`` synthetic images' tokens and embeddings."""
    from core.io.store import FeatureStore

    _fill(FeatureStore(work / "features.sqlite"), _CachedOnly(shape), shape, n)


def one(shape: str, n: int, k: int, work: Path) -> dict:
    """Time the atlas as the CLI runs it on the cache ``fill`` made (this process only)."""
    os.environ["BACKBONE_LENS_CACHE"] = str(work)
    from core.concepts.atlas import concept_atlas
    from core.io.images import ImageRecord
    from core.io.store import FeatureStore

    store = FeatureStore(work / "features.sqlite")
    backbone = _CachedOnly(shape)
    records = [ImageRecord(f"{i:064x}", f"class{i % CLASSES}/img{i:07d}.png", f"class{i % CLASSES}", None) for i in range(n)]
    rss0 = _rss_mb()  # after the imports (torch, sklearn) and the records
    t = time.perf_counter()
    atlas = concept_atlas(backbone, records, k=k, store=store)  # type: ignore[arg-type]  # a stand-in backbone
    total = time.perf_counter() - t
    rss1 = _rss_mb()
    t = time.perf_counter()
    again = concept_atlas(backbone, records, k=k, store=store)  # type: ignore[arg-type]
    reopen = time.perf_counter() - t
    s = atlas.stats
    d = atlas.deletion.summary() if atlas.deletion else {}
    return {"shape": shape, "n": n, "k": k, "lookup_s": s.extract_seconds, "fit_s": s.fit_seconds,
            "apply_s": s.apply_seconds, "score_s": s.score_seconds, "total_s": total, "reopen_s": reopen,
            "reopen_cached": again.stats.from_cache, "sample": s.sample_vectors, "sample_images": s.sample_images,
            "rss_before_mb": rss0, "rss_peak_mb": rss1, "variance_explained": atlas.variance_explained,
            "drop_top": d.get("mean_drop_top"), "drop_other": d.get("mean_drop_random"), "load": _load()}


def scale(sizes: list[int], shapes: list[str], k: int) -> None:
    print(f"# concept atlas at scale, k = {k}, {os.cpu_count()} CPUs; {_load()}")
    print("| tokens | images | cache written (GB, s) | sample (vectors / images) | cache look-up s | fit s | encode s | scores s "
          "| total s | second open s | peak RSS MB (after imports) | variance explained | drop top / other | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        for n in sizes:
            work = Path(tempfile.mkdtemp(prefix="bl_concepts_bench_"))
            try:
                t = time.perf_counter()
                subprocess.run([sys.executable, __file__, "--fill", shape, str(n), str(work)], check=True)
                fill_s = time.perf_counter() - t
                gb = sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 1e9
                out = subprocess.run([sys.executable, __file__, "--one", shape, str(n), str(work), "--k", str(k)],
                                     capture_output=True, text=True, check=False)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if out.returncode:
                print(f"| {shape} | {n} | failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            h, w, D = SHAPES[shape]
            print(f"| {shape} [{h}, {w}, {D}] | {n:,} | {gb:.2f}, {fill_s:.0f} | {r['sample']:,} / {r['sample_images']:,} | "
                  f"{r['lookup_s']:.1f} | {r['fit_s']:.1f} | {r['apply_s']:.1f} | {r['score_s']:.1f} | {r['total_s']:.1f} | "
                  f"{r['reopen_s']:.2f} | {r['rss_peak_mb']:.0f} ({r['rss_before_mb']:.0f}) | {r['variance_explained']:.3f} | "
                  f"{r['drop_top']:.2f} / {r['drop_other']:.2f} | {r['load'].split('average ')[1]} |", flush=True)


def methods(ks: list[int]) -> None:
    """Each method on the real stamps: variance explained and the deletion test."""
    from core.concepts.apply import apply_concepts
    from core.concepts.contributions import class_contributions
    from core.concepts.fidelity import deletion_test, variance_explained
    from core.concepts.methods import fit_basis
    from core.concepts.tokens import ArrayTokens, sample_patches
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.builtin import BUILTIN_BACKBONES
    from core.models.extract import extract_features
    from core.models.registry import create_backbone

    ds = load_folder(ROOT / "sample_data" / "stamps")
    print(f"# concept methods on the stamps (48 images, 8 classes), block of the embedding; {_load()}")
    print("| backbone | method | k | variance explained (pooled) | (patches) | NMC accuracy | drop, top concept deleted | "
          "drop, another deleted | classes where top drops more | fit s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for entry in BUILTIN_BACKBONES:
        b = create_backbone(entry.name)
        L = b.resolve_layer(None, "embedding")
        fs = extract_features(b, ds.records, kinds=("embedding", "patch_tokens"), layer=L, store=FeatureStore())
        T, y = fs["patch_tokens"], np.array(fs.labels)
        src = ArrayTokens(T)
        X, _ = sample_patches(src)
        names = ["nmf"] if T.min() >= 0 else ["nmf_shifted", "spherical_kmeans"]
        for m in names:
            for k in ks:
                t = time.perf_counter()
                basis = fit_basis(X, k, m)
                fit_s = time.perf_counter() - t
                codes = apply_concepts(src, basis)
                tb = class_contributions(codes.u, codes.e, basis, y)
                d = deletion_test(codes.e, codes.u, basis, y, tb).summary()
                print(f"| {entry.name} | {m} | {k} | {variance_explained(codes.e, codes.u, basis):.3f} | "
                      f"{codes.patch_variance_explained:.3f} | {d['nmc_accuracy']:.3f} | {d['mean_drop_top']:.3f} | "
                      f"{d['mean_drop_random']:.3f} | {d['classes_top_drops_more']}/{d['classes']} | {fit_s:.1f} |", flush=True)
    print(f"# {_load()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--shapes", default="cnn,vit")
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--methods", action="store_true", help="compare the methods on the real stamps instead")
    ap.add_argument("--ks", default="8,12,16")
    ap.add_argument("--fill", nargs=3, metavar=("SHAPE", "N", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--one", nargs=3, metavar=("SHAPE", "N", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fill:
        fill(args.fill[0], int(args.fill[1]), Path(args.fill[2]))
    elif args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.k, Path(args.one[2]))))
    elif args.methods:
        methods([int(v) for v in args.ks.split(",")])
    else:
        scale([int(v) for v in args.sizes.split(",")], args.shapes.split(","), args.k)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
