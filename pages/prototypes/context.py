"""What every Prototypes tab reads: the features, their labels and the settings above the tabs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.geometry.vectors import Metric
from core.models.extract import FeatureSet
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class ProtoContext:
    """The Prototypes page's shared state, made once per run and handed to each tab.

    Attributes:
        sel: the sidebar's choice.
        fs: the dataset's features (the sidebar's backbone, size and layer).
        X: ``[N, D]`` embeddings.
        y: ``[N]`` class labels.
        classes: ``[K]`` sorted class names.
        counts: ``[K]`` images per class.
        metric: "cosine" or "euclidean", the distance to prototypes.
        test_size: held-out fraction per class.
        seed: seeds every split and draw.
        queries: the dataset's unlabelled images (your photos), which the Classify tab classifies; None when
            there are none.
    """

    sel: Selection
    fs: FeatureSet
    X: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    metric: Metric
    test_size: float
    seed: int
    queries: FeatureSet | None = None

    @property
    def fid(self) -> str:
        """The features' identity: every cached computation keys on it."""
        return self.fs.key

    @property
    def K(self) -> int:
        return len(self.classes)
