"""Registry plus factory (cf. timm's ``register_model`` / ``create_model``).

Built-in offline backbones are registered by name. Two name patterns reach any other model:
``timm/<model>[@<checkpoint file>]`` and ``open_clip/<arch>/<pretrained tag>`` or
``open_clip/<arch>@<checkpoint file>``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import UnknownBackboneError
from core.models.base import Backbone


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    factory: Callable[..., Backbone]
    summary: str
    offline: bool
    is_available: Callable[[], bool]


_REGISTRY: dict[str, RegistryEntry] = {}

ONLINE_PATTERNS = (
    "timm/<model name>            e.g. timm/vit_base_patch16_224.augreg_in21k (downloads from the HF hub)",
    "timm/<model name>@<file>     a local timm checkpoint (.safetensors / .pth)",
    "open_clip/<arch>/<tag>       e.g. open_clip/ViT-B-32/laion2b_s34b_b79k (downloads)",
    "open_clip/<arch>@<file>      a local open_clip checkpoint",
)


def register_backbone(name: str, *, summary: str, offline: bool, is_available: Callable[[], bool] = lambda: True):
    """Decorator registering ``factory(**kwargs) -> Backbone`` under ``name``."""

    def deco(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = RegistryEntry(name, factory, summary, offline, is_available)
        return factory

    return deco


def list_backbones() -> list[RegistryEntry]:
    _ensure_builtins()
    return list(_REGISTRY.values())


def create_backbone(name: str, **kwargs) -> Backbone:
    """Build a backbone by registry name or online pattern.

    Raises:
        UnknownBackboneError: the name is neither registered nor an online pattern.
        WeightsUnavailableError: the weights cannot be had (offline, missing package or file).
    """
    check_backbone_name(name)
    if name in _REGISTRY:
        return _REGISTRY[name].factory(**kwargs)
    if name.startswith("timm/"):
        from core.models.online import create_timm
        return create_timm(name, **kwargs)
    if name.startswith("open_clip/"):
        from core.models.online import create_open_clip
        return create_open_clip(name, **kwargs)
    raise AssertionError("unreachable: check_backbone_name accepted the name")


def check_backbone_name(name: str) -> None:
    """Raise :class:`UnknownBackboneError` (listing the known names) unless ``name`` is registered or
    an online pattern; builds nothing, reads nothing."""
    _ensure_builtins()
    if name in _REGISTRY or name.startswith(("timm/", "open_clip/")):
        return
    known = ", ".join(sorted(_REGISTRY))
    raise UnknownBackboneError(
        f"Unknown backbone {name!r}. Known backbones: {known}. Other models:\n  " + "\n  ".join(ONLINE_PATTERNS)
    )


def _ensure_builtins() -> None:
    import core.models.offline  # noqa: F401  (registers the built-in backbones on import)
