"""`backbone-lens evaluate`: one classifier's accuracy on frozen features."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from core.cli._common import (
    MAX_SIZE,
    MIN_SIZE,
    CliError,
    add_layer_arg,
    features,
    fraction,
    input_size,
    positive_int,
)


def cmd_evaluate(args) -> int:
    """Accuracy of one classifier on frozen features (core.classify.evaluation, as on the Prototypes page)."""
    from core.classify.evaluation import evaluate
    from core.classify.tables import classifier_kwargs, eval_summary, evaluate_shots, method_label

    def labelled(folder: str):
        _, fs, failures = features(argparse.Namespace(**{**vars(args), "images": folder}))
        y = np.asarray(fs.labels)
        if len(y) == 0 or not all(y):
            raise ValueError(
                f"{folder}: evaluate needs labelled images, one subfolder per class (root/<class>/<image>)")
        return fs["embedding"], y, failures

    if args.imported:
        X, y, failures, backbone = _imported(args)
    else:
        if not (args.backbone and args.train):
            raise CliError("evaluate needs --backbone NAME --train DIR (images), or --imported NAME (an imported set)")
        X, y, failures = labelled(args.train)
        backbone = args.backbone
    Xt = yt = None
    if args.test:
        Xt, yt, test_failures = labelled(args.test)
        failures = failures + test_failures
        unseen = sorted(set(yt.tolist()) - set(y.tolist()))
        if unseen:
            print(f"warning: test classes without training images (always wrong): {', '.join(unseen)}", file=sys.stderr)
    kw = classifier_kwargs(args.method, args.metric)
    common = {"backbone": backbone, "train": args.train, "test": args.test, "seed": args.seed,
              "metric": args.metric if kw else None, "n_failed": len(failures)}
    if args.imported:
        common["imported"] = args.imported
    if args.shots is not None:
        r = evaluate_shots(X, y, args.method, args.shots, draws=args.draws, seed=args.seed, X_test=Xt, y_test=yt,
                           metric=args.metric)
        out = {**common, "method": r.method, "protocol": r.protocol, "accuracy": r.accuracy,
               "accuracy_std": r.accuracy_std, "ci_low": r.ci_low, "ci_high": r.ci_high, "shots": r.shots,
               "draws": r.draws, "n_train": r.n_train, "n_test": r.n_test, "classes": sorted(set(y.tolist()))}
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
    what = f"imported set {args.imported} ({backbone})" if args.imported else backbone
    print(f"{what} · {method_label(args.method)}{f', {args.metric}' if kw else ''}: accuracy {acc}, "
          f"95% Wilson interval {100 * out['ci_low']:.1f}-{100 * out['ci_high']:.1f}%")
    print(f"protocol: {how}; n_train {out['n_train']}, n_test {out['n_test']}, {len(set(y.tolist()))} classes"
          + (f"; {len(failures)} files skipped" if failures else ""))
    return 0



def _imported(args) -> tuple[np.ndarray, np.ndarray, list, str]:
    """An imported set's vectors (its memory map, read block by block) and labels."""
    from core.io.imports import open_imported
    from core.models.layers import Layer

    if args.backbone or args.train or args.test:
        raise CliError("--imported takes its vectors and labels from the imported set: leave out --backbone, --train "
                       "and --test")
    if Layer.of(args.layer).index is not None or args.size is not None:
        raise CliError("--layer and --size apply to a backbone run on images, not to an imported set")
    s = open_imported(args.imported)
    if not s.labelled:
        raise CliError(f"imported set {s.name}: evaluate needs a label for every point (import a table with a 'label' "
                       f"column); {'no point has one' if not s.classes or s.classes == ('',) else 'some points have none'}")
    return s.vectors, np.asarray(s.labels(), dtype=str), [], s.backbone


def register(sub) -> None:
    from core.classify.classifiers import classifier_info, classifier_names

    methods = classifier_names()  # whatever is registered when the parser is built
    p = sub.add_parser(
        "evaluate", help="accuracy of a classifier on frozen features (NMC, k-NN, linear probe, naive Bayes, LDA, "
                         "RanPAC, FeCAM ...)",
        description="The accuracies of the Prototypes page (core.classify.evaluation). Without --test: a stratified hold-out "
                    "(--test-size per class), or leave-one-out for tiny sets. --shots K: K random training images "
                    "per class, mean and std over --draws draws. --json prints one object with method, backbone, "
                    "accuracy, n_train, n_test, protocol, ... --imported NAME evaluates an imported set's vectors "
                    "and labels instead of a backbone on a folder (its memory map, read block by block).")
    p.add_argument("--backbone", default=None, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--train", default=None, help="labelled folder: root/<class>/<image>")
    p.add_argument("--imported", default=None, metavar="NAME",
                   help="an imported set (`backbone-lens import`) instead of --backbone and --train")
    p.add_argument("--test", default=None, help="labelled test folder (default: split --train)")
    p.add_argument("--method", choices=methods, default="nmc",
                   help="; ".join(f"{m}: {classifier_info(m).label}" for m in methods) + " (default nmc)")
    p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="NMC distance (default cosine)")
    p.add_argument("--shots", type=positive_int, default=None, help="training images per class (few-shot)")
    p.add_argument("--draws", type=positive_int, default=10, help="random draws with --shots (default 10)")
    p.add_argument("--test-size", type=fraction, default=0.3, help="held-out fraction per class without --test")
    p.add_argument("--seed", type=int, default=0)
    add_layer_arg(p)
    p.add_argument("--size", type=input_size, default=None, help=f"input side in pixels ({MIN_SIZE}..{MAX_SIZE}); default: the spec's")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

