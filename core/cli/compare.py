"""`backbone-lens compare`: several backbones on one labelled folder."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from core.cli._common import (
    CliError,
    check_backbone_arg,
    load_backbone,
    positive_int,
    progress_bar,
)


def cmd_compare(args) -> int:
    """Metrics table and CKA of several backbones on one labelled folder, or of 2 to 4 sources (imported sets
    and backbones run on --images) on the images they share (core.compare.comparison)."""
    if bool(args.backbones) == bool(args.sources):
        raise CliError("give --backbones A,B[,...] (run on --images) or --sources NAME,NAME[,...] (imported sets or "
                       "backbones), not both")
    if args.sources:
        cmp, notes = _compare_sources(args)
    else:
        cmp, notes = _compare_backbones(args)
    for line in notes:
        print(line, file=sys.stderr)
    if args.json:
        print(json.dumps(cmp.to_json(), indent=2))
        return 0
    _print_table(cmp)
    return 0


class _Bars:
    """One progress bar per backbone, the previous one closed first."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if name not in self.bars:
            for bar, _ in self.bars.values():
                bar.close()
            self.bars[name] = progress_bar(name)
        self.bars[name][1](done, total)

    def close(self) -> None:
        for bar, _ in self.bars.values():
            bar.close()


def _folder(images: str | None, why: str):
    from core.io.images import load_folder

    if not images:
        raise CliError(f"{why} needs --images DIR (the labelled folder to run it on)")
    ds = load_folder(images)
    if not ds.records:
        raise CliError(f"{images}: no usable images")
    return ds


def _compare_backbones(args):
    from core.compare.comparison import compare_backbones
    from core.io.store import FeatureStore

    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--backbones needs at least two different names separated by commas, got {args.backbones!r}")
    ds = _folder(args.images, "--backbones")
    backbones = [load_backbone(n) for n in names]
    bars = _Bars()
    try:
        cmp, fsets = compare_backbones(backbones, ds.records, store=FeatureStore(), batch_size=args.batch_size,
                                       cka_kind=args.cka, progress=bars,
                                       index_kw=dict(k=args.k, n_boot=args.bootstrap, n_perm=args.permutations))
    finally:
        bars.close()
    return cmp, [f"skipped {f.name}: {f.reason}" for f in ds.failures + fsets[0].failures]


def _compare_sources(args):
    """Each name an imported set or a backbone run on --images (core.compare.sources.source_kind), compared on
    the images they share."""
    from core.compare.comparison import compare_sources
    from core.compare.sources import align_sources, backbone_source, imported_source, source_kind, split_source_names
    from core.io.store import FeatureStore

    kinds = [source_kind(n) for n in split_source_names(args.sources)]
    for kind, name in kinds:
        if kind == "backbone":
            check_backbone_arg(name)
    ds = _folder(args.images, f"the backbone {next(n for k, n in kinds if k == 'backbone')}") \
        if any(k == "backbone" for k, _ in kinds) else None
    sources, notes = [], []
    bars = _Bars()
    store = FeatureStore() if ds is not None else None
    try:
        for kind, name in kinds:
            if kind == "imported":
                sources.append(imported_source(name))
                continue
            assert ds is not None

            def progress(done: int, total: int, name: str = name) -> None:
                bars(name, done, total)

            sources.append(backbone_source(load_backbone(name), ds.records, store=store, batch_size=args.batch_size,
                                           progress=progress))
    finally:
        bars.close()
    if ds is not None:
        failed = ds.failures + next(s.features.failures for s in sources if s.features is not None)
        notes += [f"skipped {f.name}: {f.reason}" for f in failed]
    aligned = align_sources(sources)
    notes.append(aligned.summary())
    cmp = compare_sources(aligned, cka_kind=args.cka,
                          index_kw=dict(k=args.k, n_boot=args.bootstrap, n_perm=args.permutations))
    return cmp, notes


def _print_table(cmp) -> None:
    from core.compare.metrics import accuracy_verdicts, columns

    cols = columns(cmp.shots)
    na = lambda f: (lambda v: "n/a" if v != v else f(v))  # noqa: E731  (NaN: a source without a model)
    fmt: dict[str, Callable[[Any], str]] = {
        "params": na(lambda v: f"{v / 1e6:.1f}M"), "dim": str, "images_per_s": na(lambda v: f"{v:.1f}")}
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
    for line in accuracy_verdicts(cmp.rows):
        print(line)
    w = max(len(n) for n in cmp.backbones)
    print(f"\n{cmp.cka_kind} CKA of the global embeddings:")
    print(" " * w + "  " + "  ".join(f"{n:>{max(6, len(n))}}" for n in cmp.backbones))
    for n, row in zip(cmp.backbones, cmp.cka):
        print(f"{n:<{w}}  " + "  ".join(f"{v:>{max(6, len(m))}.3f}" for v, m in zip(row, cmp.backbones)))
    _print_indices(cmp)


def _print_indices(cmp) -> None:
    """Every pair's similarity indices with their interval and permutation baseline."""
    from core.compare.indices import check_index

    for name, m in cmp.indices.items():
        info = check_index(name)
        e0 = next(iter(m.estimates.values()))
        extra = f", k = {e0.k}" if e0.k is not None else ""
        print(f"\n{info.label} ({'higher' if info.higher_is_similar else 'lower'} = more similar{extra}; "
              f"{e0.level:.0%} bootstrap interval over {e0.n_boot} draws; baseline = mean of {e0.n_perm} "
              f"shuffles):")
        for (i, j), e in m.estimates.items():
            print(f"  {cmp.backbones[i]} vs {cmp.backbones[j]}: {e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]  "
                  f"baseline {e.baseline:.3f}, p = {e.p_value:.3f}")



def register(sub) -> None:
    from core.compare.indices import DEFAULT_BOOT, DEFAULT_K, DEFAULT_PERM, INDICES

    names = [f"'{n}'" for n in INDICES]  # whatever is registered when the parser is built
    with_k = " and ".join(c.label for c in INDICES.values() if c.uses_k)
    p = sub.add_parser(
        "compare", help="metrics table and CKA of several backbones on one labelled folder, or of imported sets",
        description="Each backbone at its own input size and default embedding block. --sources compares 2 to 4 "
                    "sources, each an imported set (`backbone-lens import`; 'imported:NAME' when the name is also a "
                    "backbone's) or a backbone run on --images, on the images they share (matched by sha256 where "
                    "every source has it, else by path; at least 10); an imported set has no params or speed "
                    "(null). --json prints a list with "
                    "one object per backbone: the table's fields (backbone, dim, params, images_per_s, nmc_accuracy, "
                    "knn_accuracy, linear_accuracy, nmc_<k>shot_mean/_std, silhouette, ...) plus 'cka' = that "
                    "backbone's row of the CKA matrix, whose entries follow 'cka_order' (the backbone order, the "
                    "same in every object), and 'cka_kind'; then the similarity indices "
                    f"{', '.join(names[:-1])} and {names[-1]} as rows in the same order, with intervals, "
                    "permutation baselines and p-values under 'index_details'. Missing values are null.")
    p.add_argument("--backbones", default=None, help="two or more registry names separated by commas, e.g. A,B[,C]")
    p.add_argument("--sources", default=None, metavar="NAME,NAME[,...]",
                   help="2 to 4 imported sets and/or backbones (run on --images), compared on the images they share")
    p.add_argument("--images", default=None, help="labelled folder: root/<class>/<image> (for the backbones)")
    p.add_argument("--cka", choices=("linear", "rbf"), default="linear", help="CKA kernel (default linear)")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours for {with_k} (default {DEFAULT_K})")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOT,
                   help=f"bootstrap draws per index and pair (default {DEFAULT_BOOT})")
    p.add_argument("--permutations", type=int, default=DEFAULT_PERM,
                   help=f"shuffles for the baseline (default {DEFAULT_PERM})")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_compare)

