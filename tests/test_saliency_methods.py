"""The saliency-method registry (core.explain.registry / methods / cam): every registered method on tiny
random models, each map against its own definition written out, the shared rules (default method, default
target, one rollout default), and ROAD against pytorch-grad-cam's own classes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from scipy.ndimage import gaussian_filter

from core.errors import UnsupportedOperationError
from core.explain.attention import DEFAULT_ROLLOUT, RolloutParams
from core.explain.cam import CAM_METHODS, CamMethod, register_cam_method
from core.explain.faithfulness import (
    _NEIGHBOURS,
    _direct_impute,
    _grid_rank,
    noisy_linear_impute,
    road,
    road_score,
    tensor_scorer,
)
from core.explain.inputs import SaliencyInput
from core.explain.methods import (
    ATTENTION,
    PROTOTYPE_A,
    PROTOTYPE_B,
    PROTOTYPE_DIFF,
    RANDOM,
    ROLLOUT,
    available_methods,
    compute_saliency,
    default_method,
)
from core.explain.prototype_maps import PrototypeSet
from core.explain.registry import (
    SALIENCY_METHODS,
    SaliencyMethod,
    get_saliency_method,
    register_saliency_method,
)
from core.explain.targets import CamTarget, default_target
from core.models.base import tokens_to_grid
from core.models.timm_backbone import TimmBackbone
from tests.conftest import tiny_timm_backbone
from tests.test_saliency import rollout_formula


def _tiny(arch: str, **kw) -> TimmBackbone:
    return tiny_timm_backbone(arch, f"tiny_{arch}_{len(kw)}", **kw)


@pytest.fixture(scope="module")
def vit() -> TimmBackbone:
    return _tiny("test_vit", num_classes=0)  # no head


@pytest.fixture(scope="module")
def cnn() -> TimmBackbone:
    return _tiny("test_efficientnet")  # a head with 1000 classes


def _picture(seed: int, size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def _protos(b: TimmBackbone, layer: int = -1) -> PrototypeSet:
    x = b.preprocess([_picture(s) for s in range(6)])
    E = b.embed(x, layer).numpy()
    return PrototypeSet.from_embeddings(E, ["a", "a", "a", "b", "b", "b"])


# ---- the table ----------------------------------------------------------------------------------
def test_registry_rules() -> None:
    assert {ATTENTION, ROLLOUT, RANDOM, PROTOTYPE_A, PROTOTYPE_B, PROTOTYPE_DIFF} <= set(SALIENCY_METHODS)
    assert set(CAM_METHODS) <= set(SALIENCY_METHODS)  # every CAM lives in the one table
    assert {m.family for m in SALIENCY_METHODS.values()} == {"attention", "cam", "prototype", "control"}
    with pytest.raises(ValueError, match="already registered"):
        register_saliency_method(SaliencyMethod(RANDOM, lambda inp, t: np.zeros((2, 2)), "control", "again"))
    with pytest.raises(ValueError, match="already registered"):
        register_cam_method(CamMethod("EigenCAM", GradCAM, True, "again"))
    with pytest.raises(ValueError, match=r"unknown saliency method 'Nope'; known: .*Attention rollout"):
        get_saliency_method("Nope")


def test_adding_a_method_is_one_registration(vit, monkeypatch) -> None:
    monkeypatch.setitem(SALIENCY_METHODS, "dummy", SaliencyMethod(
        "dummy", lambda inp, t, scale=1.0: np.full(inp.grid, scale, dtype=np.float32), "control", "a test method"))
    inp = SaliencyInput.from_image(vit, _picture(0))
    np.testing.assert_array_equal(compute_saliency("dummy", inp, scale=2.0), np.full(vit.spec.grid(), 2.0))
    assert "dummy" in [m.name for m in available_methods(vit.spec)]
    monkeypatch.setitem(SALIENCY_METHODS, "broken", SaliencyMethod(
        "broken", lambda inp, t: np.full(inp.grid, np.nan), "control", "returns NaN"))
    with pytest.raises(ValueError, match="broken contains NaN"):
        compute_saliency("broken", inp)


@pytest.mark.parametrize("name", list(SALIENCY_METHODS))
def test_every_method_on_a_vit_and_a_cnn(vit, cnn, name: str) -> None:
    """Each registered method gives a finite 2-D map on the patch grid or the input pixels, or says why not."""
    method = get_saliency_method(name)
    for b in (vit, cnn):
        inp = SaliencyInput.from_image(b, _picture(1))
        S, grid = inp.size, inp.grid
        params = {"prototypes": _protos(b)} if method.family == "prototype" else {}
        target = default_target(inp, _protos(b)) if "target" in method.needs else None
        if not b.spec.has_attention and "attention" in method.needs:
            with pytest.raises(UnsupportedOperationError, match="without attention"):
                compute_saliency(name, inp, target, **params)
            assert name not in [m.name for m in available_methods(b.spec)]
            continue
        m = compute_saliency(name, inp, target, **params)
        assert m.shape in (grid, (S, S)) and m.dtype == np.float32 and np.isfinite(m).all()


def test_requirements_are_checked(vit) -> None:
    inp = SaliencyInput.from_image(vit, _picture(2))
    with pytest.raises(ValueError, match="pass a CamTarget"):
        compute_saliency("Grad-CAM", inp)
    with pytest.raises(ValueError, match="needs prototypes"):
        compute_saliency(PROTOTYPE_A, inp)


# ---- each map against its definition --------------------------------------------------------------
def test_attention_and_rollout_maps(vit) -> None:
    inp = SaliencyInput.from_image(vit, _picture(3))
    attn = vit.attention(inp.x)[0].numpy()  # [L, H, T, T]
    L, p, (h, w) = attn.shape[0], vit.spec.num_prefix_tokens, inp.grid
    cls = attn[:, :, 0, p:].reshape(L, -1, h, w)  # [L, H, h, w]
    np.testing.assert_allclose(compute_saliency(ATTENTION, inp), cls[-1].mean(0), atol=1e-6)
    np.testing.assert_allclose(compute_saliency(ATTENTION, inp, block=2, head=1), cls[2, 1], atol=1e-6)
    np.testing.assert_allclose(compute_saliency(ATTENTION, inp, block=0, head="max"), cls[0].max(0), atol=1e-6)
    # one rollout default for every caller: mean of heads, discard 0.9, from the middle block
    assert (DEFAULT_ROLLOUT.head_fusion, DEFAULT_ROLLOUT.discard_ratio, DEFAULT_ROLLOUT.start(L)) == ("mean", 0.9, L // 2)
    R = rollout_formula(attn, "mean", 0.9, L // 2)[0, p:]
    np.testing.assert_allclose(compute_saliency(ROLLOUT, inp).ravel(), (R - R.min()) / (R.max() - R.min()), atol=1e-5)
    R = rollout_formula(attn, "min", 0.0, 1)[0, p:]
    got = compute_saliency(ROLLOUT, inp, params=RolloutParams("min", 0.0, 1))
    np.testing.assert_allclose(got.ravel(), (R - R.min()) / (R.max() - R.min()), atol=1e-5)
    with pytest.raises(ValueError, match="head 9 out of range"):
        compute_saliency(ATTENTION, inp, head=9)


def test_prototype_maps_and_random_control(cnn) -> None:
    protos = _protos(cnn, layer=-1)
    inp = SaliencyInput.from_image(cnn, _picture(4))
    tokens, emb = inp.tokens(-1)  # [h, w, D], [D]
    sims = protos.vectors @ (emb / np.linalg.norm(emb))
    a, b = np.argsort(-sims)[:2]
    unit = tokens / np.linalg.norm(tokens, axis=-1, keepdims=True)
    want_a, want_b = unit @ protos.vectors[a], unit @ protos.vectors[b]  # cosines written out
    got = {k: compute_saliency(k, inp, prototypes=protos) for k in (PROTOTYPE_A, PROTOTYPE_B, PROTOTYPE_DIFF)}
    np.testing.assert_allclose(got[PROTOTYPE_A], want_a, atol=1e-5)
    np.testing.assert_allclose(got[PROTOTYPE_B], want_b, atol=1e-5)
    np.testing.assert_allclose(got[PROTOTYPE_DIFF], want_a - want_b, atol=1e-5)

    r1 = compute_saliency(RANDOM, inp)
    assert r1.shape == inp.grid and 0.0 <= r1.min() and r1.max() < 1.0
    np.testing.assert_array_equal(r1, compute_saliency(RANDOM, SaliencyInput.from_image(cnn, _picture(4))))  # seeded
    assert not np.array_equal(r1, compute_saliency(RANDOM, SaliencyInput.from_image(cnn, _picture(5))))
    np.testing.assert_array_equal(compute_saliency(RANDOM, inp, seed=7),
                                  np.random.default_rng(7).random(inp.grid).astype(np.float32))


def test_default_method_and_target(vit, cnn) -> None:
    assert default_method(vit.spec).name == ROLLOUT and default_method(cnn.spec).name == "Grad-CAM"
    inp = SaliencyInput.from_image(cnn, _picture(6))
    t = default_target(inp)
    logits = cnn.logits(inp.x)[0]
    assert t.kind == "class" and t.class_index == int(logits.argmax())
    vin = SaliencyInput.from_image(vit, _picture(6))
    with pytest.raises(ValueError, match="prototypes"):
        default_target(vin)
    protos = _protos(vit)
    t = default_target(vin, protos)
    emb = vit.embed(vin.x, -1)[0].numpy()
    nearest = protos.classes[int(np.argmax(protos.vectors @ (emb / np.linalg.norm(emb))))]
    assert t.label == f"prototype: {nearest}"
    np.testing.assert_array_equal(t.reference, protos.vectors[protos.index(nearest)])


def test_tokens_to_grid_is_the_vit_reshape() -> None:
    t = torch.arange(2 * (3 + 4 * 5) * 6, dtype=torch.float32).reshape(2, 3 + 4 * 5, 6)  # [N, T, D], 3 prefix
    out = tokens_to_grid((4, 5), 3)(t)
    assert out.shape == (2, 6, 4, 5)
    torch.testing.assert_close(out[1, :, 2, 3], t[1, 3 + 2 * 5 + 3])  # patch (2, 3) in raster order


# ---- ROAD against pytorch-grad-cam ------------------------------------------------------------------
def test_noisy_linear_imputation_equals_pytorch_grad_cam() -> None:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.normal(size=(3, 20, 24)).astype(np.float32))
    keep = rng.random((20, 24)) > 0.6
    keep[0, :] = False  # removed pixels on the border too
    want = NoisyLinearImputer(noise=0.0)(img, torch.from_numpy(keep.astype(np.float32)))
    got = noisy_linear_impute(img, keep, noise=0.0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[:, keep], img[:, keep])  # kept pixels untouched
    # each imputed interior pixel is the weighted mean of its 8 neighbours (the system, written out)
    i, j = next((r, c) for r in range(1, 19) for c in range(1, 23) if not keep[r, c])
    w = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]]) / 12.0
    np.testing.assert_allclose(got[:, i, j].numpy(), (got[:, i - 1:i + 2, j - 1:j + 2].numpy() * w).sum((1, 2)), atol=1e-4)


def test_imputation_orders_the_unknowns_by_the_whole_grid_dissection() -> None:
    rank = _grid_rank(20, 24)  # [480] a permutation: every pixel has one place in the elimination order
    assert np.array_equal(np.sort(rank), np.arange(480)) and not rank.flags.writeable
    # the grid's first separator, a whole middle column (the longer side is the width), is eliminated last
    last = np.argsort(rank)[-20:]
    assert len(set(last % 24)) == 1 and set(last % 24) <= {11, 12} and sorted(last // 24) == list(range(20))
    # the order changes the float rounding only: the same values as one sparse solve in the natural order
    rng = np.random.default_rng(2)
    img = rng.normal(size=(3, 20 * 24)).astype(np.float32)
    keep = gaussian_filter(rng.random((20, 24)), 2) < 0.5
    missing = np.flatnonzero(~keep.reshape(-1))
    ref = np.stack([_natural_solve(img[c].astype(np.float64), keep) for c in range(3)], axis=1)  # [n, C]
    np.testing.assert_allclose(_direct_impute(img, keep.reshape(-1), 20, 24), ref, atol=1e-10)
    assert ref.shape == (missing.size, 3)


def _natural_solve(v: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The imputation system written out pixel by pixel and solved by scipy's spsolve, natural order."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    H, W = keep.shape
    missing = np.flatnonzero(~keep.reshape(-1))
    var = {int(p): i for i, p in enumerate(missing)}
    A, b = lil_matrix((missing.size, missing.size)), np.zeros(missing.size)
    for i, p in enumerate(missing):
        r, c = divmod(int(p), W)
        for (dr, dc), w in _NEIGHBOURS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W:
                A[i, i] += w
                q = rr * W + cc
                if q in var:
                    A[i, var[q]] -= w
                else:
                    b[i] += w * v[q]
    return spsolve(A.tocsc(), b)


def test_road_equals_pytorch_grad_cam_road_combined(cnn) -> None:
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    inp = SaliencyInput.from_image(cnn, _picture(8), 64)
    target = default_target(inp)
    cam = compute_saliency("Grad-CAM", inp, target)  # [S, S] in [0, 1]
    percentiles = [20, 50, 80]
    torch.manual_seed(3)
    want = ROADCombined(percentiles=percentiles)(inp.x, cam[None], [ClassifierOutputSoftmaxTarget(target.class_index)],
                                                 cnn.model)
    torch.manual_seed(3)  # the same noise, drawn in the same order
    got = road(tensor_scorer(cnn, target), inp.x, cam, percentiles)
    assert got["road"] == pytest.approx(float(want[0]), abs=1e-5)
    assert got["road"] == pytest.approx((got["lerf"] - got["morf"]) / 2)
    seeded = road_score(cnn, inp.x, cam, target, percentiles, seed=1)
    assert seeded["road"] == road_score(cnn, inp.x, cam, target, percentiles, seed=1)["road"]
    with pytest.raises(ValueError, match="match the input"):
        road(tensor_scorer(cnn, target), inp.x, cam[:10], percentiles)


def test_class_target_scores_are_probabilities(cnn) -> None:
    x = cnn.preprocess([_picture(9)])
    t = CamTarget.imagenet_class(cnn, 5)
    np.testing.assert_allclose(tensor_scorer(cnn, t)(x), cnn.logits(x).softmax(-1)[:, 5].numpy(), rtol=1e-5)
