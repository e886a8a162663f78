"""What every Why tab reads: the backbone and the dataset's global embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.io.images import ImageRecord
from core.models.base import Backbone
from core.models.extract import FeatureSet
from pages.shared.selection import Selection
from pages.shared.why import WhyPair


@dataclass(frozen=True, eq=False)
class WhyContext:
    """The Why page's shared state, made once per run and handed to the open tab.

    Attributes:
        sel: the sidebar's choice (dataset, backbone, input size, layer).
        b: the loaded backbone.
        fs: the dataset's global embeddings at the sidebar's size and layer; its records are the
            images the tabs index (as the Embeddings and Compare pages do).
        handoff: the pair another page handed over in this run, or None.
    """

    sel: Selection
    b: Backbone
    fs: FeatureSet
    handoff: WhyPair | None

    @property
    def records(self) -> list[ImageRecord]:
        return self.fs.records

    @property
    def X(self) -> np.ndarray:
        """``[N, D]`` global embeddings, one row per record."""
        return self.fs["embedding"]

    def label(self, i: int) -> str:
        """Record i's class, or "" where the dataset has none."""
        return self.fs.labels[i] or ""
