"""What the Embeddings page draws, as one frozen value (the figure and the panels read only this)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.geometry.neighbours import Neighbours
from core.io.images import ImageRecord
from core.projection.projectors import ProjectionParams

VOTE_K = 5          # neighbours whose majority class labels an upload
UPLOAD = "your upload"


@dataclass(frozen=True, eq=False)
class MapView:
    """The map of one feature set with the session's uploads placed in it.

    Attributes:
        backbone: the backbone's name.
        records: the dataset's images, then the uploads (``N + M``).
        labels: class of each dataset image (``"(unlabelled)"`` where none).
        X: ``[N, D]`` dataset embeddings.
        coords: ``[N + M, c]`` map coordinates, dataset first (c = 2 or 3).
        shown: the projection drawn (PCA while a slower one is computing).
        up_votes: the k-NN class vote of each upload (``M``).
        up_far: for each upload, the 'far from every class' sentence when the rule says so, else None.
        pick: the opened image (row of ``records``) or None.
        nbrs: its nearest dataset images (full feature space), or None.
        multi: rows of a box / lasso selection.
        colours: label -> colour when the map is coloured by a discovery (known classes, then new
            clusters apart); None: one class palette.
    """

    backbone: str
    records: list[ImageRecord]
    labels: list[str]
    X: np.ndarray
    coords: np.ndarray
    shown: ProjectionParams
    metric: str
    up_votes: list[str]
    up_far: list[str | None]
    pick: int | None
    nbrs: Neighbours | None
    multi: list[int]
    colours: dict[str, str] | None = None

    @property
    def n(self) -> int:
        """Dataset images (the uploads follow them)."""
        return len(self.X)

    @property
    def three_d(self) -> bool:
        return self.coords.shape[1] == 3

    def label(self, i: int) -> str:
        """Class of row i, or :data:`UPLOAD`."""
        return self.labels[i] if i < self.n else UPLOAD
