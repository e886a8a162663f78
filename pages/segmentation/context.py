"""What every Segmentation tab reads: the backbone, the picture and its patch tokens, the other
pictures, and the display settings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.models.base import Backbone
from core.models.spec import BackboneSpec
from pages.segmentation import cache
from pages.shared.picking import PickedImage
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class SegContext:
    """The Segmentation page's shared state, made once per run and handed to each tab.

    Attributes:
        sel: the sidebar's choice.
        b: the loaded backbone.
        size: input side in pixels.
        layer: the block whose patch tokens are segmented.
        pic: the picture.
        tokens: ``[h, w, D]`` its patch tokens.
        others: the other pictures (similarity to the click, co-segmentation).
        alpha: mask / map opacity.
        sharp: masks moved onto the picture's edges (guided filter).
    """

    sel: Selection
    b: Backbone
    size: int
    layer: int
    pic: PickedImage
    tokens: np.ndarray
    others: tuple[PickedImage, ...]
    alpha: float
    sharp: bool

    @property
    def spec(self) -> BackboneSpec:
        return self.b.spec

    @property
    def stem(self) -> str:
        """Download file names start with this (picture, backbone, size, block)."""
        return f"{stem(self.pic.name)}_{self.spec.name}_{self.size}_b{self.layer}"

    def tokens_of(self, pic: PickedImage) -> np.ndarray:
        """``[h, w, D]`` patch tokens of another picture (same backbone, size and block)."""
        return cache.tokens(self.spec.name, pic.sha256, self.size, self.layer, pic.image)


def stem(name: str) -> str:
    """A file name without folder and extension."""
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
