"""The atlas: how it was made, its fidelity, one strip of typical patches per concept, a name field per concept,
and the downloads."""
from __future__ import annotations

import json

import streamlit as st

from core import render
from core.concepts.atlas import ConceptAtlas
from pages.concepts import cache
from pages.concepts.context import ConceptsContext
from pages.shared.routes import page

NAME_COLUMNS = 6  # name fields per line


def made(a: ConceptAtlas) -> str:
    """One line: what was factorised, on what, and what it cost."""
    s = a.stats
    h, w = a.grid
    took = "read back from the cache" if s.from_cache else (
        f"computed in {s.extract_seconds + s.fit_seconds + s.apply_seconds + s.score_seconds:.0f} s "
        f"(features {s.extract_seconds:.0f} s, fit {s.fit_seconds:.0f} s, encoding {s.apply_seconds:.0f} s)")
    skipped = f"; {len(a.failures)} unreadable images left out" if a.failures else ""
    return (f"{a.k} concepts ({a.basis.method}) of block {a.layer} of **{a.backbone}** at {a.size} px ({h}x{w} patches) "
            f"on {s.n_images:,} images, fitted on {s.sample_vectors:,} patch vectors from {s.sample_images:,} images; "
            f"{took}{skipped}.")


def fidelity(a: ConceptAtlas) -> str:
    """The fidelity line: variance explained, the deletion test, and for a proxy split both accuracies."""
    out = (f"**Fidelity.** The concepts reconstruct **{a.variance_explained:.0%}** of the variance of the pooled "
           f"features (each image's mean patch vector; {a.codes.patch_variance_explained:.0%} of the patch vectors').")
    if a.deletion is None:
        return out + f" Deletion test: {a.deletion_note}."
    d = a.deletion.summary()
    acc = d["nmc_accuracy"]
    out += (f" Deleting each class's top concept from its images takes the class's nearest-class-mean accuracy "
            f"(leave-one-out) from {acc:.0%} to **{acc - d['mean_drop_top']:.0%}**; deleting another concept leaves "
            f"{acc - d['mean_drop_random']:.0%} (the top concept's drop is larger in {d['classes_top_drops_more']} of "
            f"{d['classes']} classes).")
    if not a.exact and a.embedding_accuracy is not None:
        out += (f" This NMC is on the mean-pooled patch tokens (a proxy: the embedding is not a sum over patches); "
                f"the embedding's own NMC accuracy is {a.embedding_accuracy:.0%}.")
    return out


def draw(ctx: ConceptsContext) -> None:
    a = ctx.atlas
    st.caption(made(a))
    st.markdown(fidelity(a))
    shown = st.multiselect("Concepts shown (all when empty)", range(a.k), key=f"cc_shown_{ctx.key}",
                           format_func=a.short_label, help="Pick a few rows to compare them.")
    rows = tuple(shown) if shown else tuple(range(a.k))
    fig = cache.atlas_png(ctx.key, tuple(a.names), rows, a, ctx.records)
    st.image(fig)
    st.caption("Each row: a concept's number and name, the classes it adds most to (its term in their mean NMC score), "
               "its share of patches, then its most typical patch (outlined, in the concept's colour) in 8 different "
               "pictures, with context and the picture's class below.")
    with st.form(f"cc_names_{ctx.key}", border=True):
        st.markdown("**Name the concepts** (what the strips above show; the grey hint is the class a concept carries)")
        cols = st.columns(NAME_COLUMNS)
        names = [cols[j % NAME_COLUMNS].text_input(f"C{j}", value=a.names[j], key=f"cc_name_{ctx.key}_{j}", max_chars=60,
                                                   placeholder=a.short_label(j).partition(" ")[2] or "unnamed")
                 for j in range(a.k)]
        if st.form_submit_button("Save names", icon=":material/save:"):
            a.save_names(names)
            st.toast("Names saved beside the cached atlas: the figures, the table and the JSON use them.")
            st.rerun()
    c1, c2, c3 = st.columns([1, 1, 3], vertical_alignment="center")
    c1.download_button("⬇ Atlas PNG", data=lambda: render.png_bytes(fig), file_name=f"{ctx.stem}.png", mime="image/png",
                       on_click="ignore", key="cc_dl_png")
    c2.download_button("⬇ JSON", data=lambda: json.dumps(a.to_json(), indent=1), file_name=f"{ctx.stem}.json",
                       mime="application/json", on_click="ignore", key="cc_dl_json",
                       help="Concepts with their typical patches, the class table, fidelity, settings.")
    c3.page_link(page("saliency"), label="A picture's concept map: Saliency, tab 'Concept map'", icon=":material/map:")
