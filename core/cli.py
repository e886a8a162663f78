"""The ``backbone-lens`` command: the heavy batch work without a browser."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from core.errors import BackboneLensError
from core.paths import ENV_VAR


def _progress_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


def _features(args, kinds=("embedding",)):
    """Load the dataset and extract (or reload) its features with a progress bar."""
    from core.backbones.registry import create_backbone
    from core.extract import extract_features
    from core.images import load_folder
    from core.store import FeatureStore

    ds = load_folder(args.images)
    backbone = create_backbone(args.backbone)
    bar, update = _progress_bar(f"{args.backbone}")
    try:
        fs = extract_features(backbone, ds.records, kinds=kinds, layer=args.layer, size=args.size,
                              batch_size=args.batch_size, store=FeatureStore(), progress=update)
    finally:
        bar.close()
    failures = ds.failures + fs.failures
    for f in failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    return ds, fs, failures


def cmd_backbones(args) -> int:
    from core.backbones.registry import ONLINE_PATTERNS, list_backbones

    rows = [(e.name, "yes" if e.offline and e.is_available() else "no (install: scripts/setup.sh)" if e.offline else "no", e.summary)
            for e in list_backbones()]
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
    ds, fs, failures = _features(args, kinds=tuple(args.kinds.split(",")))
    s = fs.stats
    print(f"{args.backbone}: {len(fs.records)} images ({s.n_cached} cached, {s.n_computed} extracted), "
          f"{len(failures)} failed, {s.seconds:.1f} s")
    return 0


def cmd_export(args) -> int:
    ds, fs, failures = _features(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, embeddings=fs["embedding"].astype(np.float32),
             paths=np.array([str(r.path) if r.path else r.name for r in fs.records]),
             labels=np.array(fs.labels))
    print(f"wrote {out}: embeddings {fs['embedding'].shape}, {len(failures)} failed")
    return 0


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--images", required=True, help="folder: root/<class>/<image> or a flat folder")
    p.add_argument("--layer", type=int, default=None, help="block index (negative from the end); default: the spec's")
    p.add_argument("--size", type=int, default=None, help="input side in pixels; default: the spec's")
    p.add_argument("--batch-size", type=int, default=16)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="backbone-lens", description="Extract, cache and evaluate backbone features.")
    ap.add_argument("--cache", help=f"cache directory (default ${ENV_VAR}, else the user cache dir)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backbones", help="list the backbones and whether each works offline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("extract", help="fill the feature cache for a folder of images")
    _add_feature_args(p)
    p.add_argument("--kinds", default="embedding", help="comma list of embedding,patch_tokens,attention_cls,logits")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("export", help="write embeddings, paths and labels to an .npz")
    _add_feature_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cache:
        os.environ[ENV_VAR] = args.cache
    try:
        return args.func(args)
    except (BackboneLensError, FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
