"""Which sources the page compares: two to four backbones (run on the sidebar's images) or imported sets
(``imported:NAME``). The choice comes from the link (``?compare=a,b,c``, read once per session), is kept
across page changes (Streamlit drops a widget's state when another page runs) and is written back into
the link."""
from __future__ import annotations

import streamlit as st

from core.compare.sources import MAX_SOURCES, source_kind
from core.io.policy import PolicyError
from core.models.registry import list_backbones
from pages.shared.datasets import imported_sets
from pages.shared.links import link_param
from pages.shared.resources import offline_backbone_names
from pages.shared.selection import CLASS_DEFAULT, IMPORTED, PATCH_DEFAULT, Selection
from pages.shared.server import one_line, policy
from pages.shared.state import keep

KEY = "cmp_sources"
KEPT = f"_kept_{KEY}"
LINK = "compare"
DEFAULT_SET = [CLASS_DEFAULT, PATCH_DEFAULT]


def _options(sel: Selection, sets: dict[str, int]) -> list[str]:
    """Backbones (a backbone runs on the sidebar's images: none when the sidebar shows an imported set), then
    every imported set as ``imported:NAME``."""
    builtin = offline_backbone_names()
    backbones = builtin + [n for n in st.session_state.get("custom_backbones", []) if n not in builtin]
    return ([] if sel.imported else backbones) + [IMPORTED + n for n in sets]


def _from_link(text: str, sets: dict[str, int]) -> tuple[list[str], list[str]]:
    """The link's names as option values (``imported:NAME`` for a set; a backbone this server may load but
    does not list yet is added to the session's backbones), and the names that are not here."""
    chosen: list[str] = []
    missing: list[str] = []
    for raw in [n.strip() for n in text.split(",") if n.strip()][:MAX_SOURCES]:
        kind, bare = source_kind(raw)
        if kind == "imported":
            (chosen if bare in sets else missing).append(IMPORTED + bare)
            continue
        try:
            name = policy().check_backbone_name(bare, {e.name for e in list_backbones()})
        except PolicyError as e:
            missing.append(f"{bare} ({one_line(e)})")
            continue
        custom = st.session_state.setdefault("custom_backbones", [])
        if name not in offline_backbone_names() and name not in custom:
            custom.append(name)
        chosen.append(name)
    return list(dict.fromkeys(chosen)), missing


def choose_sources(sel: Selection) -> list[str]:
    """The sources multiselect (backbone names and ``imported:NAME``), restored from the kept choice or,
    the first time, from the link, and written back into the link."""
    ss = st.session_state
    sets = imported_sets()
    if KEPT not in ss:  # the first time this session opens the page
        linked = link_param(LINK)
        if linked:
            ss[KEPT], missing = _from_link(linked, sets)
            if missing:
                ss["_cmp_link_problem"] = f"The link's sources not here, left out: {', '.join(missing)}."
        elif sel.imported:
            ss[KEPT] = [IMPORTED + sel.imported] + [IMPORTED + n for n in sets if n != sel.imported][:1]
        else:
            ss[KEPT] = list(DEFAULT_SET)
    options = _options(sel, sets)
    ss[KEY] = [c for c in ss[KEPT] if c in options]  # the kept choice, put back before the widget is drawn
    if ss.get("_cmp_link_problem"):
        st.warning(ss["_cmp_link_problem"])
    names: list[str] = st.multiselect(
        f"Compare (2 to {MAX_SOURCES}: backbones run on the sidebar's images, or imported sets)", options, key=KEY,
        max_selections=MAX_SOURCES, on_change=_changed,
        format_func=lambda o: f"{o[len(IMPORTED):]} (imported set, {sets.get(o[len(IMPORTED):], 0):,} points)"
        if o.startswith(IMPORTED) else o,
        help="Any mix of ViTs, CNNs, CLIP and imported sets of embeddings (`backbone-lens import`). Add a timm / "
             "open_clip name under 'Other backbone' in the sidebar. An imported set is matched with the other "
             "sources' images by file content (sha256) where every source carries it, else by path.")
    if sel.imported:
        st.caption("The sidebar shows an imported set, so only imported sets are offered: a backbone runs on the "
                   "sidebar's images (pick a folder or the sample stamps there to add backbones).")
    link = ",".join(names)
    if link and st.query_params.get(LINK) != link:
        st.query_params[LINK] = link
    elif not link and LINK in st.query_params:
        del st.query_params[LINK]
    return names


def _changed() -> None:
    keep(KEY)
    st.session_state.pop("_cmp_link_problem", None)  # the user's own choice now
