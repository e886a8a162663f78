"""The generalized category discovery protocol on a fully labelled set: "treat these classes as unknown".

As in Vaze et al. (CVPR 2022, section 4.1; ``data/*.py`` of their code, ``prop_train_labels = 0.5``): the
images of the hidden classes are all unlabelled, and of each known class a share of the images (50 % by
default) keeps its label while the rest joins the unlabelled images. The method is scored on the
unlabelled images only. The authors draw the labelled half at random over all old-class images; here it
is drawn per class (stratified: ``round(share * n_c)`` images, at least one), so every known class keeps
labelled images on small sets.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

LABELLED_SHARE = 0.5


@dataclass(frozen=True)
class GCDSplit:
    """Which labels the method may see.

    Attributes:
        labelled: ``[N]`` True where the label is shown to the method.
        old: ``[N]`` True for an image of a known (old) class, labelled or not.
        known_classes: the classes that keep labelled images, sorted.
        unknown_classes: the hidden classes, sorted.
        share: the share of each known class's images that keeps its label.
    """

    labelled: np.ndarray
    old: np.ndarray
    known_classes: tuple[str, ...]
    unknown_classes: tuple[str, ...]
    share: float


def hide_classes(y: ArrayLike, unknown: Iterable[str], labelled_share: float = LABELLED_SHARE,
                 seed: int = 0) -> GCDSplit:
    """Hide ``unknown`` classes, and ``1 - labelled_share`` of each other class's images.

    Args:
        y: ``[N]`` true classes of every image.
        unknown: the classes to treat as unknown (at least one, not all).
        labelled_share: share of each known class's images that keeps its label, in ``(0, 1]``.
        seed: seed of the draw.
    """
    y = np.asarray(y).astype(str)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y must be a non-empty 1-D array of classes, got shape {y.shape}")
    classes = sorted(set(y.tolist()))
    hidden = sorted({str(c).strip() for c in unknown if str(c).strip()})
    if not hidden:
        raise ValueError("name at least one class to treat as unknown")
    missing = [c for c in hidden if c not in classes]
    if missing:
        raise ValueError(f"unknown class(es) {', '.join(missing)} not in the data; classes: {', '.join(classes)}")
    known = [c for c in classes if c not in hidden]
    if not known:
        raise ValueError("no labelled class left: every class was treated as unknown; keep at least one")
    if not 0.0 < labelled_share <= 1.0:
        raise ValueError(f"labelled_share must be in (0, 1], got {labelled_share}")
    rng = np.random.default_rng(seed)
    old = np.isin(y, known)
    labelled = np.zeros(len(y), dtype=bool)
    for c in known:
        idx = np.flatnonzero(y == c)
        n_lab = min(len(idx), max(1, round(labelled_share * len(idx))))
        labelled[rng.choice(idx, size=n_lab, replace=False)] = True
    return GCDSplit(labelled=labelled, old=old, known_classes=tuple(known), unknown_classes=tuple(hidden),
                    share=float(labelled_share))
