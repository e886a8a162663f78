"""The app's pages, in menu order: what app.py's router navigates and what a page links to
(``st.page_link(page("embeddings"))``). Paths are absolute, so a link works from any page script."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from pages.shared.server import ROOT


@dataclass(frozen=True)
class Route:
    url: str      # the url path, e.g. "embeddings" (also the package name under pages/)
    title: str
    icon: str     # a Material icon of the font Streamlit bundles (no request leaves the machine)
    section: str = ""  # the menu's heading it sits under


ROUTES: tuple[Route, ...] = (
    Route("home", "Home", ":material/home:"),
    Route("embeddings", "Embeddings", ":material/scatter_plot:", "Explore"),
    Route("prototypes", "Prototypes", ":material/target:", "Explore"),
    Route("discover", "Discover", ":material/category_search:", "Explore"),
    Route("saliency", "Saliency", ":material/local_fire_department:", "Explain"),
    Route("segmentation", "Segmentation", ":material/content_cut:", "Explain"),
    Route("why", "Why neighbours", ":material/help:", "Explain"),
    Route("compare", "Compare", ":material/compare:", "Choose a backbone"),
)


def page(url: str):
    """The ``st.Page`` of the page at ``url`` (for ``st.navigation`` and ``st.page_link``)."""
    r = next((r for r in ROUTES if r.url == url), None)
    if r is None:
        raise KeyError(f"no page {url!r}; pages: {[r.url for r in ROUTES]}")
    return st.Page(ROOT / "pages" / r.url / "page.py", title=r.title, icon=r.icon, url_path=r.url,
                   default=r is ROUTES[0])


def pages() -> dict[str, list]:
    """Every page, in menu order, under its section's heading (for ``st.navigation``)."""
    out: dict[str, list] = {}
    for r in ROUTES:
        out.setdefault(r.section, []).append(page(r.url))
    return out
