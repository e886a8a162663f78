"""What every Compare section reads: the backbones and their features on the same images."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from core import render
from core.compare.speed import Speed
from core.io.images import ImageRecord
from core.models.base import Backbone
from core.models.extract import FeatureSet
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class CmpContext:
    """The Compare page's shared state, made once per run and handed to each section.

    Attributes:
        sel: the sidebar's choice with size and layer reset: every backbone runs at its own defaults.
        names: the backbones compared (2 to 4), in column order.
        backbones: the loaded backbones, same order.
        fsets: each backbone's global embeddings of the same images, same order.
        speeds: each backbone's images per second, same order.
    """

    sel: Selection
    names: tuple[str, ...]
    backbones: tuple[Backbone, ...]
    fsets: tuple[FeatureSet, ...]
    speeds: tuple[Speed, ...]

    @property
    def records(self) -> list[ImageRecord]:
        return self.fsets[0].records

    @property
    def labels(self) -> list[str]:
        return self.fsets[0].labels

    @property
    def img_names(self) -> list[str]:
        return [r.name for r in self.records]

    @property
    def dataset_key(self) -> str:
        return self.sel.dataset_key

    @cached_property
    def labelled(self) -> bool:
        """Every image has a class and there are at least two classes."""
        return bool(self.labels) and all(self.labels) and len(set(self.labels)) >= 2

    @cached_property
    def classes(self) -> list[str]:
        return sorted(set(self.labels)) if self.labelled else []

    @cached_property
    def colour_of(self) -> dict[str, str]:
        """One colour per class, the same in every column."""
        return render.class_colours(self.classes)
