"""Backbones whose weights come from a hub (timm / open_clip names) or a local checkpoint file.

Here (no network) a hub name fails fast with a message that says how to make it work: the hub
is probed with a short TCP connect before any download starts, so nothing hangs, and there is
never a fallback to random weights. ``open_clip/<arch>/random`` builds an explicitly random
model (testing code paths only; its spec says so).
"""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import torch

from core.errors import UnknownBackboneError, WeightsUnavailableError
from core.io.hashing import file_sha256
from core.io.names import BackboneName
from core.io.paths import cache_dir
from core.models.builtin import BUILTIN_BACKBONES
from core.models.spec import BackboneSpec

HUB_HOST = ("huggingface.co", 443)
PROBE_TIMEOUT_S = 3.0


def _hub_offline_env() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("HF_HUB_OFFLINE", "BACKBONE_LENS_OFFLINE"))


def ensure_hub_reachable(what: str) -> None:
    """Raise WeightsUnavailableError at once when the model hub cannot be reached."""
    hint = (f"Downloading {what} needs a network connection to {HUB_HOST[0]}. To use it offline, download "
            "the checkpoint on a machine with a network and pass it as a file: "
            "'timm/<model>@/path/to/model.safetensors' or 'open_clip/<arch>@/path/to/open_clip_model.safetensors'. "
            f"The built-in offline backbones ({', '.join(b.name for b in BUILTIN_BACKBONES)}) need no network.")
    if _hub_offline_env():
        raise WeightsUnavailableError(f"Offline mode is set (HF_HUB_OFFLINE / BACKBONE_LENS_OFFLINE). {hint}")
    try:
        socket.create_connection(HUB_HOST, timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise WeightsUnavailableError(f"Cannot reach {HUB_HOST[0]} ({e.__class__.__name__}: {e}). {hint}") from e


def _checkpoint(parsed: BackboneName) -> Path | None:
    """The name's local checkpoint file, if it names one (WeightsUnavailableError when it is missing)."""
    if parsed.file is None:
        return None
    path = Path(parsed.file).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"Checkpoint file not found: {path}")
    return path


def _state_sha256(model: torch.nn.Module) -> str:
    """sha256 over the loaded tensors: the weights' identity when no local file is known."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def create_timm(name: str | BackboneName, input_size: int | None = None):
    """``timm/<model>`` (hub weights) or ``timm/<model>@<file>`` (local checkpoint)."""
    import timm

    from core.models.timm_backbone import TimmBackbone, timm_spec_fields

    parsed = _parse(name, "timm")
    arch, path = parsed.arch, _checkpoint(parsed)
    base = arch.split(".")[0]
    if not timm.is_model(base):
        raise UnknownBackboneError(f"timm has no model {base!r} (see timm.list_models()).")
    if path is None:
        if not timm.list_pretrained(arch if "." in arch else f"{arch}.*") and not timm.list_pretrained(arch):
            raise WeightsUnavailableError(f"timm has no pretrained weights for {arch!r} (see timm.list_pretrained()).")
        ensure_hub_reachable(f"timm weights {arch!r}")
        try:
            model = _create_timm(timm, arch, pretrained=True)
        except (OSError, RuntimeError, ValueError) as e:
            raise WeightsUnavailableError(f"Could not load pretrained timm weights for {arch!r}: {e}") from e
        sha, weights = _state_sha256(model), f"hub:{arch}"
    else:
        model = _create_timm(timm, arch, pretrained=False, checkpoint_path=str(path))  # timm loads strictly
        sha, weights = file_sha256(path, cache_dir() / "hashes"), str(path)
    fields = timm_spec_fields(model, input_size=input_size)
    info = timm.data.ImageNetInfo() if getattr(model, "num_classes", 0) == 1000 else None
    names = [info.index_to_description(i) for i in range(1000)] if info else None
    spec = BackboneSpec(name=str(parsed), source="local" if path else "timm", architecture=arch, weights_name=weights,
                        weights_sha256=sha, description=f"timm model {arch}", **fields)
    return TimmBackbone(model, spec, names)


def _parse(name: str | BackboneName, source: str) -> BackboneName:
    parsed = name if isinstance(name, BackboneName) else BackboneName.parse(name)
    if parsed.source != source:
        raise UnknownBackboneError(f"{name!r} is not a {source}/... name")
    return parsed


def _create_timm(timm, arch: str, **kwargs):
    """ViTs are built with ``dynamic_img_size`` so any multiple of the patch size works;
    model classes without that argument (CNNs) reject it with a TypeError and are built plainly."""
    try:
        return timm.create_model(arch, dynamic_img_size=True, **kwargs)
    except TypeError:
        return timm.create_model(arch, **kwargs)


def create_open_clip(name: str | BackboneName):
    """``open_clip/<arch>/<tag>`` (hub), ``open_clip/<arch>@<file>`` or ``open_clip/<arch>/random``."""
    import open_clip

    from core.models.clip_backbone import ClipBackbone

    parsed = _parse(name, "open_clip")
    arch, tag, path = parsed.arch, parsed.tag, _checkpoint(parsed)
    if arch not in open_clip.list_models():
        raise UnknownBackboneError(f"open_clip has no architecture {arch!r} (see open_clip.list_models()).")
    if path is not None:
        model = open_clip.create_model(arch, pretrained=str(path))
        sha, weights = file_sha256(path, cache_dir() / "hashes"), str(path)
    elif parsed.is_random:
        torch.manual_seed(0)  # an explicit, reproducible random init for testing code paths
        model = open_clip.create_model(arch, pretrained=None)
        sha, weights = _state_sha256(model), "random-init (NOT pretrained: for testing code paths only)"
    else:
        if tag not in open_clip.list_pretrained_tags_by_model(arch):
            raise WeightsUnavailableError(
                f"open_clip has no pretrained tag {tag!r} for {arch}; "
                f"known: {open_clip.list_pretrained_tags_by_model(arch)}")
        ensure_hub_reachable(f"open_clip weights {arch}/{tag}")
        try:
            model = open_clip.create_model(arch, pretrained=tag)
        except (OSError, RuntimeError, ValueError) as e:
            raise WeightsUnavailableError(f"Could not load open_clip weights {arch}/{tag}: {e}") from e
        sha, weights = _state_sha256(model), f"hub:{arch}/{tag}"
    return ClipBackbone(model, open_clip.get_tokenizer(arch), name=str(parsed), arch=arch, weights_name=weights,
                        weights_sha256=sha, source="local" if path else "open_clip")
