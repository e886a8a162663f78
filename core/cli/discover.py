"""`backbone-lens discover`: the classes the labels do not name (semi-supervised k-means), or, with
``--unknown-classes``, how well they are found on a labelled folder (All / Old / New accuracy)."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from core.cli._common import (
    CliError,
    add_feature_args,
    check_images_arg,
    fraction,
    load_backbone,
    positive_int,
    progress_bar,
)


def k_arg(text: str) -> int | str:
    """``--k``: a whole number of new clusters (0 or more) or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None
    if k < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {k}")
    return k


def _features(args):
    """Embeddings of ``--images`` (a class tree) and of ``--unlabelled`` (every image unlabelled, whatever
    its folders), one backbone load and one extraction for both."""
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.extract import extract_features

    ds = load_folder(args.images)
    records, failures = list(ds.records), list(ds.failures)
    if args.unlabelled:
        du = load_folder(args.unlabelled, labelled=False)
        records += du.records
        failures += du.failures
    for f in failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    if not records:
        raise CliError(f"{args.images}: no usable images")
    backbone = load_backbone(args.backbone)
    if args.size is not None:
        backbone.spec.check_size(args.size)
    backbone.resolve_layer(args.layer)
    store = FeatureStore()
    bar, update = progress_bar(args.backbone)
    try:
        fs = extract_features(backbone, records, layer=args.layer, size=args.size, batch_size=args.batch_size,
                              store=store, progress=update)
    finally:
        bar.close()
    for f in fs.failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    paths = [str(r.path) if r.path is not None else r.name for r in fs.records]
    return fs["embedding"], np.asarray(fs.labels, dtype=str), paths, len(failures) + len(fs.failures)


def cmd_discover(args) -> int:
    from core.discover import discover, evaluate_discovery

    if args.unlabelled:
        check_images_arg("--unlabelled", args.unlabelled)
    hidden = [c.strip() for c in (args.unknown_classes or "").split(",") if c.strip()]
    if args.unknown_classes is not None and not hidden:
        raise CliError("--unknown-classes: name at least one class, e.g. --unknown-classes fish,tools")
    if hidden and args.unlabelled:
        raise CliError("--unknown-classes scores a labelled folder against its own labels; leave out --unlabelled")
    X, labels, paths, n_failed = _features(args)
    common = {"backbone": args.backbone, "images": args.images, "seed": args.seed, "n_failed": n_failed}
    if hidden:
        if not np.all(labels != ""):
            raise CliError(f"{args.images}: --unknown-classes needs a labelled folder, one subfolder per class")
        r = evaluate_discovery(X, labels, hidden, args.k, labelled_share=args.labelled_share, seed=args.seed)
        out = {**common, **r.as_dict()}
        if args.json:
            print(json.dumps(out, indent=2))
            return 0
        k_note = " (chosen by k=auto)" if out["k_auto"] else (" (the number hidden)" if args.k is None else "")
        print(f"{args.backbone} · hidden: {', '.join(out['unknown_classes'])} · labelled: "
              f"{100 * out['labelled_share']:g}% of each other class's images ({out['n_labelled']} images)")
        print(f"scored on {out['n_unlabelled']} unlabelled images ({out['n_unlabelled_old']} of known classes, "
              f"{out['n_unlabelled_new']} of hidden ones); clustering accuracy, Hungarian matching")
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        k_all = len(out["known_classes"]) + out["k_new"]
        print(f"SS-k-means, {out['k_new']} new clusters{k_note}:  All {fmt(out['all'])}  Old {fmt(out['old'])}  "
              f"New {fmt(out['new'])}")
        km = out["kmeans_all"]
        print(f"k-means on all images, k={k_all}:  All {fmt(km['all'])}  Old {fmt(km['old'])}  New {fmt(km['new'])}")
        if out["k_curve"]:
            print("k curve (new clusters: labelled-image accuracy): "
                  + ", ".join(f"{k}: {s:.3f}" for k, s in out["k_curve"]))
        return 0

    d = discover(X, labels, "auto" if args.k is None else args.k, n_central=args.central, seed=args.seed)
    curve = d.k_curve
    out = {**common, "unlabelled": args.unlabelled, "known_classes": [str(c) for c in d.known_classes],
           "n_labelled": int(len(labels) - len(d.unlabelled)), "n_unlabelled": int(len(d.unlabelled)),
           "k_new": d.k_new, "k_auto": curve is not None, "k_curve": curve.points() if curve is not None else None,
           "known_counts": d.known_counts, "fitted_on": d.fit.n_fit,
           "clusters": [c.as_dict(paths) for c in d.clusters]}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    how = f" (k=auto: best labelled-image accuracy {curve.score.max():.3f})" if curve is not None else ""
    print(f"{args.backbone} · {len(d.known_classes)} known classes, {out['n_labelled']} labelled and "
          f"{out['n_unlabelled']} unlabelled images -> {d.k_new} new clusters{how}")
    print("into known classes: " + ", ".join(f"{c} +{n}" for c, n in d.known_counts.items()))
    for c in d.clusters:
        margin = "n/a" if np.isnan(c.margin) else f"{c.margin:+.3f}"
        print(f"{c.name}: {c.size} images, nearest known class {c.nearest_known} (cosine distance {c.distance:.3f}, "
              f"margin {margin})")
        for i in c.central:
            print(f"    {paths[i]}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "discover", help="category discovery: cluster unlabelled images into known classes and new ones (SS-k-means)",
        description="Semi-supervised k-means (Vaze et al., Generalized Category Discovery, CVPR 2022) on frozen "
                    "embeddings: the labelled classes of --images keep their images, every unlabelled image (from "
                    "--unlabelled) goes to a known class or to one of --k new clusters. Each new cluster is listed "
                    "with its size, its nearest known class, a margin and its most central images. With "
                    "--unknown-classes a,b the named classes of the labelled --images are hidden (with "
                    "1 - --labelled-share of every other class's images) and the clustering accuracy on the "
                    "hidden images is printed: All / Old / New (one Hungarian matching), beside plain k-means on "
                    "all images (kmeans_all).")
    add_feature_args(p)
    p.add_argument("--unlabelled", default=None,
                   help="folder of unlabelled images (any layout; labels ignored); images in --images/_unlabelled/ "
                        "are unlabelled too")
    p.add_argument("--k", type=k_arg, default=None,
                   help="new clusters: a number or 'auto' (default: auto; with --unknown-classes the number hidden)")
    p.add_argument("--unknown-classes", default=None, help="comma-separated classes of --images to treat as unknown")
    p.add_argument("--labelled-share", type=fraction, default=0.5,
                   help="with --unknown-classes: share of each known class's images that keeps its label (default 0.5)")
    p.add_argument("--central", type=positive_int, default=8, help="central images listed per new cluster (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_discover)
