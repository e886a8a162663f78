"""Cached per-image work of the Segmentation page: keyed by (backbone, image sha256, input size, block);
the picture and tokens themselves are not hashed."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.explain.attention import cls_attention_map
from core.explain.inputs import image_tokens
from core.segment.clustering import cosegment, kmeans_parts
from core.segment.foreground import ncut_foreground
from core.segment.recommend import ForegroundChoice, choose_foreground
from pages.shared.resources import get_backbone


@st.cache_data(max_entries=64, show_spinner="Patch tokens…")
def tokens(name: str, sha: str, size: int, layer: int, _img) -> np.ndarray:
    b = get_backbone(name)
    return image_tokens(b, b.preprocess([_img], size), layer)[0]  # [h, w, D]


@st.cache_data(max_entries=32, show_spinner="CLS attention…")
def cls_attention(name: str, sha: str, size: int, _img) -> np.ndarray:
    b = get_backbone(name)
    return cls_attention_map(b, b.preprocess([_img], size), -1)  # [h, w] last block, head mean


@st.cache_data(max_entries=32, show_spinner="k-means…")
def parts(name: str, sha: str, size: int, layer: int, k: int, _tokens: np.ndarray) -> np.ndarray:
    return kmeans_parts(_tokens, k)  # [h, w]


@st.cache_data(max_entries=16, show_spinner="Co-segmentation…")
def coseg(name: str, shas: tuple[str, ...], size: int, layer: int, k: int, _tokens: list[np.ndarray]) -> list[np.ndarray]:
    return cosegment(_tokens, k)  # per image [h, w]


@st.cache_data(max_entries=32, show_spinner="Normalized cut…")
def ncut(name: str, sha: str, size: int, layer: int, _tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ncut_foreground(_tokens)  # [h, w] score, bool [h, w]


@st.cache_data(max_entries=32, show_spinner="Comparing the foregrounds…")
def choice(name: str, sha: str, size: int, layer: int, has_attention: bool, _tokens: np.ndarray, _img) -> ForegroundChoice:
    """Every automatic foreground of one picture and the recommended one (core.segment.recommend)."""
    att = cls_attention(name, sha, size, _img) if has_attention else None
    return choose_foreground(_tokens, att)
