"""`backbone-lens why-neighbours`: a pair's cosine split into patch-pair terms (core.relate)."""
from __future__ import annotations

import sys
from pathlib import Path

from core.cli._common import CliError, add_layer_arg, input_size, load_backbone, positive_int


def _read_images(paths: list[str] | None):
    """The two ``--image`` files decoded, or a CliError naming the problem (before any model loads)."""
    from core.io.images import decode_image, read_regular_file

    if not paths or len(paths) != 2:
        n = len(paths or [])
        raise CliError(f"why-neighbours needs exactly two images (--image A --image B), got {n}")
    images = []
    for p in paths:
        f = Path(p).expanduser()
        if not f.exists():
            raise CliError(f"--image {p}: no such file")
        if f.is_dir():
            raise CliError(f"--image {p}: that is a folder; give an image file")
        images.append(decode_image(read_regular_file(f), f.name))  # ImageDecodeError: one line, exit 2
    return images


def _check_figure_arg(value: str | None) -> Path | None:
    if value is None:
        return None
    out = Path(value).expanduser()
    if out.suffix.lower() != ".png":
        raise CliError(f"--figure {value}: the figure is a PNG; give a name ending in .png")
    if out.is_dir() or not out.parent.is_dir():
        raise CliError(f"--figure {value}: give a file name in an existing folder")
    return out


def cmd_why(args) -> int:
    from core.relate.figure import why_figure
    from core.relate.why import why_neighbours

    img_a, img_b = _read_images(args.image)
    figure = _check_figure_arg(args.figure)
    backbone = load_backbone(args.backbone)
    r = why_neighbours(backbone, img_a, img_b, size=args.size, layer=args.layer, top_k=args.top, check=args.check)
    if figure is not None:
        why_figure(img_a, img_b, r, title_a=Path(args.image[0]).name, title_b=Path(args.image[1]).name).save(figure)
    if args.json:
        print(r.to_json())
        return 0
    print(f"{r.backbone} (block {r.block}, {r.size} px): cosine {r.cosine:.4f}")
    print(f"method: {r.label} ({'exact' if r.exact else 'attributed'}); {r.reference}")
    if not r.exact:
        print(f"patch pairs carry {r.terms.attributed:.4f}; not attributed to patches: {r.terms.unattributed:.4f}")
    print(f"grids: a {r.grids[0][0]}x{r.grids[0][1]}, b {r.grids[1][0]}x{r.grids[1][1]}")
    print("top links (patch a row,col -> patch b row,col: term):")
    for lk in r.links:
        print(f"  ({lk.a[0]:2d},{lk.a[1]:2d}) -> ({lk.b[0]:2d},{lk.b[1]:2d}): {lk.contribution:+.5f}")
    if r.check is not None:
        print(r.check.sentence())
    if figure is not None:
        print(f"figure: {figure}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "why-neighbours", help="why two images are close: their cosine split into patch-to-patch terms",
        description="Splits the cosine of two images' global embeddings into patch-pair terms: exactly where the "
                    "embedding is the mean of the patch features (CNNs' global average pool, mean-pooled ViTs), by "
                    "BiLRP on the CLS stream where it is a CLS token. --json prints cosine, exact, method, reference, "
                    "attributed / unattributed, grid_a / grid_b, patch_share_a / patch_share_b (each image's [h][w] "
                    "per-patch shares, summing to cosine when exact), links (a: [row, col], b: [row, col], "
                    "contribution) and deletion_check (with --check).")
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--image", action="append", help="an image file; give exactly two (--image A --image B)")
    add_layer_arg(p)
    p.add_argument("--size", type=input_size, default=None, help="input side in pixels; default: the spec's")
    p.add_argument("--top", type=positive_int, default=10, help="links to report (default 10)")
    p.add_argument("--check", action="store_true",
                   help="also blur the patches of the top 30 pairs in both images vs as many random patches (8 draws)")
    p.add_argument("--figure", default=None, help="write the figure to this .png file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_why)
