"""Asking the Why page about a pair: the "Why?" controls other pages put beside a neighbour (Embeddings'
neighbour list, Compare's agreement map). A click hands the pair over in session state (by content
hash, so it survives any re-listing of the dataset), makes the pair's backbone the sidebar's, and
switches to the Why page, which opens on the pair and writes it into its link (``?a=<index>&b=<index>``)."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.io.images import ImageRecord
from pages.shared.routes import page
from pages.shared.state import choose_backbone

_HANDOFF = "_why_pair"


@dataclass(frozen=True)
class WhyPair:
    """A pair handed to the Why page.

    Attributes:
        a / b: the two images' sha256 (image A is the one whose neighbour B is).
        backbone: the backbone whose neighbours they are (None: the sidebar's).
        origin: the page that asked (shown on the Why page).
    """

    a: str
    b: str
    backbone: str | None
    origin: str


def _hand_over(pair: WhyPair) -> None:
    """The buttons' callback: runs before the script, so the sidebar's backbone may still be set."""
    st.session_state[_HANDOFF] = pair
    if pair.backbone:
        choose_backbone(pair.backbone)


def why_button(where, a: ImageRecord, b: ImageRecord, *, backbone: str | None, origin: str, key: str) -> None:
    """A small "Why?" button (in ``where``, e.g. a column) that opens the Why page on the pair ``(a, b)``."""
    pair = WhyPair(a.sha256, b.sha256, backbone, origin)
    if where.button("Why?", key=key, icon=":material/help:", type="tertiary", on_click=_hand_over, args=(pair,),
                    help=f"Which patches make {b.name} close to {a.name}: opens the Why page on this pair."):
        st.switch_page(page("why"))


def why_picker(anchor: ImageRecord, neighbours: dict[str, list[ImageRecord]], *, origin: str, key: str) -> None:
    """One "Why is X next to Y in backbone B?" control: a selectbox over every (backbone, neighbour) of
    ``anchor`` and a button that opens the Why page on the chosen pair with that backbone."""
    options = [(name, r) for name, recs in neighbours.items() for r in recs]
    if not options:
        return
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    i = c1.selectbox(f"Why is one of these next to {anchor.name.rsplit('/', 1)[-1]}?", range(len(options)), key=key,
                     format_func=lambda i: f"{options[i][1].name} in {options[i][0]}")
    name, rec = options[i if i is not None else 0]
    why_button(c2, anchor, rec, backbone=name, origin=origin, key=f"{key}_go")


def take_pair() -> WhyPair | None:
    """The pair handed over since the Why page last ran (once: a rerun of the page gets None)."""
    return st.session_state.pop(_HANDOFF, None)
