"""The saliency methods: attention, rollout, prototype maps and the random control are registered here,
the Grad-CAM family in :mod:`core.explain.cam`; importing this module fills the whole table.

Call a method with :func:`compute_saliency` (``name, inp, target, **params``), several at once with
:func:`compute_maps` (the Grad-CAM family then shares one forward and backward pass); list those a backbone
supports with :func:`available_methods`; :func:`default_method` is the one map the Compare page shows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import UnsupportedOperationError
from core.explain.attention import DEFAULT_ROLLOUT, HeadFusion, RolloutParams
from core.explain.cam import compute_cams  # importing it registers the Grad-CAM family
from core.explain.inputs import SaliencyInput
from core.explain.maps import as_map
from core.explain.prototype_maps import PrototypeSet, explain_by_prototypes
from core.explain.registry import (
    SALIENCY_METHODS,
    SaliencyMethod,
    get_saliency_method,
    saliency_method,
)
from core.explain.targets import CamTarget
from core.models.spec import BackboneSpec

ATTENTION = "Attention"
ROLLOUT = "Attention rollout"
RANDOM = "Random map (baseline)"
PROTOTYPE_A, PROTOTYPE_B, PROTOTYPE_DIFF = "Prototype map A", "Prototype map B", "Prototype map A-B"


# ---- attention -------------------------------------------------------------------------------------
@saliency_method(ATTENTION, "attention", "CLS-to-patch attention of one block, one head or the heads fused",
                 needs=("attention",), explains="CLS token")
def _attention(inp: SaliencyInput, target: CamTarget | None, *, block: int = -1,
               head: int | HeadFusion = "mean") -> np.ndarray:
    return inp.attention().head_map(block, head)  # [h, w]


@saliency_method(ROLLOUT, "attention", "attention of the CLS token multiplied through the blocks "
                 "(Abnar & Zuidema 2020)", needs=("attention",), explains="CLS token")
def _rollout(inp: SaliencyInput, target: CamTarget | None, *, params: RolloutParams = DEFAULT_ROLLOUT) -> np.ndarray:
    return inp.attention().rollout_with(params)  # [h, w] in [0, 1]


# ---- prototype maps: A (nearest class), B (runner-up), A - B ---------------------------------------
def _prototype_map(key: str):
    def fn(inp: SaliencyInput, target: CamTarget | None, *, prototypes: PrototypeSet, layer: int = -1) -> np.ndarray:
        tokens, emb = inp.tokens(layer)  # [h, w, D], [D]
        return explain_by_prototypes(tokens, emb, prototypes).maps[key]  # [h, w]
    return fn


for _name, _key, _summary in (
    (PROTOTYPE_A, "a", "cosine of each patch token to the nearest class prototype"),
    (PROTOTYPE_B, "b", "cosine of each patch token to the runner-up class prototype"),
    (PROTOTYPE_DIFF, "diff", "A - B: the parts that pull the picture towards its class rather than the runner-up"),
):
    saliency_method(_name, "prototype", _summary, needs=("prototypes",), explains="nearest prototype")(_prototype_map(_key))
del _name, _key, _summary


# ---- control ---------------------------------------------------------------------------------------
@saliency_method(RANDOM, "control", "uniform noise on the patch grid, seeded by the picture: the floor every "
                 "score is compared with", explains="nothing (control)")
def _random(inp: SaliencyInput, target: CamTarget | None, *, seed: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(inp.seed if seed is None else seed)
    return rng.random(inp.grid).astype(np.float32)  # [h, w]


# ---- the table as callers use it ---------------------------------------------------------------------
def compute_saliency(name: str, inp: SaliencyInput, target: CamTarget | None = None, **params: Any) -> np.ndarray:
    """The map of method ``name`` (see :class:`core.explain.registry.SaliencyMethod`)."""
    return get_saliency_method(name)(inp, target, **params)


def compute_maps(names: Sequence[str], inp: SaliencyInput, target: CamTarget | None = None,
                 params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, np.ndarray]:
    """The maps of several methods on one image, sharing what they can: the Grad-CAM family from one
    forward and backward pass (:func:`core.explain.cam.compute_cams`), attention, rollout and prototype
    maps from the input's memoised forwards. The same maps as one :func:`compute_saliency` call each.

    Args:
        names: registry names.
        inp: the image.
        target: what the target-needing methods explain.
        params: per-method keyword parameters, e.g. ``{"Prototype map A": {"prototypes": ...}}``.
    """
    per = params or {}
    cams = [n for n in names if get_saliency_method(n).family == "cam"]  # their fn takes no parameters
    out: dict[str, np.ndarray] = {}
    if cams:
        for n in cams:  # the registry's checks (unsupported backbone, missing target), before the shared pass
            m = get_saliency_method(n)
            reason = m.unsupported_reason(inp.backbone.spec)
            if reason:
                raise UnsupportedOperationError(reason + "; pick a method from available_methods(spec)")
        if target is None:
            raise ValueError(f"{cams[0]} explains a model output: pass a CamTarget "
                             "(core.explain.targets.default_target builds the usual one)")
        out.update({n: as_map(m, n) for n, m in compute_cams(inp.backbone, inp.x, cams, target).items()})
    for n in names:
        if n not in out:
            out[n] = get_saliency_method(n)(inp, target, **per.get(n, {}))
    return {n: out[n] for n in names}


def available_methods(spec: BackboneSpec) -> list[SaliencyMethod]:
    """The registered methods that run on this backbone, in registration order."""
    return [m for m in SALIENCY_METHODS.values() if m.unsupported_reason(spec) is None]


def default_method(spec: BackboneSpec) -> SaliencyMethod:
    """Attention rollout for backbones with attention, else Grad-CAM."""
    return get_saliency_method(ROLLOUT if spec.has_attention else "Grad-CAM")
