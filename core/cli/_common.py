"""What the commands share: argument types and checks, the progress bar, loading a backbone and a
folder's features. A bad argument raises :class:`CliError` (one line, exit status 2)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import BackboneLensError


def progress_bar(desc: str):
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


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def input_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{n} px is outside {MIN_SIZE}..{MAX_SIZE}")
    return n


def fraction(text: str) -> float:
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


def check_dir_arg(flag: str, value: str) -> None:
    """A folder that may not exist yet: it must not be a file, nor lie under one."""
    p = Path(value).expanduser()
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag} {value}: that is a file, not a folder")
    anc = _first_existing_ancestor(p)
    if not anc.is_dir():
        raise CliError(f"{flag} {value}: {anc} is a file, so no folder can be made under it")


def check_out_arg(value: str) -> Path:
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


def check_images_arg(flag: str, value: str) -> None:
    p = Path(value).expanduser()
    if not p.exists():
        raise CliError(f"{flag} {value}: no such folder")
    if not p.is_dir():
        raise CliError(f"{flag} {value}: not a folder (give the folder that holds the images)")


def check_backbone_arg(name: str) -> None:
    """A local checkpoint (``timm/<arch>@<file>``, ``open_clip/<arch>@<file>``) must be a checkpoint; any
    other name must be registered or an online pattern."""
    from core.io.policy import check_checkpoint_file
    from core.models.registry import check_backbone_name

    parsed = check_backbone_name(name)
    if parsed.file is None:
        return
    file = Path(parsed.file).expanduser()
    if not file.exists():
        raise CliError(f"{name}: checkpoint file not found: {file}")
    check_checkpoint_file(file)


def validate(args) -> None:
    """Every argument checked before anything is read or written (raises CliError)."""
    if getattr(args, "cache", None):
        check_dir_arg("--cache", args.cache)
    for flag in ("images", "train", "test"):
        if getattr(args, flag, None):
            check_images_arg(f"--{flag}", getattr(args, flag))
    if getattr(args, "out", None):
        if getattr(args, "engine", None) == "ray":  # extract --engine ray: a directory of Parquet shards
            check_dir_arg("--out", args.out)
        else:
            args.out = str(check_out_arg(args.out))
    kinds = getattr(args, "kinds", None)
    if kinds is not None:
        bad = [k for k in kinds.split(",") if k not in FEATURE_KINDS]
        if bad or not kinds:
            raise CliError(f"--kinds {kinds}: unknown kind(s) {', '.join(bad) or '(empty)'}; "
                           f"choose from {','.join(FEATURE_KINDS)}")
    names = [getattr(args, "backbone", None)] + (getattr(args, "backbones", "") or "").split(",")
    for n in names:
        if n and n.strip():
            check_backbone_arg(n.strip())


def load_backbone(name: str):
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


def features(args, kinds=("embedding",), keep: bool = True):
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
    backbone = load_backbone(args.backbone)
    if args.size is not None:
        backbone.spec.check_size(args.size)
    backbone.resolve_layer(args.layer)
    store = FeatureStore()  # opened before the bar: a warning about a damaged cache gets its own line
    bar, update = progress_bar(f"{args.backbone}")
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


def add_layer_arg(p: argparse.ArgumentParser) -> None:
    from core.models.layers import Layer

    p.add_argument("--layer", type=lambda v: Layer(int(v)), default=Layer.DEFAULT,
                   help="block index (negative from the end); default: the spec's embedding block for embeddings, "
                        "the last block for patch tokens")


def add_feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True, help="registry name (see `backbone-lens backbones`)")
    p.add_argument("--images", required=True, help="folder: root/<class>/<image> or a flat folder")
    add_layer_arg(p)
    p.add_argument("--size", type=input_size, default=None, help=f"input side in pixels ({MIN_SIZE}..{MAX_SIZE}); default: the spec's")
    p.add_argument("--batch-size", type=positive_int, default=16)


