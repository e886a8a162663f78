"""The ``backbone-lens`` command: the heavy batch work without a browser."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from core.errors import BackboneLensError
from core.io.paths import ENV_VAR


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
    from core.models.registry import create_backbone
    from core.models.extract import extract_features
    from core.io.images import load_folder
    from core.io.store import FeatureStore

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
    from core.models.registry import ONLINE_PATTERNS, list_backbones

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


def cmd_import(args) -> int:
    """A table of (path, label, vector) becomes a named set; a directory of shards fills the feature cache."""
    from core.io import imports

    src = Path(args.file).expanduser()
    bar, update = _progress_bar(f"import {src.name}")
    try:
        if src.is_dir():
            if args.name:
                raise ValueError("--name applies to a table file; shards are merged into the feature cache by key")
            m = imports.merge_shards(src, progress=update)
        else:
            s = imports.import_table(src, args.name, backbone=args.backbone, progress=update)
    finally:
        bar.close()
    if src.is_dir():
        print(f"merged {m.rows} feature rows from {m.files} shards into the feature cache:")
        for (w, p, layer, kind), n in sorted(m.groups.items()):
            print(f"  {n:>9}  {w} | {p} | layer {layer} | {kind}")
        return 0
    print(f"imported {s.n} points ({s.dim}-D, {len(s.classes)} classes) as '{s.name}' in {s.root}; "
          f"open it from the app's dataset list")
    return 0


def cmd_compare(args) -> int:
    """Metrics table and CKA of several backbones on one labelled folder (core.compare.comparison)."""
    from core.models.registry import create_backbone
    from core.compare.comparison import columns, compare_backbones
    from core.io.images import load_folder
    from core.io.store import FeatureStore

    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--backbones needs at least two different names separated by commas, got {args.backbones!r}")
    ds = load_folder(args.images)
    backbones = [create_backbone(n) for n in names]
    bars: dict = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in bars:  # one bar per backbone, the previous one closed first
            for bar, _ in bars.values():
                bar.close()
            bars[name] = _progress_bar(name)
        bars[name][1](done, total)

    try:
        cmp, fsets = compare_backbones(backbones, ds.records, store=FeatureStore(), batch_size=args.batch_size,
                                       cka_kind=args.cka, progress=progress)
    finally:
        for bar, _ in bars.values():
            bar.close()
    for f in ds.failures + fsets[0].failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(cmp.to_json(), indent=2))
        return 0
    cols = columns(cmp.shots)
    fmt = {"params": lambda v: f"{v / 1e6:.1f}M", "dim": str, "images_per_s": lambda v: f"{v:.1f}"}
    table = [[c.label for c in cols]]
    for r in cmp.rows:
        d = r.as_dict()
        table.append([fmt.get(c.key, lambda v: v if isinstance(v, str) else f"{v:.3f}")(d[c.key]) for c in cols])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(v.ljust(w) if i < 2 or i == 5 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    r0 = cmp.rows[0]
    print(f"\n{r0.n_images} images, {r0.n_classes} classes, accuracies on a '{r0.protocol}' protocol "
          f"(core.classify.evaluation.evaluate defaults); few-shot: mean and ± std over draws.")
    w = max(len(n) for n in cmp.backbones)
    print(f"\n{cmp.cka_kind} CKA of the global embeddings:")
    print(" " * w + "  " + "  ".join(f"{n:>{max(6, len(n))}}" for n in cmp.backbones))
    for n, row in zip(cmp.backbones, cmp.cka):
        print(f"{n:<{w}}  " + "  ".join(f"{v:>{max(6, len(m))}.3f}" for v, m in zip(row, cmp.backbones)))
    return 0


def cmd_evaluate(args) -> int:
    """Accuracy of one classifier on frozen features (core.classify.prototypes, as on the Prototypes page)."""
    from core.classify.tables import METHOD_LABELS, classifier_kwargs, eval_summary, evaluate_shots
    from core.classify.evaluation import evaluate

    def labelled(folder: str):
        _, fs, failures = _features(argparse.Namespace(**{**vars(args), "images": folder}))
        y = np.asarray(fs.labels)
        if len(y) == 0 or not all(y):
            raise ValueError(f"{folder}: evaluate needs labelled images, one subfolder per class (root/<class>/<image>)")
        return fs["embedding"], y, failures

    X, y, failures = labelled(args.train)
    Xt = yt = None
    if args.test:
        Xt, yt, test_failures = labelled(args.test)
        failures = failures + test_failures
        unseen = sorted(set(yt.tolist()) - set(y.tolist()))
        if unseen:
            print(f"warning: test classes without training images (always wrong): {', '.join(unseen)}", file=sys.stderr)
    kw = classifier_kwargs(args.method, args.metric)
    common = {"backbone": args.backbone, "train": args.train, "test": args.test, "seed": args.seed,
              "metric": args.metric if kw else None, "n_failed": len(failures)}
    if args.shots is not None:
        r = evaluate_shots(X, y, args.method, args.shots, draws=args.draws, seed=args.seed, X_test=Xt, y_test=yt,
                           metric=args.metric)
        out = {**common, "method": r.method, "protocol": r.protocol, "accuracy": r.accuracy,
               "accuracy_std": r.accuracy_std, "shots": r.shots, "draws": r.draws, "n_train": r.n_train,
               "n_test": r.n_test, "classes": sorted(set(y.tolist()))}
        how = (f"{r.shots} training images per class, mean ± std over {r.draws} draws, "
               + ("tested on --test" if Xt is not None else "tested on the other images"))
        acc = f"{100 * r.accuracy:.1f}% ± {100 * r.accuracy_std:.1f}%"
    else:
        res = evaluate(X, y, args.method, test_size=args.test_size, seed=args.seed, X_test=Xt, y_test=yt, **kw)
        out = eval_summary(res, **common)
        how = {"split": f"stratified hold-out of {args.test_size:g} per class (seed {args.seed})",
               "loo": "leave-one-out (fewer than 20 images or a class with fewer than 3)",
               "given": "trained on --train, tested on --test"}[res.protocol]
        acc = f"{100 * res.accuracy:.1f}% ({out['n_correct']}/{res.n_test})"
    if args.json:
        first = ("method", "backbone", "accuracy", "n_train", "n_test", "protocol")
        print(json.dumps({**{k: out[k] for k in first}, **out}))
        return 0
    print(f"{args.backbone} · {METHOD_LABELS[args.method]}{f', {args.metric}' if kw else ''}: accuracy {acc}")
    print(f"protocol: {how}; n_train {out['n_train']}, n_test {out['n_test']}, {len(set(y.tolist()))} classes"
          + (f"; {len(failures)} files skipped" if failures else ""))
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

    p = sub.add_parser(
        "import", help="bring your own embeddings: a table becomes a named set; a shard directory fills the cache",
        description="FILE: an .npz from `export`, or a .parquet / .csv of (path, label, vector) from any tool "
                    "(CSV vectors: a 'vector' column of numbers separated by commas or spaces, or columns "
                    "vector_0 .. vector_(D-1)). It is stored as a named set (float16) that the app lists by name. "
                    "A DIRECTORY of Parquet feature shards (columns sha256, path, label, weights_id, "
                    "preprocessing_id, layer, kind, vector) is merged into the feature cache instead, so those "
                    "images' features need no forward pass.")
    p.add_argument("file", help=".npz / .parquet / .csv table, or a directory of feature shards")
    p.add_argument("--name", default=None, help="set name (default: the file's stem)")
    p.add_argument("--backbone", default="imported", help="what made the vectors, shown in the app (default: imported)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "compare", help="metrics table and CKA of several backbones on one labelled folder",
        description="Each backbone at its own input size and default embedding block. --json prints a list with "
                    "one object per backbone: the table's fields (backbone, dim, params, images_per_s, nmc_accuracy, "
                    "knn_accuracy, linear_accuracy, nmc_<k>shot_mean/_std, silhouette, ...) plus 'cka' = that "
                    "backbone's row of the CKA matrix, whose entries follow 'cka_order' (the backbone order, the "
                    "same in every object), and 'cka_kind'. Missing values are null.")
    p.add_argument("--backbones", required=True, help="two or more registry names separated by commas, e.g. A,B[,C]")
    p.add_argument("--images", required=True, help="labelled folder: root/<class>/<image>")
    p.add_argument("--cka", choices=("linear", "rbf"), default="linear", help="CKA kernel (default linear)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "evaluate", help="accuracy of NMC / k-NN / linear probe / naive Bayes on frozen features",
        description="The accuracies of the Prototypes page (core.classify.prototypes). Without --test: a stratified hold-out "
                    "(--test-size per class), or leave-one-out for tiny sets. --shots K: K random training images "
                    "per class, mean and std over --draws draws. --json prints one object with method, backbone, "
                    "accuracy, n_train, n_test, protocol, ...")
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--train", required=True, help="labelled folder: root/<class>/<image>")
    p.add_argument("--test", default=None, help="labelled test folder (default: split --train)")
    p.add_argument("--method", choices=("nmc", "knn", "linear", "nb"), default="nmc",
                   help="nmc: nearest class mean; knn: cosine k-NN (k=5); linear: logistic-regression probe; "
                        "nb: Gaussian naive Bayes (default nmc)")
    p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="NMC distance (default cosine)")
    p.add_argument("--shots", type=int, default=None, help="training images per class (few-shot)")
    p.add_argument("--draws", type=int, default=10, help="random draws with --shots (default 10)")
    p.add_argument("--test-size", type=float, default=0.3, help="held-out fraction per class without --test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layer", type=int, default=None, help="block index (negative from the end); default: the spec's")
    p.add_argument("--size", type=int, default=None, help="input side in pixels; default: the spec's")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)
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
