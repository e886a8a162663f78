"""Which foreground to trust for one picture, and the co-segmentation foreground by the same rule.

The unsupervised foregrounds (:mod:`core.segment.foreground`: the first principal component, CLS attention,
normalized cut, the boundary prior) each fail on some pictures: the normalized cut may keep a sliver, the
boundary prior drops an object the frame cuts, PCA may split a scene along its largest contrast. No ground
truth is at hand for a user's photo, so the rule is **agreement**: the recommended mask is the one with the
highest mean IoU to the other methods' masks (each method's errors are its own; what most of them share
is more likely the object). Only masks covering between :data:`MIN_COVER` and :data:`MAX_COVER` of the
picture take part (an empty or whole-picture mask is no foreground); ties go to the earlier method of
:data:`ORDER`. With a single such mask it is the recommendation; with none there is none.

Co-segmentation (:func:`cosegment_foreground`) uses the same recommendation per picture: a shared cluster
is foreground in a picture when most of its patches there lie in that picture's recommended mask, common
foreground when that holds in at least half the pictures, and each picture highlights only the common
clusters that are foreground in it. (:func:`core.segment.clustering.common_foreground` with one PCA over
all the pictures draws every common cluster in every picture: with the cat photo beside the first three
bird stamps, k = 5, as the Segmentation page opens, it marks the whole cat photo as foreground, 36 % of it
outside the cat's own mask; this rule marks 59 %, all inside: ``tests/test_segment_recommend.py``.)

Patch masks are boolean ``[h, w]``. Nothing here imports Streamlit.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.segment.foreground import attention_foreground, boundary_foreground, ncut_foreground, pca_foreground

__all__ = ["ORDER", "LABELS", "MIN_COVER", "MAX_COVER", "ATTENTION_KEEP", "ForegroundChoice", "foreground_masks",
           "recommend_foreground", "choose_foreground", "CosegForeground", "cosegment_foreground"]

ORDER = ("pca", "cls_attention", "ncut", "boundary")  # also the tie order
LABELS = {"pca": "first principal component", "cls_attention": "CLS attention", "ncut": "normalized cut",
          "boundary": "boundary prior"}
MIN_COVER = 0.02  # of the picture: smaller is no foreground (one or two patches)
MAX_COVER = 0.95  # larger is the whole picture
ATTENTION_KEEP = 0.6  # DINO's attention mass, as the quality bench and the page


@dataclass(frozen=True)
class ForegroundChoice:
    """The foreground masks of one picture and the recommendation among them.

    Attributes:
        masks: ``{method: bool [h, w]}`` for every method that applies (``ORDER`` order).
        scores: ``{method: [h, w]}`` each method's score map (CLS attention: the map given).
        cover: ``{method: share of the picture}``.
        agreement: ``{method: mean IoU to the other candidates}`` for the candidates (cover within
            ``[MIN_COVER, MAX_COVER]``); NaN for a lone candidate.
        method: the recommended method, or ``None`` when no mask is a candidate.
        sentence: why, in one sentence for the page.
    """

    masks: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    cover: dict[str, float]
    agreement: dict[str, float]
    method: str | None
    sentence: str

    @property
    def mask(self) -> np.ndarray:
        """The recommended ``[h, w]`` mask (all False when there is none)."""
        if self.method is None:
            return np.zeros(next(iter(self.masks.values())).shape, dtype=bool)
        return self.masks[self.method]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def foreground_masks(tokens: np.ndarray | torch.Tensor, cls_map: np.ndarray | None = None,
                     keep: float = ATTENTION_KEEP) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{method: (score [h, w], mask bool [h, w])}`` of every automatic method that applies.

    Args:
        tokens: ``[h, w, D]`` patch tokens of one picture.
        cls_map: ``[h, w]`` CLS attention (e.g. the last block's head mean); None for a CNN.
        keep: attention mass kept by the attention mask.
    """
    out = {"pca": pca_foreground(tokens)}
    if cls_map is not None:
        a = np.asarray(cls_map, dtype=np.float64)
        out["cls_attention"] = (a.astype(np.float32), attention_foreground(a, keep))
    h, w = out["pca"][1].shape
    if h * w >= 3:
        out["ncut"] = ncut_foreground(tokens)
    if min(h, w) >= 3:
        out["boundary"] = boundary_foreground(tokens)
    return {m: out[m] for m in ORDER if m in out}


def recommend_foreground(masks: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray] | None = None) -> ForegroundChoice:
    """The recommendation among ``masks`` (``{method: bool [h, w]}``, all of one grid) by the agreement rule.

    Raises:
        ValueError: no mask, or masks of different shapes.
    """
    if not masks:
        raise ValueError("recommend_foreground needs at least one mask")
    ms = {m: np.asarray(v, dtype=bool) for m, v in masks.items()}
    shapes = {v.shape for v in ms.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"masks must share one [h, w] grid, got {sorted(shapes)}")
    cover = {m: float(v.mean()) for m, v in ms.items()}
    cands = [m for m in ms if MIN_COVER <= cover[m] <= MAX_COVER]
    rank = {m: i for i, m in enumerate([*ORDER, *[m for m in ms if m not in ORDER]])}
    cands.sort(key=rank.__getitem__)
    agreement = {m: (float(np.mean([_iou(ms[m], ms[o]) for o in cands if o != m])) if len(cands) > 1 else math.nan)
                 for m in cands}
    left_out = [m for m in ms if m not in cands]
    why_out = (f"; left out: {', '.join(f'{LABELS.get(m, m)} ({cover[m]:.0%} of the picture)' for m in left_out)}"
               if left_out else "")
    if not cands:
        method = None
        sentence = (f"No method finds a foreground here (every mask is empty or the whole picture{why_out}): the "
                    "picture may have no single object.")
    elif len(cands) == 1:
        method = cands[0]
        sentence = f"Recommended: {LABELS.get(method, method)}, the only mask that is neither empty nor the whole picture{why_out}."
    else:
        method = max(cands, key=lambda m: (agreement[m], -rank[m]))
        others = ", ".join(f"{LABELS.get(m, m)} {agreement[m]:.2f}" for m in cands if m != method)
        sentence = (f"Recommended: {LABELS.get(method, method)} ({cover[method]:.0%} of the picture), the mask that agrees "
                    f"best with the others (mean IoU {agreement[method]:.2f}; {others}){why_out}.")
    sc = {m: np.asarray(v) for m, v in (scores or {}).items()}
    return ForegroundChoice(ms, sc, cover, agreement, method, sentence)


def choose_foreground(tokens: np.ndarray | torch.Tensor, cls_map: np.ndarray | None = None,
                      keep: float = ATTENTION_KEEP) -> ForegroundChoice:
    """Every automatic foreground of one picture and the recommendation (:func:`foreground_masks`, then
    :func:`recommend_foreground`)."""
    fm = foreground_masks(tokens, cls_map, keep)
    return recommend_foreground({m: v[1] for m, v in fm.items()}, {m: v[0] for m, v in fm.items()})


@dataclass(frozen=True)
class CosegForeground:
    """The foreground of a co-segmentation.

    Attributes:
        common: clusters that are foreground in at least ``ceil(vote_frac * N)`` pictures.
        per_image: per picture, the common clusters that are foreground *there* (most of their patches in
            that picture's own recommended mask): what to highlight in that picture.
        masks: per picture bool ``[h_i, w_i]``, the patches of ``per_image[n]``.
    """

    common: frozenset[int]
    per_image: tuple[frozenset[int], ...]
    masks: tuple[np.ndarray, ...]


def cosegment_foreground(labels_list: Sequence[np.ndarray], fg_masks: Sequence[np.ndarray],
                         vote_frac: float = 0.5) -> CosegForeground:
    """Clusters of a co-segmentation that are foreground by each picture's own recommended mask.

    In picture ``n`` a cluster present there is foreground when more than half of its patches lie in
    ``fg_masks[n]`` (e.g. :attr:`ForegroundChoice.mask`); it is common foreground when that holds in at least
    ``ceil(vote_frac * N)`` of the ``N`` pictures. Each picture then shows only the common clusters that are
    foreground in it: a cluster the other pictures call foreground but that lies in this picture's
    background (the cat photo's fur-and-carpet cluster beside white-background bird stamps) is not drawn
    as foreground here.

    Args:
        labels_list: per picture ``[h_i, w_i]`` cluster ids (:func:`core.segment.clustering.cosegment`).
        fg_masks: per picture bool ``[h_i, w_i]``.
        vote_frac: in ``(0, 1]``.
    """
    if len(labels_list) != len(fg_masks):
        raise ValueError(f"{len(labels_list)} label maps but {len(fg_masks)} masks")
    if not labels_list:
        raise ValueError("cosegment_foreground needs at least one picture")
    if not 0.0 < vote_frac <= 1.0:
        raise ValueError(f"vote_frac must be in (0, 1], got {vote_frac}")
    fg_in: list[set[int]] = []
    for n, (lab, fg) in enumerate(zip(labels_list, fg_masks)):
        lab, fg = np.asarray(lab), np.asarray(fg, dtype=bool)
        if lab.shape != fg.shape or lab.ndim != 2:
            raise ValueError(f"picture {n}: labels {lab.shape} and mask {fg.shape} must be the same [h, w]")
        fg_in.append({int(c) for c in np.unique(lab) if fg[lab == c].mean() > 0.5})
    votes: dict[int, int] = {}
    for here in fg_in:
        for c in here:
            votes[c] = votes.get(c, 0) + 1
    need = math.ceil(vote_frac * len(labels_list))
    common = frozenset(c for c, v in votes.items() if v >= need)
    per_image = tuple(frozenset(common & here) for here in fg_in)
    masks = tuple(np.isin(np.asarray(lab), sorted(ids)) for lab, ids in zip(labels_list, per_image))
    return CosegForeground(common, per_image, masks)
