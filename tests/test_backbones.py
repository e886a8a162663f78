"""Backbones with their real pretrained weights: predictions, shapes, attention, failure modes."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from core.errors import UnknownBackboneError, UnsupportedOperationError, WeightsUnavailableError
from core.models.registry import create_backbone, list_backbones, register_backbone
from tests.conftest import scene

OFFLINE = [e.name for e in list_backbones() if e.offline]
SIZES = {"vits14_saliency": (224, 448), "mobilenetv2": (224, 256), "efficientnet_lite0": (224, 256)}


def test_registry_lists_the_three_offline_backbones():
    assert set(OFFLINE) == {"vits14_saliency", "mobilenetv2", "efficientnet_lite0"}
    assert all(e.is_available() for e in list_backbones())


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownBackboneError) as e:
        create_backbone("resnet_nonexistent")
    assert "mobilenetv2" in str(e.value) and "timm/<model name>" in str(e.value)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("mobilenetv2", summary="x", offline=True)(lambda: None)


@pytest.mark.parametrize("name", ["timm/resnet18.a1_in1k", "open_clip/ViT-B-32/laion2b_s34b_b79k"])
def test_online_name_fails_fast_offline(name):
    t = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="network"):
        create_backbone(name)
    assert time.perf_counter() - t < 15  # a clear error, never a hang


def test_missing_local_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        create_backbone(f"timm/resnet18@{tmp_path / 'nope.safetensors'}")


def test_local_timm_checkpoint_loads(tmp_path, get_backbone):
    """`timm/<arch>@<file>`: the MobileNetV2 weights saved as a timm checkpoint give the same logits."""
    ref = get_backbone("mobilenetv2")
    path = tmp_path / "mnv2.pth"
    torch.save(ref.model.state_dict(), path)
    b = create_backbone(f"timm/mobilenetv2_100@{path}")
    x = ref.preprocess([scene("cat.jpg")])
    assert torch.allclose(b.logits(x), ref.logits(x), atol=1e-5)
    assert b.spec.source == "local" and len(b.spec.weights_sha256) == 64


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet_lite0"])
def test_imagenet_cnns_recognise_cat_and_espresso(name, get_backbone):
    b = get_backbone(name)
    probs = b.logits(b.preprocess([scene("cat.jpg"), scene("coffee.jpg")])).softmax(-1)
    top = [b.class_names[i] for i in probs.argmax(-1)]
    assert "cat" in top[0], top
    assert top[1] == "espresso", top
    assert probs[1].max() > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFLINE)
def test_shapes_at_two_sizes(name, get_backbone):
    b = get_backbone(name)
    spec = b.spec
    for size in SIZES[name]:
        x = torch.randn(2, 3, size, size)
        h, w = spec.grid(size)
        want = (["embedding", "patch_tokens"] + (["logits"] if spec.has_classifier else [])
                + (["attention_cls"] if spec.has_attention else []))
        out = b.extract(x, want=want)
        assert out["embedding"].shape[0] == 2 and out["embedding"].ndim == 2
        assert out["patch_tokens"].shape[:3] == (2, h, w)
        if spec.has_classifier:
            assert out["logits"].shape == (2, 1000) and len(b.class_names) == 1000
        if spec.has_attention:
            assert out["attention_cls"].shape[:2] == (2, spec.num_layers) and out["attention_cls"].shape[-1] == h * w
        for layer in (0, spec.num_layers // 2):
            assert b.patch_tokens(x, layer=layer).shape[:3][0] == 2


@pytest.mark.slow
def test_vit_attention_rows_sum_to_one_and_match_cls_rows(get_backbone):
    b = get_backbone("vits14_saliency")
    x = b.preprocess([scene("cat.jpg")], 224)
    a = b.attention(x)  # [N, L, H, T, T]
    h, w = b.spec.grid(224)
    T = b.spec.num_prefix_tokens + h * w
    assert a.shape == (1, 12, 6, T, T)
    torch.testing.assert_close(a.sum(-1), torch.ones(1, 12, 6, T), atol=1e-4, rtol=0)
    cls = b.extract(x, want=("attention_cls",))["attention_cls"]
    torch.testing.assert_close(cls, a[:, :, :, 0, b.spec.num_prefix_tokens:])
    # timm's fused attention is restored on the instance afterwards
    assert all(blk.attn.fused_attn == b.model.blocks[0].attn.fused_attn for blk in b.model.blocks)


@pytest.mark.slow
def test_cnn_attention_is_a_clear_error(get_backbone):
    with pytest.raises(UnsupportedOperationError, match="no attention"):
        get_backbone("mobilenetv2").attention(torch.randn(1, 3, 224, 224))


@pytest.mark.slow
def test_vit_first_principal_component_separates_stamps_from_background(get_backbone, stamps):
    """The patch tokens' first PC splits the object from its (white) background: IoU with the
    stamp's alpha mask, sign fixed by the border heuristic of core.segment.foreground."""
    from core.io.images import decode_alpha
    from core.segment.foreground import pca_foreground
    from core.segment.masks import iou, mask_to_image_size

    b = get_backbone("vits14_saliency")
    recs = [r for r in stamps.records][::4]  # 12 stamps, every class
    images = [r.decode() for r in recs]
    tokens = b.patch_tokens(b.preprocess(images, 224)).numpy()
    ious, chance = [], []
    for r, im, tok in zip(recs, images, tokens):
        alpha = decode_alpha(r.read_bytes(), r.name)
        _, mask = pca_foreground(tok)
        pred = mask_to_image_size(mask, im.size)
        ious.append(iou(pred, alpha))
        chance.append(iou(np.ones_like(alpha), alpha))  # "everything is foreground"
    print(f"PC1 foreground IoU {np.mean(ious):.3f} vs all-foreground {np.mean(chance):.3f}")
    assert np.mean(ious) > 0.55
    assert np.mean(ious) > np.mean(chance) + 0.1


def test_open_clip_random_init_path():
    b = create_backbone("open_clip/ViT-B-32/random")
    assert "random-init" in b.spec.weights_name and b.spec.has_text
    x = torch.randn(2, 3, 224, 224)
    out = b.extract(x, want=("embedding", "patch_tokens", "attention_cls"))
    assert out["embedding"].shape == (2, 512)
    assert out["patch_tokens"].shape == (2, 7, 7, 768)
    assert out["attention_cls"].shape == (2, 12, 12, 49)
    torch.testing.assert_close(b.attention(x).sum(-1), torch.ones(2, 12, 12, 50), atol=1e-4, rtol=0)
    t = b.encode_text(["a photo of a cat", "a photo of a dog"])
    assert t.shape == (2, 512)
    with pytest.raises(ValueError, match="only takes 224"):
        b.preprocess([scene("cat.jpg")], 448)


@pytest.mark.slow
def test_threads_sharing_a_backbone_get_their_own_results(get_backbone):
    """The app serves sessions from threads that share one cached model: attention capture (which
    switches fused attention off and hooks the blocks) must not leak into another thread's forward."""
    from concurrent.futures import ThreadPoolExecutor

    b = get_backbone("vits14_saliency")
    x = b.preprocess([scene("cat.jpg")], 224)
    ref_emb, ref_attn = b.embed(x), b.attention(x)
    with ThreadPoolExecutor(4) as pool:
        embs = [pool.submit(b.embed, x) for _ in range(4)]
        attns = [pool.submit(b.attention, x) for _ in range(4)]
        for f in embs:
            torch.testing.assert_close(f.result(), ref_emb)
        for f in attns:
            torch.testing.assert_close(f.result(), ref_attn)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vits14_saliency", "mobilenetv2"])
def test_extract_layers_in_one_forward_equals_extract_per_block(name, get_backbone):
    b = get_backbone(name)
    x = b.preprocess([scene("coffee.jpg"), scene("cat.jpg")])
    layers = [0, 2, -2, -1]
    many = b.extract_layers(x, layers, want=("embedding", "patch_tokens"))
    for l in layers:
        one = b.extract(x, l, want=("embedding", "patch_tokens"))
        torch.testing.assert_close(many[l]["embedding"], one["embedding"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(many[l]["patch_tokens"], one["patch_tokens"], rtol=1e-4, atol=1e-5)
