"""Prototype maps: where one picture looks like a class prototype, and which class it is nearest to.

Prototypes are the class means of :func:`core.classify.prototypes.class_prototypes` (the nearest-mean
classifier's own), scaled to unit length for cosines, built from the global embeddings of one block so
that they live in the space of that block's patch tokens (ViT: the normed CLS token and the normed
patch tokens; CNN: the globally pooled feature map and its positions).
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.geometry.vectors import class_sums, l2_normalize


@dataclass(frozen=True)
class PrototypeSet:
    """Class prototypes for cosines: class means scaled to unit length.

    Attributes:
        classes: class names, sorted.
        vectors: ``[K, D]`` unit-length class means.
        counts: images per class that went into each mean.
    """

    classes: list[str]
    vectors: np.ndarray
    counts: list[int]

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, labels: Sequence[str],
                        exclude: Collection[int] = ()) -> PrototypeSet:
        """Class means of ``embeddings [N, D]`` by ``labels`` (:func:`core.classify.prototypes.class_prototypes`).

        Args:
            embeddings: global embeddings of a labelled set (all from one backbone and block).
            labels: one label per row; empty labels are ignored.
            exclude: rows left out of the means (leave-one-out: the explained image and its copies, so it
                never votes for its own class); a class left without images then has no prototype.

        Raises:
            ValueError: fewer than two classes.
        """
        return ClassSums.of(embeddings, labels).without(exclude)

    def index(self, name: str) -> int:
        """Row of class ``name`` (unknown names raise with the known ones)."""
        try:
            return self.classes.index(name)
        except ValueError:
            raise ValueError(f"no prototype for class {name!r}; classes: {', '.join(self.classes)}") from None

    def similarities(self, embedding: np.ndarray | torch.Tensor) -> np.ndarray:
        """Cosine of one embedding ``[D]`` to every prototype: ``[K]``."""
        e = l2_normalize(np.asarray(embedding, dtype=np.float32).reshape(-1))  # [D]
        if e.shape[0] != self.vectors.shape[1]:
            raise ValueError(f"embedding dim {e.shape[0]} != prototype dim {self.vectors.shape[1]}: use the same "
                             "backbone and block for both")
        return (l2_normalize(self.vectors) @ e).astype(np.float32)

    def ranking(self, embedding: np.ndarray | torch.Tensor) -> list[tuple[str, float]]:
        """``(class, cosine)`` from the nearest prototype to the farthest (ties in class order)."""
        sims = self.similarities(embedding)
        return [(self.classes[i], float(sims[i])) for i in np.argsort(-sims, kind="stable")]


@dataclass(frozen=True, eq=False)
class ClassSums:
    """Per-class float64 sums of a labelled set's embeddings, made once: the prototypes without a few rows
    (the explained picture and its copies, one picture after another on a report card) then cost
    ``O(K D + m D)`` each instead of a pass over all ``N`` rows (2 s per picture at 100,000 x 1280).

    Attributes:
        embeddings: ``[N, D]`` float32, the rows.
        codes: ``[N]`` class code of each row, -1 where it has no label.
        classes: ``[K]`` sorted labels; sums ``[K, D]`` float64; counts ``[K]``.
    """

    embeddings: np.ndarray
    codes: np.ndarray
    classes: np.ndarray
    sums: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, embeddings: np.ndarray, labels: Sequence[str]) -> ClassSums:
        E = np.asarray(embeddings, dtype=np.float32)
        if E.ndim != 2 or E.shape[0] != len(labels):
            raise ValueError(f"embeddings must be [N, D] with one label per row, got {E.shape} and {len(labels)} labels")
        lab = np.asarray([str(v) if v else "" for v in labels])  # [N]
        labelled = lab != ""
        classes, inverse = np.unique(lab[labelled], return_inverse=True)  # [K], [n]
        codes = np.full(len(lab), -1, dtype=np.int64)
        codes[labelled] = inverse
        sums = class_sums(E[labelled], inverse, len(classes)) if len(classes) else np.zeros((0, E.shape[1]))
        return cls(E, codes, classes, sums, np.bincount(inverse, minlength=len(classes)))

    def without(self, exclude: Collection[int] = ()) -> PrototypeSet:
        """The :class:`PrototypeSet` of the rows not in ``exclude`` (a class left empty has no prototype).

        Raises:
            ValueError: fewer than two classes keep an image.
        """
        rows = np.unique(np.asarray(list(exclude), dtype=np.int64))
        rows = rows[(rows >= 0) & (rows < len(self.codes))]
        rows = rows[self.codes[rows] >= 0]  # unlabelled rows are in no mean
        sums, counts = self.sums.copy(), self.counts.copy()
        if rows.size:
            sums -= class_sums(self.embeddings[rows], self.codes[rows], len(self.classes))
            counts -= np.bincount(self.codes[rows], minlength=len(self.classes))
        kept = counts > 0
        if int(kept.sum()) < 2:
            raise ValueError(f"prototype maps need a labelled dataset with at least 2 classes (got {int(kept.sum())}); "
                             "pick a folder-per-class dataset or give uploads class names")
        means = (sums[kept] / counts[kept, None]).astype(np.float32)  # [K', D], as class_prototypes rounds them
        return PrototypeSet([str(c) for c in self.classes[kept]], l2_normalize(means).astype(np.float32),
                            [int(c) for c in counts[kept]])


def _cosine_to(tokens: np.ndarray, vec: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Cosine similarity of every row of ``tokens [..., D]`` to ``vec [D]`` -> ``[...]``."""
    t = tokens.astype(np.float64)
    v = vec.astype(np.float64)
    tn = np.linalg.norm(t, axis=-1)  # [...]
    vn = np.linalg.norm(v)
    return ((t @ v) / (np.maximum(tn, eps) * max(vn, eps))).astype(np.float32)


def prototype_maps(
    patch_tokens: np.ndarray | torch.Tensor,
    protos: np.ndarray | torch.Tensor,
    top2_idx: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Where an image looks like class ``a`` and where like the runner-up ``b``.

    Args:
        patch_tokens: ``[h, w, D]`` patch tokens of one image.
        protos: ``[K, D]`` class prototypes (e.g. class means of embeddings, same space as tokens).
        top2_idx: ``(a, b)`` prototype indices, typically the predicted class and the runner-up.

    Returns:
        ``{"a": [h, w], "b": [h, w], "diff": [h, w]}``: cosine similarity of each patch to
        prototype ``a`` and ``b``, and ``a - b`` ("why this class rather than the runner-up").
    """
    tok = np.asarray(patch_tokens, dtype=np.float32)
    P = np.asarray(protos, dtype=np.float32)
    if tok.ndim != 3:
        raise ValueError(f"patch_tokens must be [h, w, D], got shape {tok.shape}")
    if P.ndim != 2:
        raise ValueError(f"protos must be [K, D], got shape {P.shape}")
    if tok.shape[-1] != P.shape[-1]:
        raise ValueError(
            f"token dim {tok.shape[-1]} != prototype dim {P.shape[-1]}: build the prototypes from "
            "the same backbone and layer as the patch tokens"
        )
    a, b = (int(i) for i in top2_idx)
    K = P.shape[0]
    for i in (a, b):
        if not 0 <= i < K:
            raise ValueError(f"prototype index {i} out of range for {K} prototypes")
    sim_a = _cosine_to(tok, P[a])  # [h, w]
    sim_b = _cosine_to(tok, P[b])  # [h, w]
    return {"a": sim_a, "b": sim_b, "diff": sim_a - sim_b}


@dataclass(frozen=True)
class PrototypeExplanation:
    """Why the nearest-prototype classifier picks class ``a`` over the runner-up ``b``.

    Attributes:
        similarities: ``[K]`` cosine of the image embedding to every prototype.
        a / b: indices of the best and second-best prototype.
        maps: ``{"a", "b", "diff"}`` ``[h, w]`` per-patch cosines and their difference.
    """

    prototypes: PrototypeSet
    similarities: np.ndarray
    a: int
    b: int
    maps: dict[str, np.ndarray]

    @property
    def ranking(self) -> list[tuple[str, float]]:
        order = np.argsort(-self.similarities, kind="stable")
        return [(self.prototypes.classes[i], float(self.similarities[i])) for i in order]


def explain_by_prototypes(patch_tokens: np.ndarray, embedding: np.ndarray, protos: PrototypeSet) -> PrototypeExplanation:
    """Prototype maps of one image.

    Args:
        patch_tokens: ``[h, w, D]`` of the same block as the prototypes.
        embedding: ``[D]`` global embedding of the image at that block (it picks ``a`` and ``b``).
        protos: from :meth:`PrototypeSet.from_embeddings`.
    """
    sims = protos.similarities(embedding)  # [K]
    a, b = (int(i) for i in np.argsort(-sims, kind="stable")[:2])
    return PrototypeExplanation(protos, sims, a, b, prototype_maps(patch_tokens, protos.vectors, (a, b)))
