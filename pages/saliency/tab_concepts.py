"""Concept map tab: which of the dataset's concepts (the Concepts page's atlas) each patch of the picture belongs to.

The atlas of the sidebar's dataset and backbone with the default settings is used when it is made; otherwise
a button computes it in the background (or the Concepts page does, with other settings and names). A dataset
picture's map is read from the atlas; an upload's patches are encoded on the atlas's concepts."""
from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from core.concepts.atlas import DEFAULT_K, ConceptAtlas
from core.concepts.figures import atlas_figure, atlas_map_figure, concept_map_figure
from core.io.images import ImageRecord
from core.models.base import Backbone
from pages.saliency.context import SalContext
from pages.saliency.widgets import download
from pages.shared import concept_jobs
from pages.shared.concept_jobs import AtlasSettings
from pages.shared.routes import page
from pages.shared.uploads import without_uploads

PRESENT_ROWS = 4  # atlas rows shown for the concepts that cover most of the picture


@st.cache_data(max_entries=32, show_spinner="Encoding the picture's patches on the concepts…")
def _upload_map(key: str, sha: str, _atlas: ConceptAtlas, _b: Backbone, _img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    return _atlas.map_of_image(_b, _img)  # labels [h, w], coef [h, w]


@st.cache_data(max_entries=32, show_spinner=False)
def _map_figure(key: str, names: tuple[str, ...], sha: str, i: int | None, name: str, _atlas: ConceptAtlas,
                _b: Backbone, _img: Image.Image) -> Image.Image:
    if i is not None:
        return atlas_map_figure(_atlas, i, _img)
    lab, coef = _upload_map(key, sha, _atlas, _b, _img)
    return concept_map_figure(_img, lab, coef, [_atlas.short_label(j) for j in range(_atlas.k)],
                              title=f"{name}: main concept of each patch ({_atlas.backbone}, block {_atlas.layer}; "
                                    f"encoded on the dataset's concepts)")


@st.cache_data(max_entries=32, show_spinner="Cropping the concepts' typical patches…")
def _rows(key: str, names: tuple[str, ...], concepts: tuple[int, ...], _atlas: ConceptAtlas,
          _records: tuple[ImageRecord, ...]) -> Image.Image:
    return atlas_figure(_atlas, concepts=list(concepts), crops=6, crop_px=100,
                        images=concept_jobs.picture_loader(_atlas, _records),
                        title=f"The {len(concepts)} concepts covering most of this picture, elsewhere in the dataset")


def draw(ctx: SalContext) -> None:
    sel, b, pic = ctx.sel, ctx.b, ctx.pic
    data = without_uploads(sel.dataset)  # your photos are encoded on the dataset's concepts, not refitted
    records = tuple(data.records)
    if not records:
        st.info("The concept map needs the dataset's concepts, and this dataset has no images: pick one in the sidebar.")
        return
    s = AtlasSettings(b.spec.weights_id, data.key, layer=sel.layer, size=sel.size)
    mine = len(sel.dataset.records) - len(records)
    st.caption(f"The concepts of the sidebar's dataset ({len(records):,} images"
               + (f"; your {mine} photo(s) left out, encoded on its concepts" if mine else "")
               + f") for **{ctx.spec.name}**, found with the default settings (k = {DEFAULT_K}, method auto, "
               "seed 0; other settings and names: the Concepts page).")
    atlas = concept_jobs.obtain(b, records, s, what=f"{ctx.spec.name}, k = {DEFAULT_K}", key="sal_cc", auto=False)
    if atlas is None:
        st.page_link(page("concepts"), label="…or open the Concepts page", icon=":material/auto_awesome_mosaic:")
        return
    key, names = atlas.path.name if atlas.path else str(id(atlas)), tuple(atlas.names)
    i = atlas.image_names.index(pic.name) if pic.index is not None and pic.name in atlas.image_names else None
    fig = _map_figure(key, names, pic.sha256, i, pic.name, atlas, b, pic.image)
    st.image(fig)
    st.caption("Each patch painted in its main concept's colour (the concept with the largest coefficient), more opaque "
               "where its coefficient is larger; the legend lists the concepts by area. [class] = the class the concept "
               "carries (it adds most to that class's nearest-class-mean score); names given on the Concepts page "
               "replace it." + ("" if i is not None else " This picture is not among the atlas's images: its patch "
                                "tokens were encoded on the dataset's concepts."))
    download(fig, f"{ctx.stem}_concepts.png", key="dl_concepts")
    lab, _ = atlas.concept_map(i) if i is not None else _upload_map(key, pic.sha256, atlas, b, pic.image)
    present, counts = np.unique(lab[lab >= 0], return_counts=True)
    top = tuple(int(j) for j in present[np.argsort(-counts, kind="stable")][:PRESENT_ROWS])
    if top:
        with st.expander("What these concepts look like in other pictures", expanded=True):
            st.image(_rows(key, names, top, atlas, records))
