"""Cached per-image work of the Saliency page: keyed by (backbone, image sha256, input size, ...);
the picture itself is not hashed (``_img``)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import render
from core.explain.faithfulness import Baseline, faithfulness
from core.explain.inputs import SaliencyInput
from core.explain.methods import compute_saliency
from core.explain.prototype_maps import ClassSums
from core.explain.targets import CamTarget, top_classes
from core.io.images import rows_by_sha256
from core.models.extract import FeatureSet
from core.render import ColorScale
from pages.shared.resources import get_backbone

TILE = 104       # px, attention mosaic tiles


@st.cache_resource(max_entries=4, show_spinner=False)  # shared and read-only: never copied
def class_sums(fkey: str, _fs: FeatureSet) -> tuple[ClassSums, dict[str, list[int]]]:
    """Per-class sums of a feature set's embeddings and the rows of each picture (by sha256), made once per
    features key: a picture's leave-one-out prototypes then cost milliseconds at 100,000 images."""
    return ClassSums.of(_fs["embedding"], _fs.labels), rows_by_sha256(_fs.records)


@st.cache_resource(max_entries=4, show_spinner=False)
def saliency_input(name: str, sha: str, size: int, _img) -> SaliencyInput:
    """The picture prepared for the backbone; its attention and tokens are computed once."""
    return SaliencyInput.from_image(get_backbone(name), _img, size)


@st.cache_data(max_entries=16, show_spinner="Attention of every block and head…")
def cls_maps(name: str, sha: str, size: int, _img) -> np.ndarray:
    return saliency_input(name, sha, size, _img).attention().cls_maps  # [L, H, h, w]


@st.cache_data(max_entries=128, show_spinner="Saliency map…")
def saliency_map(name: str, sha: str, size: int, method: str, params_key: str, target_key: str, _img,
                 _target: CamTarget | None, _params: dict) -> np.ndarray:
    """The map of one registered method (``[h, w]`` or ``[S, S]``)."""
    return compute_saliency(method, saliency_input(name, sha, size, _img), _target, **_params)


@st.cache_data(max_entries=16, show_spinner=False)
def top5(name: str, sha: str, size: int, _img):
    return top_classes(get_backbone(name), saliency_input(name, sha, size, _img).x, k=5)


@st.cache_data(max_entries=16, show_spinner="Patch tokens…")
def tokens(name: str, sha: str, size: int, layer: int, _img) -> tuple[np.ndarray, np.ndarray]:
    return saliency_input(name, sha, size, _img).tokens(layer)  # [h, w, D], [D]


@st.cache_data(max_entries=128, show_spinner="Deletion / insertion…")
def faith(name: str, sha: str, size: int, map_id: str, target_key: str, steps: int, baseline: Baseline,
          _img, _map: np.ndarray, _target: CamTarget) -> dict:
    return faithfulness(get_backbone(name), _img, _map, _target, size, steps=steps, baseline=baseline)


@st.cache_data(max_entries=8, show_spinner=False)
def mosaic(name: str, sha: str, size: int, alpha: float, cmap: str, mode: str, _img):
    """Every block's and head's CLS attention over the picture (a tile grid, the mean of heads last)."""
    cls = cls_maps(name, sha, size, _img)  # [L, H, h, w]
    maps = np.concatenate([cls, cls.mean(1, keepdims=True)], axis=1)  # [L, H+1, h, w], last column = mean of heads
    if mode == "per tile":
        maps = maps / maps.max(axis=(2, 3), keepdims=True)
        scale = ColorScale(0.0, 1.0, cmap, "attention / tile max")
    elif mode == "per block":
        maps = maps / maps.max(axis=(1, 2, 3), keepdims=True)
        scale = ColorScale(0.0, 1.0, cmap, "attention / block max")
    else:
        scale = ColorScale(0.0, float(maps.max()), cmap, "CLS attention weight")
    base = render.fit(_img, TILE)
    tiles = [[render.fast_overlay(base, m, scale, alpha=alpha) for m in row] for row in maps]
    return render.grid(tiles, [f"block {l}" for l in range(maps.shape[0])],
                       [f"head {h}" for h in range(maps.shape[1] - 1)] + ["mean"], scale)
