"""`backbone-lens saliency-report`: the saliency report card."""
from __future__ import annotations

import argparse
import sys

from core.cli._common import CliError, load_backbone

DEFAULT_LIMIT = 8


def limit_arg(text: str) -> int | str:
    """A positive whole number, or ``"all"`` (the whole dataset)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def _methods(text: str | None) -> list[str] | None:
    from core.explain.registry import SALIENCY_METHODS

    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in SALIENCY_METHODS]
    if bad or not names:
        raise CliError(f"--methods: unknown method(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                       f"known: {', '.join(SALIENCY_METHODS)}")
    return names


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA device is available to torch here; use --device cpu")
    return name


def cmd_saliency_report(args) -> int:
    from tqdm import tqdm

    from core.explain.report import ReportSettings, saliency_report
    from core.io.images import load_folder
    from core.io.store import FeatureStore

    methods = _methods(args.methods)
    device = _device(args.device)
    ds = load_folder(args.images)
    for f in ds.failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    if not ds.records:
        raise CliError(f"{args.images}: no usable images")
    limit = (min(DEFAULT_LIMIT, len(ds.records)) if args.limit is None
             else None if args.limit == "all" else int(args.limit))
    if limit is not None and limit > len(ds.records):
        raise CliError(f"--limit {args.limit}: the dataset has {len(ds.records)} images; "
                       f"use --limit {len(ds.records)} or --limit all")
    b = load_backbone(args.backbone)
    b.model.to(device)
    store = FeatureStore()  # opened before the bar: a warning about a damaged cache gets its own line
    bar = tqdm(total=0, desc=f"{args.backbone} saliency report", unit="img", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int, message: str) -> None:
        if bar.total != total:  # the first call: the cached images are not part of the rate (nor the ETA)
            bar.reset(total)
            bar.initial = bar.n = done
        else:
            bar.update(done - bar.n)
        bar.set_postfix_str(message[-40:])

    try:
        card = saliency_report(b, ds.records, methods=methods,
                               settings=ReportSettings(size=args.size, limit=limit, seed=args.seed,
                                                       batch_size=args.batch_size),
                               store=store, progress=progress)
    finally:
        bar.close()
    print(card.to_json() if args.json else card.text(per_class=args.per_class))
    return 0


def register(sub) -> None:
    from core.cli._common import input_size, positive_int

    p = sub.add_parser(
        "saliency-report", help="the saliency report card: every saliency method scored on a sample of images",
        description="One row per saliency method (the random control included): the mean over the sampled images, "
                    "with its 95%% bootstrap interval, of mprt_spearman / mprt_ssim (map vs the map of the fully "
                    "re-initialised model; lower is better), road, deletion_auc, insertion_auc, pointing_game and "
                    "relevance_mass (against the alpha channel); then the best method per score and whether it beats "
                    "the runner-up and the random control (paired bootstrap, the interval of the difference excludes "
                    "0). Scores are cached per image in the feature store: a second run, or a larger --limit, scores "
                    "only the new images. --json prints one object with backbone, size, device, images, labels, "
                    "settings, rows (method, family, n, <metric>_mean/_std/_low/_high/_n, reasons), skipped, best, "
                    "comparisons, per_class and per_image.")
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--images", required=True, help="folder, ideally root/<class>/<image> with alpha channels")
    p.add_argument("--limit", type=limit_arg, default=None,
                   help=f"images sampled round robin over the classes, up to the dataset size, or 'all' (default "
                        f"{DEFAULT_LIMIT}, or all when the dataset is smaller); a larger number is an error")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names (default: every method that runs on the backbone)")
    p.add_argument("--size", type=input_size, default=None, help="input side in pixels; default: the spec's")
    p.add_argument("--seed", type=int, default=0, help="seeds the randomised model, ROAD's noise and the bootstrap")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (auto: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="perturbed inputs per forward pass (default 8 on the CPU, where larger batches run slower, "
                        "32 on a GPU)")
    p.add_argument("--per-class", action="store_true", help="text output: add each class's mean per method")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_saliency_report)
