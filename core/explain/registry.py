"""The one table of saliency methods (pytorch-grad-cam's template idea applied to every kind of map).

A method is a small function registered under a name: it takes a :class:`~core.explain.inputs.SaliencyInput`
(backbone + input ``x [1, 3, S, S]``), a target (what the map explains, or None for methods that explain
no model output) and keyword parameters, and returns a 2-D float map: ``[h, w]`` on the patch grid or
``[S, S]`` on the input pixels. The Saliency page, the faithfulness scores, the Compare page and the
report card all read this table. Adding a method is one :func:`register_saliency_method` call (or the
:func:`saliency_method` decorator) plus its test; the registrations live in :mod:`core.explain.methods`
and :mod:`core.explain.cam`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from core.errors import UnsupportedOperationError
from core.explain.inputs import SaliencyInput
from core.explain.maps import as_map
from core.explain.targets import CamTarget
from core.models.spec import BackboneSpec

Family = Literal["attention", "cam", "prototype", "control"]
Needs = Literal["attention", "target", "prototypes"]


# fn(inp: SaliencyInput, target: CamTarget | None, **params) -> [h, w] or [S, S] map
SaliencyFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class SaliencyMethod:
    """One registered saliency method.

    Attributes:
        name: the registry key, also the display name.
        fn: ``fn(inp, target, **params) -> [h, w] or [S, S]`` map.
        family: ``"attention"``, ``"cam"`` (Grad-CAM family), ``"prototype"`` or ``"control"``.
        summary: one line for the UI.
        needs: what the method requires: ``"attention"`` (a ViT), ``"target"`` (a :class:`CamTarget`),
            ``"prototypes"`` (a ``prototypes=`` :class:`~core.explain.prototype_maps.PrototypeSet` parameter).
        explains: for methods without a target, what the map is about (for captions).
        options: extra attributes of a family (e.g. the pytorch-grad-cam class of a CAM).
    """

    name: str
    fn: SaliencyFn
    family: Family
    summary: str
    needs: frozenset[Needs] = frozenset()
    explains: str = ""
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def unsupported_reason(self, spec: BackboneSpec) -> str | None:
        """Why this method cannot run on a backbone, or None when it can."""
        if "attention" in self.needs and not spec.has_attention:
            return f"{self.name} needs attention maps and {spec.name} is a {spec.family.upper()} without attention"
        return None

    def __call__(self, inp: SaliencyInput, target: CamTarget | None = None, **params: Any) -> np.ndarray:
        reason = self.unsupported_reason(inp.backbone.spec)
        if reason:
            raise UnsupportedOperationError(reason + "; pick a method from available_methods(spec)")
        if "target" in self.needs and target is None:
            raise ValueError(f"{self.name} explains a model output: pass a CamTarget "
                             "(core.explain.targets.default_target builds the usual one)")
        if "prototypes" in self.needs and params.get("prototypes") is None:
            raise ValueError(f"{self.name} needs prototypes=PrototypeSet.from_embeddings(...) of the same block")
        return as_map(self.fn(inp, target, **params), self.name)


SALIENCY_METHODS: dict[str, SaliencyMethod] = {}


def register_saliency_method(method: SaliencyMethod) -> SaliencyMethod:
    """Add a method to :data:`SALIENCY_METHODS` (a duplicate name raises)."""
    if method.name in SALIENCY_METHODS:
        raise ValueError(f"saliency method {method.name!r} is already registered")
    SALIENCY_METHODS[method.name] = method
    return method


def saliency_method(name: str, family: Family, summary: str, *, needs: tuple[Needs, ...] = (),
                    explains: str = "") -> Callable[[SaliencyFn], SaliencyFn]:
    """Decorator form of :func:`register_saliency_method` for a plain function."""
    def wrap(fn: SaliencyFn) -> SaliencyFn:
        register_saliency_method(SaliencyMethod(name, fn, family, summary, frozenset(needs), explains))
        return fn

    return wrap


def get_saliency_method(name: str) -> SaliencyMethod:
    """The registered method called ``name`` (unknown names raise with the known ones)."""
    try:
        return SALIENCY_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown saliency method {name!r}; known: {', '.join(SALIENCY_METHODS)}") from None
