"""Backbone Lens core library: backbones, image loading, feature extraction and caching, and the
numeric views (projections, prototypes, saliency, segmentation, comparison).

Nothing in this package imports Streamlit; everything is usable from a notebook or a script.
"""
from core.errors import (
    BackboneLensError,
    ImageDecodeError,
    UnknownBackboneError,
    UnsupportedOperationError,
    WeightsUnavailableError,
)

__all__ = [
    "BackboneLensError",
    "UnknownBackboneError",
    "WeightsUnavailableError",
    "UnsupportedOperationError",
    "ImageDecodeError",
]
