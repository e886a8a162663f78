"""Are the concepts faithful? Two measures, both on the pooled features the classifier sees.

- :func:`variance_explained`: the share of the pooled features' variance that the concepts
  reconstruct, ``1 - sum_i |e_i - (u_i W + b)|^2 / sum_i |e_i - mean e|^2`` (can be negative when the
  reconstruction is worse than the mean).
- :func:`deletion_test`: deleting a concept from an image removes its term from the pooled feature,
  ``e' = e - u_k W_k`` (the residual stays, as in CRAFT's concept deletion); the nearest-class-mean
  accuracy of each class (leave-one-out: an image is scored against prototypes built without it; the
  prototypes themselves are never edited) should drop more when the class's top concept is deleted
  than when another concept is (the mean over all other concepts: the expected drop of a random one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.concepts.contributions import ClassTable, label_problem
from core.concepts.methods import ConceptBasis
from core.geometry.vectors import ROW_BLOCK, class_sums, l2_normalize


def variance_explained(e: np.ndarray, u: np.ndarray, basis: ConceptBasis) -> float:
    """Share of the variance of the pooled features ``e [N, D]`` reconstructed by ``u [N, k] W + b``."""
    sse = sst = 0.0
    mean = np.asarray(e, np.float64).mean(axis=0)
    for s in range(0, len(e), ROW_BLOCK):
        ei = np.asarray(e[s:s + ROW_BLOCK], np.float64)
        r = ei - (np.asarray(u[s:s + ROW_BLOCK], np.float64) @ basis.W.astype(np.float64) + basis.offset)
        sse += float((r * r).sum())
        sst += float(((ei - mean) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")


def loo_nmc_correct(e: np.ndarray, labels: np.ndarray,
                    minus: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``[N]`` bool: is each image right under the cosine NMC, leave-one-out?

    Prototypes are the class means of ``e [N, D]``; image ``i``'s own class prototype leaves it out
    (``(n_c p_c - e_i) / (n_c - 1)``). With ``minus = (coef [N], direction [D])`` the features scored
    are ``e - coef direction`` (a concept deleted); the prototypes always come from ``e``.

    Raises:
        ValueError: a class with a single image (it has no leave-one-out prototype).
    """
    y = np.asarray(labels)
    classes, yi = np.unique(y, return_inverse=True)
    counts = np.bincount(yi)
    if counts.min() < 2:
        raise ValueError(f"class {classes[counts.argmin()]} has one image: a leave-one-out prototype needs two per class")
    sums = class_sums(e, yi, len(classes))  # [C, D] float64
    Ph = l2_normalize(sums / counts[:, None])  # [C, D]
    out = np.empty(len(y), bool)
    for s in range(0, len(y), ROW_BLOCK):
        sl = slice(s, s + ROW_BLOCK)
        ei = np.asarray(e[sl], np.float64)  # [b, D]
        x = ei if minus is None else ei - np.asarray(minus[0][sl], np.float64)[:, None] * minus[1]
        xn = l2_normalize(x)
        S = xn @ Ph.T  # [b, C]
        own = yi[sl]
        loo = l2_normalize(sums[own] - ei)  # [b, D] own prototype without the image (the 1/(n_c - 1) cancels)
        S[np.arange(len(own)), own] = (xn * loo).sum(axis=1)
        out[sl] = S.argmax(axis=1) == own
    return out


@dataclass
class DeletionResult:
    """Per class: accuracy with nothing deleted, with its top concept deleted, and the mean over the others.

    Attributes:
        classes: ``[C]``; top_concept: ``[C]``.
        accuracy: ``[C]`` leave-one-out NMC accuracy of the class's images.
        accuracy_top: ``[C]`` the same with the class's top concept deleted from its images.
        accuracy_other: ``[C]`` the mean over every other concept deleted instead.
    """

    classes: np.ndarray
    top_concept: np.ndarray
    accuracy: np.ndarray
    accuracy_top: np.ndarray
    accuracy_other: np.ndarray

    @property
    def drop_top(self) -> np.ndarray:
        return self.accuracy - self.accuracy_top

    @property
    def drop_other(self) -> np.ndarray:
        return self.accuracy - self.accuracy_other

    @property
    def classes_where_top_drops_more(self) -> int:
        return int((self.drop_top > self.drop_other).sum())

    def summary(self) -> dict:
        return {"nmc_accuracy": float(self.accuracy.mean()), "mean_drop_top": float(self.drop_top.mean()),
                "mean_drop_random": float(self.drop_other.mean()),
                "classes_top_drops_more": self.classes_where_top_drops_more, "classes": len(self.classes)}


def deletion_problem(labels: np.ndarray) -> str | None:
    """Why the deletion test cannot run on these labels, or None."""
    why = label_problem(np.asarray(labels))
    if why:
        return why
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        return f"class {classes[counts.argmin()]} has one image: the leave-one-out accuracy needs two per class"
    return None


def deletion_test(e: np.ndarray, u: np.ndarray, basis: ConceptBasis, labels: np.ndarray, table: ClassTable) -> DeletionResult:
    """Per-class accuracy drop when the class's top concept (``table.top_concept``) is deleted from the
    class's images, against the mean drop over the other concepts (module docstring).

    Raises:
        ValueError: :func:`deletion_problem` says why not.
    """
    y = np.asarray(labels)
    why = deletion_problem(y)
    if why:
        raise ValueError(why)
    classes, yi = np.unique(y, return_inverse=True)
    if not np.array_equal(classes, table.classes):
        raise ValueError("the class table was made from other labels")
    C, k = len(classes), basis.k
    counts = np.bincount(yi, minlength=C)

    def per_class(correct: np.ndarray) -> np.ndarray:
        return np.bincount(yi, weights=correct, minlength=C) / counts

    acc = per_class(loo_nmc_correct(e, y))
    acc_k = np.zeros((k, C))  # accuracy of each class with concept j deleted from every image
    W = basis.W.astype(np.float64)
    for j in range(k):
        acc_k[j] = per_class(loo_nmc_correct(e, y, minus=(u[:, j], W[j])))
    top = table.top_concept
    acc_top = acc_k[top, np.arange(C)]
    acc_other = (acc_k.sum(axis=0) - acc_top) / (k - 1)
    return DeletionResult(classes, top, acc, acc_top, acc_other)
