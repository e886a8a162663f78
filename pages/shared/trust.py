"""How much to trust a class-based answer about one image: the 'far from every class' rule
(core.classify.ood_rule), calibrated on the dataset's own labelled images, the same rule on every page."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.classify.ood_rule import OODReference, OODVerdict, calibrate_ood
from core.models.extract import FeatureSet


@st.cache_resource(max_entries=8, show_spinner="Calibrating 'far from every class' on the dataset…")
def _reference(fid: str, _X: np.ndarray, _y: np.ndarray) -> OODReference | None:
    try:
        return calibrate_ood(_X, _y)
    except ValueError:  # too few images or classes for the rule
        return None


def ood_reference(fs: FeatureSet) -> OODReference | None:
    """The rule calibrated on the labelled images of ``fs`` (cached by its key); None where it cannot be
    (fewer than two classes, too few images)."""
    rows = np.flatnonzero([bool(lab) for lab in fs.labels])
    if len(set(fs.labels[i] for i in rows)) < 2:
        return None
    sub = fs if len(rows) == len(fs.records) else fs.subset(rows)
    return _reference(sub.key, sub["embedding"], np.asarray(sub.labels))


def judge(fs: FeatureSet, U: np.ndarray, names: list[str]) -> list[OODVerdict] | None:
    """The rule's verdict on each row of ``U`` (``[M, D]``, the same backbone and block as ``fs``)."""
    ref = ood_reference(fs)
    return None if ref is None else ref.judge(np.atleast_2d(U), names)
