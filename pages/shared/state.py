"""Choices that survive page changes. Streamlit resets a widget when another page runs without it
(or with it under another id), so the sidebar's choices live in plain session keys (``_kept_<key>``,
``chosen_<key>``) and are put back before the widgets are drawn."""
from __future__ import annotations

import streamlit as st

DATASET_KEYS = ("ds_source", "ds_pick", "ds_path")
SOURCES = ["Sample stamps", "Folder on server", "Uploads"]
SOURCE_LABELS = {"Uploads": "Only your photos"}  # what the radio shows for a source


def restore_dataset_choice() -> None:
    """Put the kept dataset choice back into the dataset widgets' state (before they are drawn)."""
    ss = st.session_state
    for k in DATASET_KEYS:
        if f"_kept_{k}" in ss:
            ss[k] = ss[f"_kept_{k}"]


def keep(key: str) -> None:
    """A widget's on_change callback: remember its value across pages."""
    st.session_state[f"_kept_{key}"] = st.session_state.get(key)


def remember_dataset_choice() -> None:
    """First run: the widgets' initial values become the kept ones."""
    ss = st.session_state
    for k in DATASET_KEYS:
        if k in ss and f"_kept_{k}" not in ss:
            ss[f"_kept_{k}"] = ss[k]


def keep_all_dataset_widgets() -> None:
    """What was just set in the dataset widgets' state (e.g. by a link) becomes the kept choice."""
    ss = st.session_state
    for k in DATASET_KEYS:
        if k in ss:
            ss[f"_kept_{k}"] = ss[k]


def choose_backbone(name: str, *, key: str = "backbone") -> None:
    """Make ``name`` the sidebar's backbone (added to the list if needed).

    Use it as a widget callback (``st.button(..., on_click=choose_backbone, args=(name,))``): it
    sets the backbone selectboxes' own state, which Streamlit allows only before they are drawn;
    setting ``index=`` alone would leave the browser showing the previous backbone."""
    ss = st.session_state
    if name not in ss.setdefault("custom_backbones", []):
        ss["custom_backbones"].append(name)
    ss[f"chosen_{key}"] = name
    for k in [k for k in ss if str(k).startswith(f"_w_{key}_")]:
        ss[k] = name
