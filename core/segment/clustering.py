"""Clustering of patch tokens: k-means parts of one image, co-segmentation of several (one k-means, so a
cluster id means the same thing in every image) and the clusters that are foreground in most of them.

Patch tokens are ``[h, w, D]`` per image; labels are integer ``[h, w]`` maps.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans

from core.geometry.vectors import l2_normalize
from core.segment.grid import EPS, as_grid_tokens


def _kmeans(x: np.ndarray, k: int, seed: int, n_init: int) -> np.ndarray:
    """KMeans labels of rows of ``x [P, D]`` after L2 normalisation (cosine-like geometry)."""
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0]}] (number of patches), got {k}")
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    return km.fit_predict(l2_normalize(x, EPS)).astype(np.int64)  # [P]


def kmeans_parts(tokens: np.ndarray | torch.Tensor, k: int, seed: int = 0, n_init: int = 3) -> np.ndarray:
    """Cluster one image's patches into ``k`` parts.

    Args:
        tokens: ``[h, w, D]`` patch tokens.
        k: number of clusters.
        seed: KMeans random state.
        n_init: KMeans restarts.

    Returns:
        ``[h, w]`` integer labels in ``[0, k)``.
    """
    t = as_grid_tokens(tokens)
    h, w, D = t.shape
    return _kmeans(t.reshape(h * w, D), k, seed, n_init).reshape(h, w)


def cosegment(
    tokens_list: Sequence[np.ndarray | torch.Tensor], k: int, seed: int = 0, n_init: int = 3
) -> list[np.ndarray]:
    """Joint KMeans over the patches of several images, so cluster ids are shared across images.

    Args:
        tokens_list: per image ``[h_i, w_i, D]`` patch tokens (grids may differ, ``D`` may not).
        k: number of clusters.
        seed / n_init: KMeans settings.

    Returns:
        per image ``[h_i, w_i]`` labels in ``[0, k)``.
    """
    if len(tokens_list) == 0:
        raise ValueError("cosegment needs at least one image")
    toks = [as_grid_tokens(t, f"tokens_list[{n}]") for n, t in enumerate(tokens_list)]
    dims = {t.shape[-1] for t in toks}
    if len(dims) != 1:
        raise ValueError(f"all images need the same token dim (same backbone and layer), got {sorted(dims)}")
    flat = np.concatenate([t.reshape(-1, t.shape[-1]) for t in toks])  # [sum h_i*w_i, D]
    labels = _kmeans(flat, k, seed, n_init)
    out, start = [], 0
    for t in toks:
        h, w = t.shape[:2]
        out.append(labels[start : start + h * w].reshape(h, w))
        start += h * w
    return out


def common_foreground(
    labels_list: Sequence[np.ndarray],
    fg_score_list: Sequence[np.ndarray | torch.Tensor],
    vote_frac: float = 0.5,
    margin: float = 0.0,
) -> set[int]:
    """Clusters of a co-segmentation that are foreground in most images.

    Rule (a voting scheme after Amir et al., "Deep ViT Features as Dense Visual Descriptors"):
    in image ``n`` a cluster present there gets a vote if the mean foreground score of its patches
    exceeds ``mean(score_n) + margin * std(score_n)`` (scale-free, so PCA scores and attention maps
    both work). A cluster is common foreground if it gets votes in at least
    ``ceil(vote_frac * N)`` of the ``N`` images (clusters absent from an image get no vote there).

    Args:
        labels_list: per image ``[h_i, w_i]`` labels from :func:`cosegment`.
        fg_score_list: per image ``[h_i, w_i]`` foreground scores (higher = more foreground), e.g.
            from :func:`pca_foreground` or a CLS attention map.
        vote_frac: fraction of images that must vote for a cluster, in ``(0, 1]``.
        margin: extra threshold in units of each image's score std.

    Returns:
        the set of foreground cluster ids.
    """
    if len(labels_list) != len(fg_score_list):
        raise ValueError(f"{len(labels_list)} label maps but {len(fg_score_list)} score maps")
    if len(labels_list) == 0:
        raise ValueError("common_foreground needs at least one image")
    if not 0.0 < vote_frac <= 1.0:
        raise ValueError(f"vote_frac must be in (0, 1], got {vote_frac}")
    votes: dict[int, int] = {}
    for n, (lab, sc) in enumerate(zip(labels_list, fg_score_list)):
        lab = np.asarray(lab)
        s = np.asarray(sc, dtype=np.float64)
        if lab.shape != s.shape or lab.ndim != 2:
            raise ValueError(f"image {n}: labels {lab.shape} and scores {s.shape} must be the same [h, w]")
        thr = s.mean() + margin * s.std()
        for c in np.unique(lab):
            if s[lab == c].mean() > thr:
                votes[int(c)] = votes.get(int(c), 0) + 1
    need = math.ceil(vote_frac * len(labels_list))
    return {c for c, v in votes.items() if v >= need}
