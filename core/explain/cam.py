"""The Grad-CAM family through the maintained ``pytorch-grad-cam`` package, registered as saliency methods.

A CAM is a :class:`CamMethod` naming its ``BaseCAM`` subclass (grad-cam's own template method);
:func:`register_cam_method` puts it in the one saliency table (:mod:`core.explain.registry`). The target
layers and the ViT token reshape come from the backbone (:meth:`Backbone.cam_target_layers`,
:meth:`Backbone.cam_reshape_transform`). The backbone's shared model is not changed: gradients flow
because the *input* requires grad (parameters stay frozen), hooks are always released, and the call runs
under ``Backbone.lock`` since the app serves sessions from threads.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from threadpoolctl import threadpool_limits

from core.explain.inputs import SaliencyInput
from core.explain.registry import (
    SALIENCY_METHODS,
    SaliencyMethod,
    register_saliency_method,
)
from core.explain.targets import CamTarget, model_output
from core.models.base import Backbone


@dataclass(frozen=True)
class CamMethod:
    """One member of the Grad-CAM family.

    Attributes:
        name: display name (the saliency registry key).
        cam_class: the ``pytorch_grad_cam`` ``BaseCAM`` subclass that computes it.
        uses_gradients: False for gradient-free methods (EigenCAM explains the activations only, so
            its map does not depend on the target).
        summary: one line for the UI.
    """

    name: str
    cam_class: type[BaseCAM]
    uses_gradients: bool
    summary: str


class _CamView(Mapping[str, CamMethod]):
    """The CAM members of the saliency registry, by name (a live, read-only view)."""

    def _items(self) -> dict[str, CamMethod]:
        return {n: m.options["cam"] for n, m in SALIENCY_METHODS.items() if m.family == "cam"}

    def __getitem__(self, name: str) -> CamMethod:
        return self._items()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


CAM_METHODS: Mapping[str, CamMethod] = _CamView()


def register_cam_method(method: CamMethod) -> CamMethod:
    """Register a CAM as a saliency method (a duplicate name raises)."""
    def fn(inp: SaliencyInput, target: CamTarget | None, **params: Any) -> np.ndarray:
        if target is None:
            raise ValueError(f"{method.name} explains a model output: pass a CamTarget")
        return compute_cam(inp.backbone, inp.x, method.name, target)

    register_saliency_method(SaliencyMethod(method.name, fn, "cam", method.summary, frozenset({"target"}),
                                            options={"cam": method}))
    return method


for _m in (
    CamMethod("Grad-CAM", GradCAM, True, "channel weights = spatial mean of the gradients (Selvaraju et al. 2017)"),
    CamMethod("Grad-CAM++", GradCAMPlusPlus, True, "second-order weights, better for several instances (Chattopadhay et al. 2018)"),
    CamMethod("XGrad-CAM", XGradCAM, True, "gradients normalised by activations (Fu et al. 2020)"),
    CamMethod("HiResCAM", HiResCAM, True, "element-wise gradient x activation, faithful to the model (Draelos & Carin 2020)"),
    CamMethod("LayerCAM", LayerCAM, True, "positive gradients x activations, per position (Jiang et al. 2021)"),
    CamMethod("EigenCAM", EigenCAM, False, "first principal component of the activations, no gradients (Muhammad & Yeasin 2020)"),
    CamMethod("EigenGrad-CAM", EigenGradCAM, True, "first principal component of gradient x activation"),
):
    register_cam_method(_m)
del _m


def get_cam_method(name: str) -> CamMethod:
    """The registered CAM called ``name`` (unknown names raise with the known ones)."""
    try:
        return CAM_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown CAM method {name!r}; known: {', '.join(CAM_METHODS)}") from None


def compute_cam(b: Backbone, x: torch.Tensor, method: str, target: CamTarget) -> np.ndarray:
    """A Grad-CAM-family map computed by pytorch-grad-cam.

    Args:
        b: the backbone (its shared model is not changed; hooks are released).
        x: ``[1, 3, S, S]`` from :meth:`Backbone.preprocess`.
        method: a name in :data:`CAM_METHODS`.
        target: what to explain.

    Returns:
        ``[S, S]`` map in ``[0, 1]`` (pytorch-grad-cam's ReLU, min-max scaling and resize to the input).
    """
    return compute_cams(b, x, [method], target)[method]


def compute_cams(b: Backbone, x: torch.Tensor, methods: Sequence[str], target: CamTarget) -> dict[str, np.ndarray]:
    """Several Grad-CAM-family maps of one image from ONE forward (and one backward) pass.

    Every member reads the same activations and gradients of the same target layers for the same target;
    only its weighting differs (grad-cam's ``get_cam_weights`` / ``get_cam_image``). One member drives the
    pass (grad-cam's own ``BaseCAM.forward``), the others compute their maps from its recorded activations
    and gradients with grad-cam's own ``compute_cam_per_layer`` and ``aggregate_multi_layers``: the same
    numbers as one :func:`compute_cam` call each, for the price of one.

    Args:
        b: the backbone (its shared model is not changed; hooks are released).
        x: ``[1, 3, S, S]`` from :meth:`Backbone.preprocess` (on any device; moved to the model's).
        methods: names in :data:`CAM_METHODS`.
        target: what to explain.

    Returns:
        ``{method: [S, S] map in [0, 1]}``.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, 3, S, S], got shape {tuple(x.shape)}")
    if not methods:
        return {}
    size = b.spec.check_size(int(x.shape[-1]))
    members = {m: get_cam_method(m) for m in methods}
    # the driver records activations (and gradients, when any member needs them) in one pass
    driver = next((m for m in members.values() if m.uses_gradients), next(iter(members.values())))
    module = model_output(b, target)
    targets = [target.gradcam_target()]
    out: dict[str, np.ndarray] = {}
    # numpy's BLAS single-threaded for grad-cam's own maths (EigenCAM's SVD): on 2 shared cores a 2-thread
    # SVD of a [256, 384] matrix took 0.8-6.7 s instead of 0.02 s; torch's threads are not affected
    with b.lock, threadpool_limits(limits=1, user_api="blas"):
        cams = {}
        try:
            cams[driver.name] = driver.cam_class(model=module, target_layers=b.cam_target_layers(),
                                                 reshape_transform=b.cam_reshape_transform(size))
            inp = x.detach().clone().requires_grad_(True)  # grads reach the activations; params stay frozen
            with torch.enable_grad() if driver.uses_gradients else torch.no_grad():
                first = cams[driver.name](input_tensor=inp, targets=targets)  # [1, S, S]
            out[driver.name] = np.asarray(first[0], dtype=np.float32)
            recorded = cams[driver.name].activations_and_grads
            for name, m in members.items():
                if name in out:
                    continue
                cam = cams[name] = m.cam_class(model=module, target_layers=b.cam_target_layers(),
                                               reshape_transform=b.cam_reshape_transform(size))
                cam.activations_and_grads.release()  # its own hooks are never used: it reads the driver's record
                cam.activations_and_grads = recorded
                maps = cam.aggregate_multi_layers(cam.compute_cam_per_layer(inp, targets, False))  # [1, S, S]
                out[name] = np.asarray(maps[0], dtype=np.float32)
        finally:
            for cam in cams.values():
                cam.activations_and_grads.release()
    return {m: out[m] for m in methods}


def cam_layer_names(b: Backbone) -> list[str]:
    """Module paths of the Grad-CAM target layers, e.g. ``["blocks.11.norm1"]`` (for captions)."""
    names = {id(m): n for n, m in b.model.named_modules()}
    return [f"{names.get(id(m), '?')} ({type(m).__name__})" for m in b.cam_target_layers()]
