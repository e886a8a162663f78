"""The shareable link: ``?dataset=NAME&backbone=NAME`` (plus each page's own parameters, e.g.
``?method=umap`` on Embeddings) is read once per session and kept in step with the sidebar."""
from __future__ import annotations

import streamlit as st

from pages.shared.datasets import imported_sets
from pages.shared.selection import IMPORTED
from pages.shared.state import choose_backbone, keep_all_dataset_widgets


def apply_link() -> None:
    """Once per session: a shared link's ``?dataset=NAME&backbone=NAME`` selects that dataset
    (``stamps``, ``uploads``, a folder path or an imported set's name) and backbone."""
    ss = st.session_state
    if ss.get("_link_applied"):
        return
    ss["_link_applied"] = True
    q = st.query_params.to_dict()
    ss["_link"] = q
    ds = q.get("dataset")
    if ds:
        if ds == "stamps":
            ss["ds_source"] = "Sample stamps"
        elif ds == "uploads":
            ss["ds_source"] = "Uploads"
        elif ds.startswith("/") or ds.startswith("~"):
            ss["ds_source"], ss["ds_path"] = "Folder on server", ds
        elif ds in imported_sets():
            ss["ds_source"] = IMPORTED + ds
        else:
            ss["_link_problem"] = f"The link's dataset **{ds}** is not here (no such imported set or folder)."
    keep_all_dataset_widgets()  # what the link chose is the kept choice
    if q.get("backbone") and not (ds and ss.get("ds_source", "").startswith(IMPORTED)):
        choose_backbone(q["backbone"])


def link_param(name: str) -> str | None:
    """A parameter of the link this session was opened with (pages use it for their own
    main parameters, e.g. ``?method=umap`` on Embeddings), or None."""
    return st.session_state.get("_link", {}).get(name)


def write_link(dataset_label: str, backbone: str | None) -> None:
    """Keep ``?dataset=...&backbone=...`` in the address bar in step with the sidebar."""
    ds = {"sample stamps": "stamps", "uploads": "uploads"}.get(dataset_label, dataset_label)
    ds = ds[len(IMPORTED):] if ds.startswith(IMPORTED) else ds
    want = {"dataset": ds, **({"backbone": backbone} if backbone else {})}
    if any(st.query_params.get(k) != v for k, v in want.items()):
        st.query_params.update(want)
    if not backbone and "backbone" in st.query_params:
        del st.query_params["backbone"]
