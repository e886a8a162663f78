"""Cached work of the Concepts page, keyed by the atlas's identity (its cache folder's name), the concept
names and the rows shown; the atlas and the images themselves are not hashed (``_atlas``, ``_records``)."""
from __future__ import annotations

import streamlit as st
from PIL import Image

from core.concepts.atlas import ConceptAtlas
from core.concepts.figures import atlas_figure
from core.io.images import ImageRecord
from pages.shared.concept_jobs import picture_loader


@st.cache_data(max_entries=16, show_spinner="Cropping each concept's typical patches…")
def atlas_png(key: str, names: tuple[str, ...], concepts: tuple[int, ...], _atlas: ConceptAtlas,
              _records: tuple[ImageRecord, ...]) -> Image.Image:
    """The atlas figure (one labelled strip of crops per concept in ``concepts``), with these names."""
    return atlas_figure(_atlas, concepts=list(concepts), images=picture_loader(_atlas, _records))
