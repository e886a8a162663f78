"""Draw the concept atlas and concept maps of the sample stamps for each built-in backbone (README figures).

    .venv/bin/python scripts/concept_figures.py [--out docs/concepts] [--k 12] [--backbones a,b]

Writes ``atlas_<backbone>.png`` and ``map_<backbone>.png`` (three pictures, each beside its concept map)
and prints each atlas's fidelity figures. Uses the user's cache (a second run only draws).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _save(image, path: Path) -> None:
    """PNG with a 256-colour adaptive palette (a quarter of the bytes; the README shows these)."""
    from PIL import Image

    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    from core.concepts.atlas import DEFAULT_K, concept_atlas
    from core.concepts.figures import atlas_figure, atlas_map_figure
    from core.io.images import load_folder
    from core.models.builtin import BUILTIN_BACKBONES
    from core.models.registry import create_backbone
    from core.render import stack

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "concepts"))
    ap.add_argument("--k", type=int, default=DEFAULT_K)
    ap.add_argument("--backbones", default=",".join(e.name for e in BUILTIN_BACKBONES))
    ap.add_argument("--images", default=str(ROOT / "sample_data" / "stamps"))
    ap.add_argument("--maps", default="birds/blackbird.png,bovines/cow.png,fruit/Strawberry2.png",
                    help="pictures (names inside --images) drawn with their concept maps")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_folder(args.images)
    for name in args.backbones.split(","):
        atlas = concept_atlas(create_backbone(name), ds.records, k=args.k)
        d = atlas.deletion.summary() if atlas.deletion else {}
        print(f"{name}: {atlas.basis.method} k={atlas.k} block {atlas.layer}: variance explained "
              f"{atlas.variance_explained:.3f} (patches {atlas.codes.patch_variance_explained:.3f}); exact={atlas.exact}; "
              f"NMC {d.get('nmc_accuracy', float('nan')):.3f}, drop top {d.get('mean_drop_top', float('nan')):.3f}, "
              f"drop other {d.get('mean_drop_random', float('nan')):.3f}, top larger in "
              f"{d.get('classes_top_drops_more')}/{d.get('classes')}; embedding NMC {atlas.embedding_accuracy}", flush=True)
        _save(atlas_figure(atlas), out / f"atlas_{name}.png")
        panels = [atlas_map_figure(atlas, atlas.image_names.index(pic)) for pic in args.maps.split(",")]
        _save(stack(panels, gap=18), out / f"map_{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
