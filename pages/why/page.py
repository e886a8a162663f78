"""Why: questions about how a backbone relates images. "Why neighbours": two images' cosine split into
patch-pair terms (core.relate.explain_pair: exact for mean-pooled embeddings, BiLRP on a ViT's CLS
stream otherwise, with the deletion check). Pairs arrive from the Embeddings and Compare pages'
"Why?" controls (pages.shared.why), from a link (``?a=<index>&b=<index>``) or from the two
selectboxes. One module per tab, each drawing from a :class:`~pages.why.context.WhyContext`."""
from __future__ import annotations

import importlib

import streamlit as st

from pages.shared.resources import features, load_backbone_or_stop, show_failures
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.sidebar import sidebar
from pages.shared.why import take_pair
from pages.why.context import WhyContext

# Tab title -> module of this package with draw(ctx), imported only when its tab is open. A new tab is
# one line here (the concept atlas: "Concept atlas": "tab_concepts").
TABS = {
    "Why neighbours": "tab_neighbours",
}
NEIGHBOURS = "Why neighbours"

handoff = take_pair()  # before any widget: a hand-off opens the neighbours tab
if handoff is not None:
    st.session_state["why_tab"] = NEIGHBOURS
sel = sidebar(CLASS_DEFAULT)
st.title("Why")
st.caption("Why does the backbone put two images close? Their cosine similarity split into patch-to-patch terms, "
           "from the backbone's own features of the sidebar's dataset, input size and layer.")
b = load_backbone_or_stop(sel.backbone)
fs = features(sel)
show_failures(fs)
ctx = WhyContext(sel=sel, b=b, fs=fs, handoff=handoff)

tabs = st.tabs(list(TABS), key="why_tab", on_change="rerun", default=NEIGHBOURS)
for title, tab in zip(TABS, tabs):
    if tab.open:  # only the open tab computes
        with tab:
            importlib.import_module(f"pages.why.{TABS[title]}").draw(ctx)
