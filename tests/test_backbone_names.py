"""The backbone-name grammar (core.io.names): one parse, read by the registry, the policy, the CLI and the loaders."""
from __future__ import annotations

import pytest

from core.errors import UnknownBackboneError
from core.io.names import BackboneName
from core.models.builtin import BUILTIN_BACKBONES
from core.models.registry import check_backbone_name

BUILTIN = {b.name for b in BUILTIN_BACKBONES}

PARSED = {
    "mobilenetv2": BackboneName("builtin", "mobilenetv2"),
    "timm/resnet50.a1_in1k": BackboneName("timm", "resnet50.a1_in1k"),
    "timm/resnet18@/w/r18.pth": BackboneName("timm", "resnet18", file="/w/r18.pth"),
    "timm/resnet18@~/odd@name/r.safetensors": BackboneName("timm", "resnet18", file="~/odd@name/r.safetensors"),
    "open_clip/ViT-B-32/laion2b_s34b_b79k": BackboneName("open_clip", "ViT-B-32", tag="laion2b_s34b_b79k"),
    "open_clip/ViT-B-32/random": BackboneName("open_clip", "ViT-B-32", tag="random"),
    "open_clip/ViT-B-32@m.safetensors": BackboneName("open_clip", "ViT-B-32", file="m.safetensors"),
}


@pytest.mark.parametrize("text", PARSED)
def test_parse_and_round_trip(text):
    parsed = BackboneName.parse(text, BUILTIN)
    assert parsed == PARSED[text]
    assert str(parsed) == text


def test_kinds_of_name():
    assert BackboneName.parse("mobilenetv2").is_builtin
    assert BackboneName.parse("timm/resnet50.a1_in1k").is_hub
    assert BackboneName.parse("open_clip/ViT-B-32/laion2b_s34b_b79k").is_hub
    rnd = BackboneName.parse("open_clip/ViT-B-32/random")
    assert rnd.is_random and not rnd.is_hub
    local = BackboneName.parse("timm/resnet18@r.pth")
    assert not local.is_hub and str(local.with_file("/abs/r.pth")) == "timm/resnet18@/abs/r.pth"
    with pytest.raises(ValueError, match="no checkpoint"):
        BackboneName.parse("mobilenetv2").with_file("/x")


@pytest.mark.parametrize("text", ["", "nope", " mobilenetv2", "../../etc/passwd", "mobilenetv2@/x.pth", "timm/",
                                  "timm/@x.pth", "timm/resnet18@", "timm/a/b", "open_clip/", "open_clip/ViT-B-32",
                                  "open_clip/ViT-B-32/", "open_clip//tag", "open_clip/ViT-B-32/a/b",
                                  "open_clip/ViT-B-32/tag@x.pth"])
def test_bad_names_raise_the_typed_error(text):
    with pytest.raises(UnknownBackboneError):
        BackboneName.parse(text, BUILTIN)


def test_unknown_name_lists_the_known_names_and_the_patterns():
    with pytest.raises(UnknownBackboneError) as e:
        BackboneName.parse("nope", BUILTIN)
    msg = str(e.value)
    assert all(b in msg for b in BUILTIN) and "timm/<model name>@<file>" in msg and "open_clip/<arch>/<tag>" in msg


def test_without_known_names_any_bare_name_is_builtin_syntax():
    assert BackboneName.parse("anything_at_all") == BackboneName("builtin", "anything_at_all")


def test_registry_parses_against_its_registered_names():
    assert check_backbone_name("efficientnet_lite0") == BackboneName("builtin", "efficientnet_lite0")
    assert check_backbone_name("timm/resnet18@x.pth").file == "x.pth"
    with pytest.raises(UnknownBackboneError, match="vits14_saliency"):
        check_backbone_name("resnet_nonexistent")
