"""core.explain (attention, cam, prototype maps, faithfulness) and core.render: rollout on REAL attention against
the formula, Grad-CAM maps against
pytorch-grad-cam used directly (and Grad-CAM against its formula), prototypes, faithfulness, and that
the shared model is left as it was. Fast tests use a tiny random ViT with register tokens."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from core import render
from core.errors import UnsupportedOperationError
from core.explain.attention import vit_attention
from core.explain.cam import CAM_METHODS, CamMethod, compute_cam, register_cam_method
from core.explain.faithfulness import faithfulness
from core.explain.prototype_maps import ClassSums, PrototypeSet, explain_by_prototypes
from core.explain.targets import CamTarget, EmbeddingSimilarityTarget, top_classes
from core.models.spec import BackboneSpec
from core.models.timm_backbone import TimmBackbone, timm_spec_fields
from tests.conftest import scene

REFERENCE_CAMS = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus, "EigenCAM": EigenCAM, "LayerCAM": LayerCAM}


# ---- helpers written out independently of core ------------------------------------------------------
def rollout_formula(attn: np.ndarray, fusion: str, discard: float, start: int) -> np.ndarray:
    """Abnar & Zuidema rollout, R = prod_l normalise(fuse(A_l) with the weakest weights dropped + I)."""
    L, H, T, _ = attn.shape
    R = np.eye(T)
    for layer in range(start, L):
        A = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](attn[layer].astype(np.float64), axis=0)  # [T, T]
        n_drop = int(T * T * discard)
        if n_drop:
            cutoff = np.sort(A.ravel())[n_drop - 1]
            keep00 = A[0, 0]
            A = np.where(A <= cutoff, 0.0, A)
            A[0, 0] = keep00  # CLS -> CLS is never dropped
        A = A + np.eye(T)
        A = A / A.sum(axis=1, keepdims=True)
        R = A @ R
    return R


def vit_reshape_from_model(model: torch.nn.Module, size: int):
    """jacobgil's ViT reshape_transform, with the grid and prefix count read from the timm model."""
    gh, gw = size // model.patch_embed.patch_size[0], size // model.patch_embed.patch_size[1]
    p = model.num_prefix_tokens

    def reshape(t):  # [N, T, D] -> [N, D, gh, gw]
        return t[:, p:, :].reshape(t.size(0), gh, gw, t.size(2)).permute(0, 3, 1, 2)

    return reshape


def reference_cam(model, layers, reshape, x, target, method) -> np.ndarray:
    cam = REFERENCE_CAMS[method](model=model, target_layers=layers, reshape_transform=reshape)
    try:
        return cam(input_tensor=x.clone().requires_grad_(True), targets=[target])[0]
    finally:
        cam.activations_and_grads.release()


def model_fingerprint(model: torch.nn.Module) -> tuple:
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    fused = tuple(getattr(getattr(m, "attn", None), "fused_attn", None) for m in getattr(model, "blocks", []))
    grads = tuple(p.requires_grad for p in model.parameters())
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    return hooks, fused, any(grads), model.training, checksum


@pytest.fixture(scope="module")
def tiny_reg_vit() -> TimmBackbone:
    """A random 2-block ViT-S/14-style model with 4 register tokens (5 prefix tokens), any input size."""
    torch.manual_seed(0)
    m = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, depth=2, num_heads=2, embed_dim=32,
                          img_size=56, dynamic_img_size=True, num_classes=0)
    spec = BackboneSpec(name="tiny_reg", source="local", architecture="vit_small_patch14_reg4_dinov2",
                        weights_name="random-init", weights_sha256="0" * 64, **timm_spec_fields(m, input_size=56))
    return TimmBackbone(m, spec)


# ---- fast: registers, any size, registry, targets, figures --------------------------------------------
@pytest.mark.parametrize("size", [56, 84])
def test_attention_and_cam_with_registers_at_any_size(tiny_reg_vit, size: int) -> None:
    b = tiny_reg_vit
    assert b.spec.num_prefix_tokens == 5
    h, w = b.spec.grid(size)
    x = torch.randn(1, 3, size, size)
    a = vit_attention(b, x)
    assert a.attn.shape == (2, 2, 5 + h * w, 5 + h * w)
    assert a.cls_maps.shape == (2, 2, h, w)
    np.testing.assert_allclose(a.cls_maps, a.attn[:, :, 0, 5:].reshape(2, 2, h, w))  # registers skipped
    ro = a.rollout("max", 0.1, 0)
    want = rollout_formula(a.attn, "max", 0.1, 0)[0, 5:]
    assert want.max() > want.min()
    np.testing.assert_allclose(ro, ((want - want.min()) / (want.max() - want.min())).reshape(h, w), atol=1e-5)
    emb = b.extract(x, -1)["embedding"][0].numpy()
    target = CamTarget.similarity("noise", emb + np.random.default_rng(0).normal(size=emb.shape).astype(np.float32))
    got = compute_cam(b, x, "Grad-CAM", target)
    ref = reference_cam(b.model, [b.model.blocks[-1].norm1], vit_reshape_from_model(b.model, size), x,
                        target.gradcam_target(), "Grad-CAM")
    assert got.shape == (size, size)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_cam_registry_and_targets(tiny_reg_vit) -> None:
    assert {"Grad-CAM", "Grad-CAM++", "EigenCAM", "LayerCAM"} <= set(CAM_METHODS)
    with pytest.raises(ValueError, match="already registered"):
        register_cam_method(CamMethod("Grad-CAM", GradCAM, True, "again"))
    with pytest.raises(ValueError, match="unknown CAM method 'Nope'; known: Grad-CAM"):
        compute_cam(tiny_reg_vit, torch.randn(1, 3, 56, 56), "Nope", CamTarget.similarity("t", np.ones(32)))
    with pytest.raises(UnsupportedOperationError, match="no classifier head"):
        CamTarget.imagenet_class(tiny_reg_vit, 3)
    with pytest.raises(ValueError, match="one vector"):
        EmbeddingSimilarityTarget(np.ones((2, 3)))
    t = EmbeddingSimilarityTarget(torch.tensor([1.0, 0.0]))
    assert float(t(torch.tensor([2.0, 0.0]))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reference dim"):
        t(torch.ones(3))


def test_class_prototypes_leave_one_out() -> None:
    E = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    p = PrototypeSet.from_embeddings(E, ["a", "a", "b", "b"])
    assert p.classes == ["a", "b"] and p.counts == [2, 2]
    np.testing.assert_allclose(np.linalg.norm(p.vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p.vectors[1], [0.05, 0.95] / np.linalg.norm([0.05, 0.95]), rtol=1e-6)  # plain mean
    loo = PrototypeSet.from_embeddings(E, ["a", "a", "b", "b"], exclude=[0])
    assert loo.counts == [1, 2]
    np.testing.assert_allclose(loo.vectors[0], E[1] / np.linalg.norm(E[1]), rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2 classes"):
        PrototypeSet.from_embeddings(E, ["a", "a", "", ""])


def test_class_sums_leave_out_equals_the_means_of_the_kept_rows() -> None:
    rng = np.random.default_rng(4)
    E = rng.normal(size=(300, 16)).astype(np.float32)
    labels = [["", "a", "b", "c", "d"][i % 5] for i in range(300)]
    labels[7] = "e"  # a class of one image: left out with it
    sums = ClassSums.of(E, labels)  # once; then each picture subtracts its own rows
    for out in ([], [0], [7, 11, 12, 300 + 5], list(range(0, 300, 3))):
        got = sums.without(out)
        keep = np.array([bool(lab) and i not in out for i, lab in enumerate(labels)])
        lab = np.array(labels)
        classes = sorted(set(lab[keep]))
        assert got.classes == classes and got.counts == [int((lab[keep] == c).sum()) for c in classes]
        ref = np.stack([E[keep & (lab == c)].astype(np.float64).mean(0) for c in classes])  # the means written out
        np.testing.assert_allclose(got.vectors, ref / np.linalg.norm(ref, axis=1, keepdims=True), rtol=1e-6, atol=1e-7)
        same = PrototypeSet.from_embeddings(E, labels, out)
        assert same.classes == got.classes and np.array_equal(same.vectors, got.vectors)
    with pytest.raises(ValueError, match="at least 2 classes"):
        sums.without([i for i, lab in enumerate(labels) if lab not in ("", "a")])


def overlay_formula(image, heat: np.ndarray, alpha: float, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """The float overlay written out: scale to [0, 1], bilinear stretch, colour map, blend; ``[H, W, 3]`` uint8."""
    import matplotlib

    scaled = np.clip((heat - vmin) / (vmax - vmin), 0.0, 1.0).astype(np.float32)
    W, H = image.size
    big = F.interpolate(torch.from_numpy(scaled)[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    colours = matplotlib.colormaps[cmap](np.clip(big.numpy(), 0.0, 1.0))[..., :3]  # [H, W, 3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return np.round(((1.0 - alpha) * base + alpha * colours) * 255.0).astype(np.uint8)


def test_fast_overlay_matches_the_float_formula() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), "RGB")
    heat = rng.normal(size=(6, 9)).astype(np.float32)
    for cmap, alpha in [("inferno", 0.5), ("viridis", 1.0), ("RdBu_r", 0.3)]:
        scale = render.ColorScale(-1.0, 1.5, cmap)
        want = overlay_formula(base, heat, alpha, cmap, -1.0, 1.5).astype(int)
        got = np.asarray(render.fast_overlay(base, heat, scale, alpha=alpha), dtype=int)
        diff = np.abs(got - want)
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6  # a level or two of the 256-entry map


def test_render_figures_have_colour_bars() -> None:
    from PIL import Image

    img = Image.new("RGB", (200, 100), (120, 120, 120))
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    scale = render.ColorScale.shared([heat], "viridis", "cosine")
    fig = render.heat_figure(img, heat, scale, title="t", max_side=200)
    assert fig.height >= 100 + render.TITLE_H and fig.width > 200 + 16  # picture + bar with ticks and label
    assert render.ColorScale.shared([heat - 5], symmetric=True).vmin == -10
    m = render.mask_panel(img, heat > 7, max_side=200)
    assert m.size == (200, 100)
    with pytest.raises(ValueError, match="vmin <= vmax"):
        render.ColorScale(1.0, 0.0)
    assert render.plain("A − B ≥ 0…") == "A - B >= 0..."  # glyphs the bundled font lacks


# ---- real weights ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_rollout_on_real_vits14_attention_matches_formula(get_backbone) -> None:
    b = get_backbone("vits14_saliency")
    a = vit_attention(b, b.preprocess([scene("cat.jpg")], 224))
    p, (h, w) = b.spec.num_prefix_tokens, b.spec.grid(224)
    assert a.attn.shape == (12, 6, p + h * w, p + h * w) and (h, w) == (16, 16)
    np.testing.assert_allclose(a.attn.sum(-1), 1.0, atol=1e-4)  # softmax rows
    for fusion, discard, start in [("mean", 0.0, 0), ("max", 0.9, 0), ("min", 0.5, 6), ("mean", 0.9, -4)]:
        R = rollout_formula(a.attn, fusion, discard, start % 12)
        np.testing.assert_allclose(a.rollout(fusion, discard, start).ravel(),
                                   (R[0, p:] - R[0, p:].min()) / (R[0, p:].max() - R[0, p:].min()), atol=1e-5)


@pytest.mark.slow
def test_real_attention_shapes_at_448(get_backbone) -> None:
    b = get_backbone("vits14_saliency")
    a = vit_attention(b, b.preprocess([scene("coffee.jpg")], 448))
    assert a.grid == (32, 32) and a.cls_maps.shape == (12, 6, 32, 32)
    assert a.attn.shape[-1] == b.spec.num_prefix_tokens + 32 * 32


@pytest.mark.slow
@pytest.mark.parametrize("method", list(REFERENCE_CAMS))
def test_cam_equals_pytorch_grad_cam_on_mobilenetv2(get_backbone, method: str) -> None:
    b = get_backbone("mobilenetv2")
    x = b.preprocess([scene("cat.jpg")], 224)
    top = top_classes(b, x)
    assert "cat" in top[0].name  # the weights are genuinely pretrained
    before = model_fingerprint(b.model)
    got = compute_cam(b, x, method, CamTarget.imagenet_class(b, top[0].index))
    assert model_fingerprint(b.model) == before
    ref = reference_cam(b.model, [b.model.bn2], None, x, ClassifierOutputTarget(top[0].index), method)
    assert got.shape == (224, 224)
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(REFERENCE_CAMS))
def test_cam_equals_pytorch_grad_cam_on_vits14(get_backbone, method: str) -> None:
    b = get_backbone("vits14_saliency")
    x = b.preprocess([scene("cat.jpg")], 224)
    other = b.extract(b.preprocess([scene("coffee.jpg")], 224), -1)["embedding"][0]  # a concept to explain
    before = model_fingerprint(b.model)
    got = compute_cam(b, x, method, CamTarget.similarity("coffee", other.numpy()))
    assert model_fingerprint(b.model) == before

    def cosine_target(out):  # written out here, not core's class
        return F.cosine_similarity(out, other, dim=-1)

    # timm's own forward of a head-less model returns the pooled embedding the target compares
    ref = reference_cam(b.model, [b.model.blocks[-1].norm1], vit_reshape_from_model(b.model, 224), x, cosine_target, method)
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.slow
def test_grad_cam_formula_and_448(get_backbone) -> None:
    """Grad-CAM = ReLU(sum_c mean_ij(dy/dA_cij) A_c), min-max scaled and resized; and on the ViT at 448."""
    b = get_backbone("mobilenetv2")
    x = b.preprocess([scene("coffee.jpg")], 224)
    idx = top_classes(b, x)[0].index
    xg = x.clone().requires_grad_(True)
    A = b.model.forward_features(xg)  # [1, C, 7, 7], the bn2 output
    y = b.model.forward_head(A)[0, idx]
    (g,) = torch.autograd.grad(y, A)
    cam = F.relu((g.mean((2, 3), keepdim=True) * A).sum(1))[0].detach().numpy()  # [7, 7]
    for _ in range(2):  # min-max scale, resize to the input (bilinear), and scale again (as pytorch-grad-cam)
        cam = cam - cam.min()
        cam = cv2.resize(cam / (cam.max() + 1e-7), (224, 224))
    np.testing.assert_allclose(compute_cam(b, x, "Grad-CAM", CamTarget.imagenet_class(b, idx)), cam, atol=1e-5)

    v = get_backbone("vits14_saliency")
    xv = v.preprocess([scene("coffee.jpg")], 448)
    ref = v.extract(v.preprocess([scene("cat.jpg")], 448), -1)["embedding"][0].numpy()
    got = compute_cam(v, xv, "Grad-CAM", CamTarget.similarity("cat", ref))
    want = reference_cam(v.model, [v.model.blocks[-1].norm1], vit_reshape_from_model(v.model, 448), xv,
                         EmbeddingSimilarityTarget(ref), "Grad-CAM")
    assert got.shape == (448, 448)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_prototype_maps_on_real_stamps(get_backbone, stamps) -> None:
    """Nearest-prototype picks with leave-one-out on mobilenetv2 embeddings (documented ~0.8) and the
    maps of one image: a - b is the difference, on the 7x7 grid."""
    b = get_backbone("mobilenetv2")
    x = b.preprocess([r.decode() for r in stamps.records], 224)
    out = b.extract(x, -1, want=("embedding", "patch_tokens"))
    E, T = out["embedding"].numpy(), out["patch_tokens"].numpy()  # [N, D], [N, 7, 7, D]
    labels = stamps.labels
    correct = 0
    for i in range(len(labels)):
        ex = explain_by_prototypes(T[i], E[i], PrototypeSet.from_embeddings(E, labels, exclude=[i]))
        correct += ex.prototypes.classes[ex.a] == labels[i]
        assert ex.maps["a"].shape == (7, 7) and ex.a != ex.b
        np.testing.assert_allclose(ex.maps["diff"], ex.maps["a"] - ex.maps["b"], atol=1e-6)
    assert correct / len(labels) >= 0.75


@pytest.mark.slow
def test_faithfulness_grad_cam_beats_its_inverse(get_backbone) -> None:
    b = get_backbone("mobilenetv2")
    img = scene("cat.jpg")
    x = b.preprocess([img], 224)
    target = CamTarget.imagenet_class(b, top_classes(b, x)[0].index)
    cam = compute_cam(b, x, "Grad-CAM", target)
    good = faithfulness(b, img, cam, target, 224, steps=8)
    bad = faithfulness(b, img, 1.0 - cam, target, 224, steps=8)
    assert good["deletion_curve"][0] == pytest.approx(1.0)
    assert good["deletion_auc"] < bad["deletion_auc"]
    assert good["insertion_auc"] > bad["insertion_auc"]
