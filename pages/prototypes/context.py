"""What every Prototypes tab reads: the vectors, their labels, the images behind them and the settings
above the tabs. The same for a dataset run through a backbone and for an imported set of embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.geometry.vectors import Metric
from core.models.extract import FeatureSet
from pages.shared.items import Items
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class ProtoContext:
    """The Prototypes page's shared state, made once per run and handed to each tab.

    Attributes:
        sel: the sidebar's choice.
        fid: the vectors' identity (``FeatureSet.key`` or ``ImportedSet.fid``): every cached computation keys on it.
        X: ``[N, D]`` embeddings (an imported set's read-only memory map).
        y: ``[N]`` class labels.
        items: the images behind the rows (names, paths, thumbnails where readable).
        made_by: what made the vectors, for captions (the backbone, or the imported set's name).
        classes: ``[K]`` sorted class names.
        counts: ``[K]`` images per class.
        metric: "cosine" or "euclidean", the distance to prototypes.
        test_size: held-out fraction per class.
        seed: seeds every split and draw.
        fs: the features behind ``X`` when a backbone made them (None for an imported set).
        queries: the dataset's unlabelled images (your photos), which the Classify tab classifies; None when
            there are none.
    """

    sel: Selection
    fid: str
    X: np.ndarray
    y: np.ndarray
    items: Items
    made_by: str
    classes: np.ndarray
    counts: np.ndarray
    metric: Metric
    test_size: float
    seed: int
    fs: FeatureSet | None = None
    queries: FeatureSet | None = None

    @property
    def K(self) -> int:
        return len(self.classes)

    @property
    def imported(self) -> str | None:
        """The imported set's name, or None for a dataset of images run through a backbone."""
        return self.sel.imported
