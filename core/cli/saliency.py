"""`backbone-lens saliency-report`: the saliency report card."""
from __future__ import annotations

import sys

from core.cli._common import (
    progress_bar,
)


def cmd_saliency_report(args) -> int:
    from core.explain.report import ReportSettings, saliency_report
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.registry import create_backbone

    ds = load_folder(args.images)
    for f in ds.failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    bar, _ = progress_bar(f"{args.backbone} saliency report")
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



def register(sub) -> None:
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
