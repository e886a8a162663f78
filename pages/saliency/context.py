"""What every Saliency tab reads: the backbone, the picture and the display settings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.explain.targets import CamTarget
from core.models.base import Backbone
from core.models.spec import BackboneSpec
from pages.saliency import cache
from pages.shared.picking import PickedImage
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class SalContext:
    """The Saliency page's shared state, made once per run and handed to each tab.

    Attributes:
        sel: the sidebar's choice.
        b: the loaded backbone.
        pic: the picture explained.
        size: input side in pixels.
        alpha: map opacity over the picture.
        cmap: colour map name.
    """

    sel: Selection
    b: Backbone
    pic: PickedImage
    size: int
    alpha: float
    cmap: str

    @property
    def spec(self) -> BackboneSpec:
        return self.b.spec

    @property
    def stem(self) -> str:
        """Download file names start with this (picture, backbone, size)."""
        return f"{self.pic.name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}_{self.spec.name}_{self.size}"

    def saliency(self, method: str, target: CamTarget | None = None, target_key: str = "", params_key: str = "",
                 **params) -> np.ndarray:
        """One registered method's map of the picture (cached per method, parameters and target)."""
        return cache.saliency_map(self.spec.name, self.pic.sha256, self.size, method, params_key, target_key,
                                  self.pic.image, target, params)
