"""What both Discover tabs read: the features of the dataset as read (before any accepted name)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.models.extract import FeatureSet
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class DiscContext:
    """The Discover page's shared state, made once per run.

    Attributes:
        sel: the sidebar's choice (``sel.base``: the dataset as read; ``sel.dataset``: with accepted names).
        fs: features of ``sel.base`` (the sidebar's backbone, size and layer).
        X: ``[N, D]`` embeddings.
        labels: ``[N]`` labels as read (``""``: unlabelled).
    """

    sel: Selection
    fs: FeatureSet
    X: np.ndarray
    labels: np.ndarray

    @property
    def fid(self) -> str:
        """The features' identity: every run keys on it."""
        return self.fs.key

    @property
    def n_unlabelled(self) -> int:
        return int((self.labels == "").sum())

    @property
    def classes(self) -> list[str]:
        """The labelled classes, sorted."""
        return sorted(set(self.labels.tolist()) - {""})
