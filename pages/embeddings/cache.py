"""Cached work of the Embeddings page, keyed by the features' identity (``FeatureSet.key``) and the
projection's parameters."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core import render
from core.errors import ImageDecodeError
from core.io.images import ImageRecord
from core.projection.jobs import JobPool
from core.projection.projectors import ProjectionParams, Projector, make_projector

THUMB = 150         # px, neighbour / selection thumbnails
BIG = 320           # px, the opened image


@st.cache_resource
def jobs() -> JobPool:
    """One background worker per server process for UMAP / t-SNE fits."""
    return JobPool(max_workers=1, max_done=24)


def fit(X: np.ndarray, params: ProjectionParams) -> Projector:
    return make_projector(params).fit(X)


@st.cache_resource(max_entries=16, show_spinner=False)
def fit_inline(fid: str, pkey: str, _X: np.ndarray, _params: ProjectionParams) -> Projector:
    """PCA: milliseconds, fitted on the script thread (and used while a slower map is computing)."""
    return fit(_X, _params)


@st.cache_data(max_entries=64, show_spinner="Placing your images in the map…")
def place(fid: str, pkey: str, shas: tuple[str, ...], _proj: Projector, _E: np.ndarray) -> np.ndarray:
    return _proj.transform(_E)  # [M, c], the fitted map is not refitted


@st.cache_data(max_entries=64, show_spinner=False)
def big(sha: str, name: str, _rec: ImageRecord):
    return render.fit(_rec.decode(), BIG)


def image_or_warning(where, fn, rec: ImageRecord, *args, caption: str | None = None) -> None:
    """``where.image(fn(sha, name, *args, rec))``, or a warning when the file changed or went away."""
    try:
        where.image(fn(rec.sha256, rec.name, *args, rec), caption=caption)
    except (ImageDecodeError, OSError) as e:  # changed or removed since the dataset was listed
        where.warning(f"Cannot show **{rec.name}**: {getattr(e, 'reason', e)}")


def short(name: str, n: int = 9) -> str:
    """File stem, cut to ``n`` characters (thumbnail captions stay on one line)."""
    stem = name.split("/")[-1].rsplit(".", 1)[0]
    return stem if len(stem) <= n else stem[: n - 1] + "…"
