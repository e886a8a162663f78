"""Sanity checks for saliency maps: the model-parameter randomisation test (Adebayo et al. 2018), cascading.

A map that explains the model must change when the model's weights are replaced by random ones. The
cascade re-initialises the model from the top, one unit at a time (the head, then the last block, ...,
then the stem), on a *deep copy* of the backbone (the cached, shared backbone is never touched), and
compares each method's map on the randomised copy with its map on the trained model by Spearman rank
correlation and SSIM. A trustworthy method's similarity drops with depth; a map that ignores the model
(the random control, by construction) keeps a correlation of 1.

Re-initialisation is PyTorch's own default initialisation (``reset_parameters()`` of every Linear,
Conv, Norm, ... submodule, as Quantus and Captum do), drawn from a seeded generator. LayerScale gains
keep their trained values: timm resets them to ``init_values`` (1e-5 for DINOv2), which would switch the
block off rather than randomise it.
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import uniform_filter
from scipy.stats import rankdata

from core.errors import UnsupportedOperationError
from core.explain.inputs import SaliencyInput
from core.explain.maps import as_map, normalize01, upsample
from core.explain.methods import compute_maps
from core.explain.targets import CamTarget
from core.models.base import Backbone


# ---- similarity of two maps -------------------------------------------------------------------------
def _same_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_map(a, "map a"), as_map(b, "map b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape {a.shape} vs {b.shape}; upsample one (core.explain.maps.upsample)")
    return a, b


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of one shape: Pearson correlation of their ranks (ties get
    the average rank). NaN when either map is constant (its ranks carry no order)."""
    a, b = _same_shape(a, b)
    ra = rankdata(a.ravel(), method="average")  # [n]
    rb = rankdata(b.ravel(), method="average")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def ssim(a: np.ndarray, b: np.ndarray, win_size: int = 7) -> float:
    """Structural similarity (Wang et al. 2004) of two maps, each min-max scaled to ``[0, 1]`` first.

    The mean SSIM over every full ``win_size x win_size`` window (uniform weights, sample covariances,
    K1 = 0.01, K2 = 0.03, data range 1): scikit-image's ``structural_similarity`` defaults. The window
    shrinks to the largest odd size the map allows (a 7x7 CNN grid keeps 7).
    """
    a, b = _same_shape(a, b)
    x, y = normalize01(a).astype(np.float64), normalize01(b).astype(np.float64)
    w = min(win_size, *x.shape)
    w = w if w % 2 == 1 else w - 1
    if w < 3:
        raise ValueError(f"SSIM needs maps of at least 3x3, got {x.shape}")
    n = w * w
    cov = n / (n - 1)  # sample covariance
    mx, my = uniform_filter(x, w), uniform_filter(y, w)
    vx = cov * (uniform_filter(x * x, w) - mx * mx)
    vy = cov * (uniform_filter(y * y, w) - my * my)
    vxy = cov * (uniform_filter(x * y, w) - mx * my)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))  # [H, W]
    p = (w - 1) // 2
    return float(s[p:s.shape[0] - p, p:s.shape[1] - p].mean())  # windows that lie inside the map


# ---- randomising a copy of the model ------------------------------------------------------------------
def copy_backbone(b: Backbone) -> Backbone:
    """A deep copy of a backbone (model included) with its own lock; the original is left as it was."""
    with b.lock:
        return copy.deepcopy(b, {id(b.lock): threading.RLock()})


@dataclass(frozen=True)
class CascadeUnit:
    """A part of the model re-initialised in one cascade step.

    Attributes:
        name: e.g. ``"head"``, ``"blocks.11"``, ``"stem"``.
        modules: module paths inside ``backbone.model``.
    """

    name: str
    modules: tuple[str, ...]


def cascade_units(b: Backbone) -> list[CascadeUnit]:
    """The units of a timm-style model (``model.blocks``) from the top: the modules after the blocks
    (head, final norm), each block from the last to the first, the modules before them (stem).

    Raises:
        UnsupportedOperationError: the model has no ``blocks`` sequence (e.g. open_clip towers).
    """
    model = b.model
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (torch.nn.Sequential, torch.nn.ModuleList)):
        raise UnsupportedOperationError(f"{b.spec.name}: cascading randomisation needs a timm model with a "
                                        "'blocks' sequence; pick a timm ViT or CNN")
    names = [n for n, _ in model.named_children()]
    at = names.index("blocks")

    def with_params(ns: Sequence[str]) -> tuple[str, ...]:
        return tuple(n for n in ns if any(True for _ in model.get_submodule(n).parameters()))

    units = []
    head = with_params(names[at + 1:])
    if head:
        units.append(CascadeUnit("head", head))
    units += [CascadeUnit(f"blocks.{i}", (f"blocks.{i}",)) for i in reversed(range(len(blocks)))]
    stem = with_params(names[:at])
    if stem:
        units.append(CascadeUnit("stem", stem))
    return units


def _is_layer_scale(m: torch.nn.Module) -> bool:
    return type(m).__name__.startswith("LayerScale")


def reinitialise(model: torch.nn.Module, unit: CascadeUnit, seed: int) -> None:
    """Re-initialise every parameterised submodule of ``unit`` in place (``reset_parameters``, seeded).

    Only ever called on a copy (:func:`copy_backbone`); the model stays in eval mode, frozen. The new
    values are drawn on the CPU (parts on a GPU are moved there and back), so a seed gives the same
    randomised model on every device.
    """
    parts = [model.get_submodule(path) for path in unit.modules]
    devices = [next((p.device for p in part.parameters()), torch.device("cpu")) for part in parts]
    for part in parts:
        part.to("cpu")
    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []  # manual_seed seeds them too
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        for part in parts:
            for m in part.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset) and not _is_layer_scale(m):
                    reset()
    for part, device in zip(parts, devices):
        part.to(device)
    model.eval().requires_grad_(False)


def cascade(b: Backbone, seed: int = 0, units: Sequence[CascadeUnit] | None = None) -> Iterator[tuple[str, Backbone]]:
    """``(unit name, randomised copy)`` after each cumulative step of the cascade, top first.

    One deep copy is made and randomised further at each step: use each yielded backbone before asking
    for the next. The backbone passed in is never changed.
    """
    rand = copy_backbone(b)
    for k, unit in enumerate(units if units is not None else cascade_units(b)):
        with rand.lock:
            reinitialise(rand.model, unit, seed + k)
        yield unit.name, rand


# ---- the test ---------------------------------------------------------------------------------------
def _comparable(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return m if m.shape == shape else upsample(m, shape)


@dataclass(frozen=True)
class MprtCurve:
    """Similarity of one method's map on the trained model to its map after each cascade step.

    Attributes:
        method: registry name.
        depths: ``["original", "head", "blocks.11", ...]`` (``original`` compares the map with itself).
        spearman_all / ssim_all: ``[len(depths), n_images]``; Spearman is NaN where a map is constant.
    """

    method: str
    depths: list[str]
    spearman_all: np.ndarray
    ssim_all: np.ndarray

    @property
    def spearman(self) -> np.ndarray:
        """``[len(depths)]`` mean over the images with a defined correlation (NaN if none)."""
        return _finite_mean(self.spearman_all)

    @property
    def ssim(self) -> np.ndarray:
        """``[len(depths)]`` mean over the images."""
        return self.ssim_all.mean(axis=1)


def _finite_mean(a: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)


def mprt(inputs: Sequence[SaliencyInput], methods: Sequence[str], targets: Sequence[CamTarget | None],
         params: Sequence[dict[str, dict[str, Any]]] | None = None, seed: int = 0,
         units: Sequence[CascadeUnit] | None = None,
         progress: Callable[[int, int], None] | None = None) -> dict[str, MprtCurve]:
    """The cascading model-parameter randomisation test of several methods on several images.

    Args:
        inputs: images prepared for one backbone (all with the same backbone).
        methods: saliency registry names.
        targets: one per image: what the maps explain (kept fixed while the model is randomised: the same
            class index, the same prototype or text reference).
        params: one per image: per-method keyword parameters (e.g. ``{"Prototype map A": {"prototypes": ...}}``).
        seed: seeds the re-initialisation.
        units: the cascade (default :func:`cascade_units`); a prefix stops early, one merged unit
            randomises everything at once.
        progress: optional ``progress(done, total)`` callback, one call per cascade step.

    Returns:
        ``{method: MprtCurve}``.
    """
    if not inputs or len(targets) != len(inputs):
        raise ValueError("mprt needs at least one input and one target per input")
    b = inputs[0].backbone
    if any(i.backbone is not b for i in inputs):
        raise ValueError("mprt inputs must all belong to one backbone")
    per_image = list(params) if params is not None else [{} for _ in inputs]
    if len(per_image) != len(inputs):
        raise ValueError("mprt params must be one dict per input")
    units = list(units if units is not None else cascade_units(b))

    def maps_of(backbone: Backbone) -> dict[str, list[np.ndarray]]:
        ins = inputs if backbone is b else [SaliencyInput(backbone, i.x) for i in inputs]
        per = [compute_maps(methods, inp, t, p) for inp, t, p in zip(ins, targets, per_image)]  # CAMs share a pass
        return {m: [maps[m] for maps in per] for m in methods}

    original = maps_of(b)
    n = len(inputs)
    sp: dict[str, list[np.ndarray]] = {m: [np.ones(n)] for m in methods}
    ss: dict[str, list[np.ndarray]] = {m: [np.ones(n)] for m in methods}
    depths = ["original"]
    for k, (name, rand) in enumerate(cascade(b, seed, units)):
        now = maps_of(rand)
        depths.append(name)
        for m in methods:
            pairs = [(o, _comparable(r, o.shape)) for o, r in zip(original[m], now[m])]
            sp[m].append(np.array([spearman(o, r) for o, r in pairs]))
            ss[m].append(np.array([ssim(o, r) for o, r in pairs]))
        if progress is not None:
            progress(k + 1, len(units))
    return {m: MprtCurve(m, depths, np.stack(sp[m]), np.stack(ss[m])) for m in methods}
