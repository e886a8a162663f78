"""What every Concepts section reads: the atlas, the images it was made of and the settings."""
from __future__ import annotations

from dataclasses import dataclass

from core.concepts.atlas import ConceptAtlas
from core.io.images import ImageRecord
from pages.shared.concept_jobs import AtlasSettings
from pages.shared.selection import Selection


@dataclass(frozen=True, eq=False)
class ConceptsContext:
    """The Concepts page's shared state, made once per run and handed to each section.

    Attributes:
        sel: the sidebar's choice.
        atlas: the concept atlas of the sidebar's dataset and backbone with the page's settings.
        records: the dataset's images (the atlas's pictures are decoded from them).
        settings: k, method, seed, block and size the atlas was asked with.
    """

    sel: Selection
    atlas: ConceptAtlas
    records: tuple[ImageRecord, ...]
    settings: AtlasSettings

    @property
    def key(self) -> str:
        """The atlas's identity (its cache folder's name): every cached figure keys on it."""
        return self.atlas.path.name if self.atlas.path is not None else str(id(self.atlas))

    @property
    def stem(self) -> str:
        """Download file names start with this."""
        return f"concepts_{self.atlas.backbone}_k{self.atlas.k}_{self.atlas.basis.method}"
