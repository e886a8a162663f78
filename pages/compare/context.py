"""What every Compare section reads: two to four embedding sources (backbones run on the sidebar's images,
imported sets) aligned on the images they all hold."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from core import render
from core.compare.sources import AlignedSources, EmbeddingSource
from core.compare.speed import Speed
from core.io.images import ImageRecord
from core.models.base import Backbone
from core.models.extract import FeatureSet
from pages.shared.items import Items, aligned_items
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class CmpContext:
    """The Compare page's shared state, made once per run and handed to each section.

    Attributes:
        sel: the sidebar's choice with size and layer reset: every backbone runs at its own defaults.
        aligned: the sources restricted to the images they share, in one order (``[M, D_b]`` each).
        key: the comparison's identity (each source's vectors; the alignment follows from them): every
            cached computation of the page keys on it.
    """

    sel: Selection
    aligned: AlignedSources
    key: str

    @cached_property
    def items(self) -> Items:
        """The M shared images: display names, thumbnails where readable."""
        return aligned_items(self.key, self.aligned, self.img_names)

    @property
    def sources(self) -> list[EmbeddingSource]:
        return self.aligned.sources

    @property
    def names(self) -> tuple[str, ...]:
        """The sources' display names (a backbone's registry name, an imported set's name), in column order."""
        return tuple(self.aligned.source_names)

    @property
    def features(self) -> list[np.ndarray]:
        """Per source, ``[M, D_b]`` its vectors of the shared images."""
        return self.aligned.features

    def X(self, name: str) -> np.ndarray:
        """``[M, D]`` the source ``name``'s vectors of the shared images."""
        return self.aligned.features[self.names.index(name)]

    def rows(self, name: str) -> np.ndarray:
        """``[M]`` the source ``name``'s own row of each shared image."""
        return self.aligned.rows[self.names.index(name)]

    @property
    def backbone_names(self) -> list[str]:
        """The sources that are a model run here (side by side and layer CKA need one)."""
        return [s.name for s in self.sources if s.backbone is not None]

    @property
    def imported_names(self) -> list[str]:
        return [s.name for s in self.sources if s.backbone is None]

    def backbone(self, name: str) -> Backbone:
        b = self.sources[self.names.index(name)].backbone
        if b is None:
            raise ValueError(f"{name} is an imported set: it has no model")
        return b

    def feature_set(self, name: str) -> FeatureSet:
        fs = self.sources[self.names.index(name)].features
        if fs is None:
            raise ValueError(f"{name} is an imported set: it has no feature set")
        return fs

    @property
    def speeds(self) -> tuple[Speed | None, ...]:
        return tuple(s.speed for s in self.sources)

    @cached_property
    def records(self) -> list[ImageRecord] | None:
        """``M`` validated records of the shared images (from the first backbone source), None when every
        source is an imported set."""
        return self.aligned.records()

    @cached_property
    def labels(self) -> list[str]:
        return [str(v) for v in self.aligned.labels]

    @cached_property
    def img_names(self) -> list[str]:
        """``M`` display names: a backbone source's (relative to the sidebar's folder), else the first source's
        recorded paths."""
        return [r.name for r in self.records] if self.records is not None else list(self.aligned.names)

    @property
    def n(self) -> int:
        return self.aligned.n_shared

    @cached_property
    def labelled(self) -> bool:
        """Every shared image has a class and there are at least two classes."""
        return self.aligned.labelled and len(set(self.labels)) >= 2

    @cached_property
    def classes(self) -> list[str]:
        return sorted(set(self.labels)) if self.labelled else []

    @cached_property
    def colour_of(self) -> dict[str, str]:
        """One colour per class, the same in every column."""
        return render.class_colours(self.classes)
