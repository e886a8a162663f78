"""`backbone-lens concepts`: the concept atlas of a folder (concepts, typical patches, class table, fidelity)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli._common import CliError, input_size, load_backbone, positive_int, progress_bar


def _k(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of concepts, got {text!r}") from None
    if k < 2:
        raise argparse.ArgumentTypeError(f"a concept atlas needs at least 2 concepts, got {k}")
    return k


def _png(text: str) -> str:
    p = Path(text).expanduser()
    if p.suffix.lower() != ".png" or p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: give a file name ending in .png")
    return str(p)


def cmd_concepts(args) -> int:
    from core.concepts.atlas import concept_atlas
    from core.io.images import load_folder

    ds = load_folder(args.images)
    for f in ds.failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    if not ds.records:
        raise CliError(f"{args.images}: no usable images")
    if args.atlas and not Path(args.atlas).parent.is_dir():
        raise CliError(f"--atlas {args.atlas}: the folder {Path(args.atlas).parent} does not exist")
    backbone = load_backbone(args.backbone)
    bar, _ = progress_bar(f"{args.backbone} concepts")

    def progress(stage: str, done: int, total: int) -> None:
        bar.set_description(f"{args.backbone} concepts: {stage}")
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        atlas = concept_atlas(backbone, ds.records, k=args.k, method=args.method, layer=args.layer, size=args.size,
                              sample=args.sample, seed=args.seed, batch_size=args.batch_size, progress=progress)
    finally:
        bar.close()
    for f in atlas.failures:
        print(f"skipped {f.name}: {f.reason}", file=sys.stderr)
    if args.atlas:
        from core.concepts.figures import atlas_figure

        atlas_figure(atlas).save(args.atlas)
        print(f"wrote {args.atlas}", file=sys.stderr)
    print(json.dumps(atlas.to_json(top=args.top), indent=1) if args.json else _text(atlas, args.top))
    return 0


def _text(atlas, top: int) -> str:
    s = atlas.stats
    out = [f"{atlas.backbone}: {atlas.k} concepts ({atlas.basis.method}) of block {atlas.layer} on {s.n_images} images, "
           f"fitted on {s.sample_vectors:,} patch vectors from {s.sample_images} images"
           + (" (from the cache)" if s.from_cache else f" (fit {s.fit_seconds:.1f} s, encode {s.apply_seconds:.1f} s)"),
           f"variance of the pooled features reconstructed: {atlas.variance_explained:.3f}; "
           f"of the patch vectors: {atlas.codes.patch_variance_explained:.3f}"]
    if atlas.deletion is not None:
        d = atlas.deletion.summary()
        out.append(f"deleting a class's top concept: NMC accuracy {d['nmc_accuracy']:.3f} drops by {d['mean_drop_top']:.3f} "
                   f"(another concept: {d['mean_drop_random']:.3f}); larger in {d['classes_top_drops_more']}/{d['classes']} classes")
    else:
        out.append(f"deletion test: {atlas.deletion_note}")
    out.append(f"class table: {atlas.decomposition()}" if atlas.table is not None else f"class table: {atlas.table_note}")
    t = atlas.codes.top
    for j in range(atlas.k):
        tops = atlas.table.top_classes(j) if atlas.table is not None else []
        cls = ", ".join(f"{c} {v:+.3f}" for c, v in tops) or "-"
        out.append(f"\n{atlas.label(j)}  top classes: {cls}")
        for i, r, c, v in zip(t.image[j, :top], t.row[j, :top], t.col[j, :top], t.coef[j, :top]):
            if i >= 0:
                out.append(f"  {v:8.3f}  {atlas.image_paths[i] or atlas.image_names[i]}  patch ({r}, {c})")
    if atlas.table is not None:
        tb = atlas.table
        out.append("\nper-class mean score to the own prototype, split over concepts (rows: classes)")
        out.append("class".ljust(14) + "".join(f"C{j}".rjust(7) for j in range(atlas.k)) + "  offset  resid  score")
        for c in range(len(tb.classes)):
            out.append(str(tb.classes[c])[:13].ljust(14) + "".join(f"{v:7.3f}" for v in tb.contributions[c])
                       + f"{tb.offset[c]:8.3f}{tb.residual[c]:7.3f}{tb.score[c]:7.3f}")
    return "\n".join(out)


def register(sub) -> None:
    from core.concepts.atlas import DEFAULT_K
    from core.concepts.methods import method_names
    from core.concepts.tokens import MAX_SAMPLE

    p = sub.add_parser(
        "concepts", help="the concept atlas: k concepts found in the patch features, typical patches, class table, fidelity",
        description="Fits k concepts on a sample of patch vectors (NMF of post-ReLU CNN maps as CRAFT; shifted NMF of ViT "
                    "tokens), encodes every image, and splits each class's nearest-class-mean score over the concepts. "
                    "Cached: a second run computes nothing. --json prints one object with backbone, layer, method, k, "
                    "sample, exact, decomposition, fidelity (variance_explained, patch_variance_explained, deletion), "
                    "concepts (typical_patches with paths and patch positions, top_classes), class_table (or null and "
                    "class_table_note) and seconds.")
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--images", required=True, help="folder: root/<class>/<image> (a flat folder: no class table)")
    p.add_argument("--k", type=_k, default=DEFAULT_K, help=f"number of concepts, at least 2 (default {DEFAULT_K})")
    p.add_argument("--method", choices=method_names(), default="auto",
                   help="auto (default): nmf for non-negative maps, nmf_shifted for signed tokens")
    p.add_argument("--layer", type=int, default=None, help="block index (default: the block the embedding comes from)")
    p.add_argument("--size", type=input_size, default=None, help="input side in pixels; default: the spec's")
    p.add_argument("--sample", type=positive_int, default=MAX_SAMPLE,
                   help=f"patch vectors the concepts are fitted on, at most (default {MAX_SAMPLE:,})")
    p.add_argument("--seed", type=int, default=0, help="seeds the sample and the fit")
    p.add_argument("--top", type=positive_int, default=8, help="typical patches listed per concept (default 8)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--atlas", type=_png, default=None, help="also draw the atlas figure into this .png file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_concepts)
