"""How much each concept contributes to an image's nearest-class-mean score: an exact linear split.

The classifier is the project's cosine NMC on pooled features: class prototype ``p_c`` = the mean
pooled feature of class ``c``, score ``s_c(x) = <e, p_c> / (|e| |p_c|)``. With the pooled feature
``e = mean_patches(x) = u W + b + r`` (``u [k]`` the image's mean concept code, ``W [k, D]`` the
concept directions, ``b`` the method's offset, ``r`` the mean reconstruction residual), the score is
a sum of terms, exactly::

    s_c = sum_k u_k <W_k, p^_c> / |e|   +   <b, p^_c> / |e|   +   <r, p^_c> / |e|      (p^_c = p_c / |p_c|)
          \\______ concept k ______/        \\__ offset __/       \\__ residual __/

For a CNN whose embedding is the global average of its last (post-ReLU) map, ``e`` *is* the embedding
(checked on the data: :attr:`core.concepts.atlas.ConceptAtlas.exact`), so the split is of the
project's own NMC score. For a ViT whose embedding is the CLS token, it is the split of the same NMC on
the mean-pooled patch tokens of that block (a stated proxy: the CLS token is not a sum over patches).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.classify.prototypes import class_prototypes
from core.concepts.methods import ConceptBasis
from core.geometry.vectors import ROW_BLOCK, distances, l2_normalize


@dataclass
class ClassTable:
    """Per class: the mean, over the class's images, of each term of their score to the class prototype.

    Attributes:
        classes: ``[C]`` sorted labels.
        counts: ``[C]`` images per class.
        contributions: ``[C, k]`` concept terms.
        offset: ``[C]`` the offset term (0 for NMF).
        residual: ``[C]`` the residual term (what the concepts do not reconstruct).
        score: ``[C]`` mean cosine score of the class's images to their prototype, computed directly;
            ``contributions.sum(1) + offset + residual == score``.
    """

    classes: np.ndarray
    counts: np.ndarray
    contributions: np.ndarray
    offset: np.ndarray
    residual: np.ndarray
    score: np.ndarray

    @property
    def top_concept(self) -> np.ndarray:
        """``[C]`` each class's largest contributor."""
        return self.contributions.argmax(axis=1)

    def top_classes(self, concept: int, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` classes concept ``concept`` contributes most to, with their terms (positive ones only)."""
        col = self.contributions[:, concept]
        order = np.argsort(-col, kind="stable")[:n]
        return [(str(self.classes[c]), float(col[c])) for c in order if col[c] > 0]


@dataclass
class ScoreTerms:
    """The terms of each image's score to each prototype (arrays over images ``n`` and classes ``C``).

    Attributes:
        concepts: ``[n, C, k]``; offset / residual / score: ``[n, C]``.
    """

    concepts: np.ndarray
    offset: np.ndarray
    residual: np.ndarray
    score: np.ndarray


def score_terms(u: np.ndarray, e: np.ndarray, basis: ConceptBasis, prototypes: np.ndarray) -> ScoreTerms:
    """Split the cosine scores of ``n`` images to ``C`` prototypes over the concepts (module docstring).

    Args:
        u: ``[n, k]`` mean concept codes.
        e: ``[n, D]`` pooled features.
        basis: the concepts.
        prototypes: ``[C, D]`` class prototypes (means of pooled features).
    """
    u64, e64 = np.asarray(u, np.float64), np.asarray(e, np.float64)
    W, b = basis.W.astype(np.float64), basis.offset.astype(np.float64)
    Ph = l2_normalize(prototypes)  # [C, D]
    inv = 1.0 / np.maximum(np.linalg.norm(e64, axis=1), 1e-12)  # [n]
    WP = W @ Ph.T  # [k, C] <W_k, p^_c>
    concepts = u64[:, None, :] * WP.T[None] * inv[:, None, None]  # [n, C, k]
    offset = np.broadcast_to((Ph @ b)[None, :] * inv[:, None], (len(e64), len(Ph))).copy()  # [n, C]
    r = e64 - u64 @ W - b  # [n, D] residual of the pooled feature
    residual = (r @ Ph.T) * inv[:, None]
    score = 1.0 - distances(e64, prototypes, "cosine")  # [n, C] computed directly, not as the sum
    return ScoreTerms(concepts, offset, residual, score)


def label_problem(labels: np.ndarray) -> str | None:
    """Why a class table cannot be made from these labels, or None."""
    if len(labels) == 0 or not all(str(s) for s in labels):
        return ("the images have no class labels (a flat folder, or some images unlabelled), so there are no class "
                "prototypes to split; use a folder with one subfolder per class")
    if len(np.unique(labels)) < 2:
        return f"all images are in one class ({labels[0]}); the nearest-class-mean classifier needs at least 2 classes"
    return None


def class_contributions(u: np.ndarray, e: np.ndarray, basis: ConceptBasis, labels: np.ndarray) -> ClassTable:
    """The per-class table: each image's score to its own class prototype, split over the concepts,
    averaged over the class (prototypes = class means of ``e``).

    Raises:
        ValueError: :func:`label_problem` says why the labels cannot give a table.
    """
    y = np.asarray(labels)
    why = label_problem(y)
    if why:
        raise ValueError(why)
    classes, P = class_prototypes(np.asarray(e, np.float64), y)  # [C], [C, D]
    yi = np.searchsorted(classes, y)  # [N]
    C, k = len(classes), basis.k
    sums = {"concepts": np.zeros((C, k)), "offset": np.zeros(C), "residual": np.zeros(C), "score": np.zeros(C)}
    block = max(256, min(ROW_BLOCK, 4_000_000 // (C * k)))  # the [rows, C, k] terms stay ~32 MB
    for s in range(0, len(y), block):
        sl = slice(s, s + block)
        t = score_terms(u[sl], e[sl], basis, P)
        rows, own = np.arange(len(t.score)), yi[sl]
        onehot = np.zeros((C, len(own)))
        onehot[own, rows] = 1.0
        sums["concepts"] += onehot @ t.concepts[rows, own]
        sums["offset"] += onehot @ t.offset[rows, own]
        sums["residual"] += onehot @ t.residual[rows, own]
        sums["score"] += onehot @ t.score[rows, own]
    counts = np.bincount(yi, minlength=C)
    return ClassTable(classes, counts, sums["concepts"] / counts[:, None], sums["offset"] / counts,
                      sums["residual"] / counts, sums["score"] / counts)
