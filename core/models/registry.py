"""Registry plus factory (cf. timm's ``register_model`` / ``create_model``).

Built-in offline backbones are registered by name. Two name patterns reach any other model:
``timm/<model>[@<checkpoint file>]`` and ``open_clip/<arch>/<pretrained tag>`` or
``open_clip/<arch>@<checkpoint file>`` (the grammar: :mod:`core.io.names`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.io.names import BackboneName
from core.models.base import Backbone


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    factory: Callable[..., Backbone]
    summary: str
    offline: bool
    is_available: Callable[[], bool]


_REGISTRY: dict[str, RegistryEntry] = {}


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
    parsed = check_backbone_name(name)
    if parsed.source == "builtin":
        return _REGISTRY[name].factory(**kwargs)
    if parsed.source == "timm":
        from core.models.online import create_timm
        return create_timm(parsed, **kwargs)
    from core.models.online import create_open_clip
    return create_open_clip(parsed, **kwargs)


def check_backbone_name(name: str) -> BackboneName:
    """``name`` parsed against the registered names; builds nothing, reads nothing.

    Raises:
        UnknownBackboneError: neither registered nor a name of the grammar (the message lists the
            registered names and the patterns).
    """
    _ensure_builtins()
    return BackboneName.parse(name, _REGISTRY.keys())


def _ensure_builtins() -> None:
    import core.models.offline  # noqa: F401  (registers the built-in backbones on import)
