"""`backbone-lens compare`: several backbones on one labelled folder."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from core.cli._common import (
    CliError,
    load_backbone,
    positive_int,
    progress_bar,
)


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
    backbones = [load_backbone(n) for n in names]
    bars: dict = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in bars:  # one bar per backbone, the previous one closed first
            for bar, _ in bars.values():
                bar.close()
            bars[name] = progress_bar(name)
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
        "compare", help="metrics table and CKA of several backbones on one labelled folder",
        description="Each backbone at its own input size and default embedding block. --json prints a list with "
                    "one object per backbone: the table's fields (backbone, dim, params, images_per_s, nmc_accuracy, "
                    "knn_accuracy, linear_accuracy, nmc_<k>shot_mean/_std, silhouette, ...) plus 'cka' = that "
                    "backbone's row of the CKA matrix, whose entries follow 'cka_order' (the backbone order, the "
                    "same in every object), and 'cka_kind'; then the similarity indices "
                    f"{', '.join(names[:-1])} and {names[-1]} as rows in the same order, with intervals, "
                    "permutation baselines and p-values under 'index_details'. Missing values are null.")
    p.add_argument("--backbones", required=True, help="two or more registry names separated by commas, e.g. A,B[,C]")
    p.add_argument("--images", required=True, help="labelled folder: root/<class>/<image>")
    p.add_argument("--cka", choices=("linear", "rbf"), default="linear", help="CKA kernel (default linear)")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours for {with_k} (default {DEFAULT_K})")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOT,
                   help=f"bootstrap draws per index and pair (default {DEFAULT_BOOT})")
    p.add_argument("--permutations", type=int, default=DEFAULT_PERM,
                   help=f"shuffles for the baseline (default {DEFAULT_PERM})")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_compare)

