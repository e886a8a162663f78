"""How fast a backbone runs on this machine, and how that was measured.

``images_per_s`` comes from the extraction statistics when the features were just computed
(``FeatureSet.stats``: images computed / wall time of ``extract_features``, which includes decoding,
preprocessing and cache writes); when they came from the feature cache, from a short timed run of
preprocessing + forward on a few images instead (after one warm-up image, fastest of two runs).
``Speed.source`` says which one.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.io.images import ImageRecord
from core.models.base import Backbone
from core.models.extract import FeatureSet
from core.models.layers import LayerLike

SpeedSource = Literal["extraction", "timed forward"]

MIN_IMAGES_FOR_STATS_SPEED = 8  # fewer freshly computed images than this: time a forward instead
TIMED_FORWARD_IMAGES = 8
TIMED_FORWARD_REPEATS = 2


@dataclass(frozen=True)
class Speed:
    """Images per second, and how it was measured (see the module docstring)."""

    images_per_s: float
    source: SpeedSource
    n_images: int
    seconds: float



def extraction_speed(fs: FeatureSet, min_images: int = MIN_IMAGES_FOR_STATS_SPEED) -> Speed | None:
    """Images/s from the statistics of an extraction, or None when fewer than ``min_images`` images
    were computed (mostly cache hits: the time would not measure the model)."""
    s = fs.stats
    if s.n_computed < min_images or s.seconds <= 0:
        return None
    return Speed(s.n_computed / s.seconds, "extraction", s.n_computed, s.seconds)


def timed_forward_speed(backbone: Backbone, records: Sequence[ImageRecord], *, size: int | None = None,
                        n_images: int = TIMED_FORWARD_IMAGES, repeats: int = TIMED_FORWARD_REPEATS,
                        layer: LayerLike = None) -> Speed:
    """Images/s of preprocessing + one batched forward (global embedding) of ``n_images`` images.

    One image goes through first, untimed, so lazy initialisation is not counted; then the batch is
    timed ``repeats`` times and the fastest run counts (other processes on a shared machine only
    ever slow a run down). Decoding is not timed.
    """
    if not records:
        raise ValueError("need at least one image to time a forward pass")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    images = [r.decode() for r in records[:n_images]]
    size = backbone.spec.check_size(size or backbone.spec.input_size)
    backbone.extract(backbone.preprocess(images[:1], size), layer, want=("embedding",))  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        backbone.extract(backbone.preprocess(images, size), layer, want=("embedding",))
        best = min(best, time.perf_counter() - t0)
    return Speed(len(images) / best, "timed forward", len(images), best)


def measure_speed(backbone: Backbone, fs: FeatureSet, *, n_images: int = TIMED_FORWARD_IMAGES) -> Speed:
    """:func:`extraction_speed` of ``fs`` when it computed enough images, else :func:`timed_forward_speed`
    on its first ``n_images`` images (same input size)."""
    return extraction_speed(fs) or timed_forward_speed(backbone, fs.records, size=fs.size, n_images=n_images)
