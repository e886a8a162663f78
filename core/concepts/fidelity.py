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


def deletion_correct(e: np.ndarray, u: np.ndarray, W: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[k + 1, N]`` bool: :func:`loo_nmc_correct` with nothing deleted (row 0) and with each concept ``j``
    deleted from every image (row ``j + 1``), in one pass over ``e``.

    The edited features are never formed: with ``x = e - u_j W_j``, ``<x, p> = <e, p> - u_j <W_j, p>`` and
    ``|x|^2 = |e|^2 - 2 u_j <e, W_j> + u_j^2 |W_j|^2``, so one block of products (``e`` against the
    prototypes, the concepts and the own class's sum) serves every concept (tested against the loop).
    """
    y = np.asarray(labels)
    classes, yi = np.unique(y, return_inverse=True)
    counts = np.bincount(yi)
    if counts.min() < 2:
        raise ValueError(f"class {classes[counts.argmin()]} has one image: a leave-one-out prototype needs two per class")
    W64 = np.asarray(W, np.float64)  # [k, D]
    k = len(W64)
    sums = class_sums(e, yi, len(classes))  # [C, D] float64
    Ph = l2_normalize(sums / counts[:, None])  # [C, D]
    WP = W64 @ Ph.T  # [k, C]
    WS = W64 @ sums.T  # [k, C]
    ww = (W64 * W64).sum(axis=1)  # [k]
    ss = (sums * sums).sum(axis=1)  # [C]
    out = np.empty((k + 1, len(y)), bool)
    for s in range(0, len(y), ROW_BLOCK):
        sl = slice(s, s + ROW_BLOCK)
        E = np.asarray(e[sl], np.float64)  # [b, D]
        own = yi[sl]
        rows = np.arange(len(own))
        U = np.concatenate([np.zeros((len(own), 1)), np.asarray(u[sl], np.float64)], axis=1)  # [b, k + 1]; column 0: none
        Wp = np.concatenate([np.zeros((1, len(classes))), WP])  # [k + 1, C]
        Ws = np.concatenate([np.zeros((1, len(classes))), WS])
        EP, EW = E @ Ph.T, E @ W64.T  # [b, C], [b, k]
        EW1 = np.concatenate([np.zeros((len(own), 1)), EW], axis=1)  # [b, k + 1]
        ww1 = np.concatenate([[0.0], ww])
        ee = (E * E).sum(axis=1)  # [b]
        es = (E * sums[own]).sum(axis=1)  # [b] <e, own class sum>
        loo_norm = np.sqrt(np.maximum(ss[own] - 2 * es + ee, 1e-300))  # [b] |sum - e|
        for j in range(k + 1):
            xn = np.sqrt(np.maximum(ee - 2 * U[:, j] * EW1[:, j] + U[:, j] ** 2 * ww1[j], 1e-300))  # [b] |x|
            S = (EP - U[:, j, None] * Wp[j][None, :]) / xn[:, None]  # [b, C] cosines to the prototypes
            # own class: the prototype without the image, <x, sum - e> = <e, sum> - |e|^2 - u_j (<W_j, sum> - <W_j, e>)
            S[rows, own] = (es - ee - U[:, j] * (Ws[j, own] - EW1[:, j])) / (xn * loo_norm)
            out[j, sl] = S.argmax(axis=1) == own
    return out


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
    correct = deletion_correct(e, u, basis.W, y)  # [k + 1, N]
    acc_all = np.stack([np.bincount(yi, weights=c, minlength=C) / counts for c in correct])  # [k + 1, C]
    acc, acc_k = acc_all[0], acc_all[1:]
    top = table.top_concept
    acc_top = acc_k[top, np.arange(C)]
    acc_other = (acc_k.sum(axis=0) - acc_top) / (k - 1)
    return DeletionResult(classes, top, acc, acc_top, acc_other)
