"""What a user needs to name a new cluster, and the labels that follow once named.

For each new cluster: its size, its most central images (highest cosine to the cluster's centre), the
known class whose prototype is nearest to its centre, and a margin: per member image, the cosine
distance to the nearest known prototype minus the one to the cluster's centre, the median over the
members (positive: the images sit nearer their new centre than any known class; near 0 or negative: the
cluster may be part of a known class). Prototypes here are the unit-length means of each labelled
class's L2-normalised features, the known centres SS-k-means starts from.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.geometry.vectors import l2_normalize

N_CENTRAL = 8


@dataclass(frozen=True)
class NewCluster:
    """One new cluster.

    Attributes:
        id: its index among all clusters (``K_L ..``; ``0..K_L-1`` are the known classes).
        name: display name, ``"new 1"`` for the largest, ``"new 2"`` for the next ...
        size: unlabelled images in it.
        central: ``[m]`` row indices (into the full feature matrix) of its most central images, most
            central first.
        nearest_known: the known class whose prototype is nearest to the cluster's centre.
        distance: cosine distance from the cluster's centre to that prototype.
        margin: median over its images of (cosine distance to the nearest known prototype - cosine
            distance to the cluster's centre); NaN for an empty cluster.
    """

    id: int
    name: str
    size: int
    central: np.ndarray
    nearest_known: str
    distance: float
    margin: float

    def as_dict(self, paths: list[str] | None = None) -> dict:
        """JSON-ready; ``central`` as paths when ``paths`` (one per feature row) is given."""
        central = [paths[i] for i in self.central] if paths is not None else [int(i) for i in self.central]
        return {"id": self.id, "name": self.name, "size": self.size, "nearest_known": self.nearest_known,
                "distance": round(self.distance, 6),
                "margin": None if np.isnan(self.margin) else round(self.margin, 6), "central": central}


def describe_clusters(U: np.ndarray, rows: np.ndarray, lab: np.ndarray, centres: np.ndarray,
                      prototypes: np.ndarray, classes: np.ndarray, n_central: int = N_CENTRAL) -> list[NewCluster]:
    """The new clusters of a fit, largest first.

    Args:
        U: ``[N_u, D]`` L2-normalised unlabelled features.
        rows: ``[N_u]`` their row indices in the full feature matrix.
        lab: ``[N_u]`` their clusters (``< K_L``: known).
        centres: ``[K, D]`` all centres.
        prototypes: ``[K_L, D]`` unit-length known prototypes.
        classes: ``[K_L]`` known class names.
        n_central: central images kept per cluster.
    """
    KL = len(classes)
    Cn = l2_normalize(centres)  # [K, D] directions of the centres
    d_known = 1.0 - (U @ prototypes.T.astype(U.dtype)).max(1).astype(np.float64)  # [N_u]
    out = []
    for j in range(KL, len(centres)):
        members = np.flatnonzero(lab == j)
        cos_c = (U[members] @ Cn[j].astype(U.dtype)).astype(np.float64)  # [n_j]
        order = np.argsort(-cos_c, kind="stable")[:n_central]
        cp = prototypes @ Cn[j]  # [K_L]
        near = int(np.argmax(cp))
        margin = float(np.median(d_known[members] - (1.0 - cos_c))) if len(members) else float("nan")
        out.append(NewCluster(id=j, name="", size=len(members), central=rows[members[order]],
                              nearest_known=str(classes[near]), distance=float(1.0 - cp[near]), margin=margin))
    out.sort(key=lambda c: (-c.size, c.id))
    return [NewCluster(**{**c.__dict__, "name": f"new {r + 1}"}) for r, c in enumerate(out)]


def named_labels(labels: np.ndarray, assignment: np.ndarray, classes: np.ndarray, clusters: list[NewCluster],
                 names: Mapping[int | str, str], keep_known: bool = False) -> np.ndarray:
    """Labels with accepted names: each named new cluster becomes a class (a new prototype).

    Args:
        labels: ``[N]`` the input labels, ``""`` for unlabelled images (kept for labelled ones).
        assignment: ``[N]`` each image's cluster.
        classes: ``[K_L]`` known classes.
        clusters: the new clusters.
        names: cluster id or display name (``"new 1"``) -> the class name to give it. A known class's
            name merges the cluster into that class; two clusters may get the same name.
        keep_known: also label the unlabelled images SS-k-means put into a known class.

    Returns:
        ``[N]`` labels (``""``: still unlabelled).
    """
    by_key: dict[int | str, int] = {c.id: c.id for c in clusters} | {c.name: c.id for c in clusters}
    given: dict[int, str] = {}
    for key, name in names.items():
        k = int(key) if isinstance(key, np.integer) else key
        if k not in by_key:
            raise ValueError(f"no new cluster {key!r}; new clusters: {', '.join(c.name for c in clusters) or 'none'}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"the name for cluster {key!r} must be a non-empty string, got {name!r}")
        given[by_key[k]] = name.strip()
    out = np.asarray(labels).astype(object).copy()
    unl = out == ""
    for cid, name in given.items():
        out[unl & (assignment == cid)] = name
    if keep_known:
        known = unl & (assignment < len(classes))
        out[known] = np.asarray(classes, dtype=object)[assignment[known]]
    return out.astype(str)
