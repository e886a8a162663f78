"""Agreement of two backbones on the same images: their NMC predictions on the same test images (and
the images where they differ), and one image's nearest neighbours in both feature spaces."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from core.classify.evaluation import EvalResult
from core.geometry.neighbours import neighbours_of_row


@dataclass(frozen=True)
class Disagreement:
    """A test image on which two backbones' NMC predictions differ.

    Attributes:
        index: row in the feature sets.
        name: the image's name.
        true: its label.
        pred_a / pred_b: the two predictions.
    """

    index: int
    name: str
    true: str
    pred_a: str
    pred_b: str


@dataclass(frozen=True)
class PairAgreement:
    """How often two backbones' NMC predictions agree on the same test images.

    Attributes:
        a / b: backbone names.
        n_test: test images.
        agree: share of test images with the same prediction.
        both_correct / only_a / only_b / both_wrong: counts (``only_a``: A right, B wrong).
        disagreements: the images where the predictions differ, in test order.
    """

    a: str
    b: str
    n_test: int
    agree: float
    both_correct: int
    only_a: int
    only_b: int
    both_wrong: int
    disagreements: list[Disagreement] = field(default_factory=list)


def agreement(results: Mapping[str, EvalResult], names: Sequence[str]) -> list[PairAgreement]:
    """NMC agreement for every pair of backbones (in the order of ``results``).

    Args:
        results: backbone name -> its NMC :class:`EvalResult`, all on the same test images.
        names: the image name of every row of the feature sets (``FeatureSet.names``).

    Raises:
        ValueError: the results do not predict the same test images.
    """
    keys = list(results)
    if len(keys) < 2:
        raise ValueError(f"agreement needs at least 2 backbones, got {len(keys)}")
    ref = results[keys[0]]
    for k in keys[1:]:
        r = results[k]
        if not np.array_equal(r.test_indices, ref.test_indices) or not np.array_equal(r.y_true, ref.y_true):
            raise ValueError(f"{k} and {keys[0]} were evaluated on different test images; use the same labels, "
                             "protocol and seed")
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            ra, rb = results[a], results[b]
            same = ra.y_pred == rb.y_pred  # [T]
            ca, cb = ra.y_pred == ra.y_true, rb.y_pred == rb.y_true
            dis = [Disagreement(int(ra.test_indices[t]), names[int(ra.test_indices[t])], str(ra.y_true[t]),
                                str(ra.y_pred[t]), str(rb.y_pred[t])) for t in np.flatnonzero(~same)]
            out.append(PairAgreement(a, b, int(len(same)), float(same.mean()), int((ca & cb).sum()),
                                     int((ca & ~cb).sum()), int((~ca & cb).sum()), int((~ca & ~cb).sum()), dis))
    return out


@dataclass(frozen=True)
class SharedNeighbours:
    """One image's k nearest neighbours (cosine, itself excluded) in two backbones' feature spaces.

    Attributes:
        index: the image's row.
        a / b: ``[k]`` neighbour rows in A and in B, nearest first.
        sim_a / sim_b: ``[k]`` their cosine similarities.
        shared: rows in both lists (their share is the image's mutual k-NN overlap).
    """

    index: int
    a: np.ndarray
    b: np.ndarray
    sim_a: np.ndarray
    sim_b: np.ndarray
    shared: frozenset[int]

    @property
    def overlap(self) -> float:
        return len(self.shared) / len(self.a)


def shared_neighbours(XA: ArrayLike, XB: ArrayLike, i: int, k: int = 10) -> SharedNeighbours:
    """Image ``i``'s neighbours in ``XA [N, DA]`` and ``XB [N, DB]`` (same images) and those in common.
    Its overlap equals :func:`core.compare.indices.mutual_knn_overlap` at row ``i``."""
    na, nb = neighbours_of_row(XA, i, k), neighbours_of_row(XB, i, k)
    a, b = na.indices[0], nb.indices[0]
    return SharedNeighbours(i, a, b, na.similarities[0], nb.similarities[0],
                            frozenset(int(j) for j in np.intersect1d(a, b)))


@dataclass(frozen=True)
class AgreementMap:
    """What the agreement map draws: per image on the map, the share of its k nearest neighbours that two
    representations have in common.

    Attributes:
        rows: ``[n]`` rows of the compared images on the map: all of them up to ``max_images``, else a
            seeded sample (sorted), the one the mutual k-NN index uses (so ``overlap.mean()`` is that
            index's value).
        overlap: ``[n]`` each mapped image's overlap, neighbours searched among the mapped images.
        k: neighbours.
        n_total: images compared.
    """

    rows: np.ndarray
    overlap: np.ndarray
    k: int
    n_total: int

    @property
    def sampled(self) -> bool:
        return len(self.rows) < self.n_total

    def neighbours(self, XA: ArrayLike, XB: ArrayLike, j: int) -> SharedNeighbours:
        """Mapped image ``j``'s neighbours in both spaces, among the mapped images (indices into ``rows``),
        consistent with ``overlap[j]``."""
        A, B = np.asarray(XA), np.asarray(XB)
        return shared_neighbours(A[self.rows], B[self.rows], j, self.k)


def agreement_map(XA: ArrayLike, XB: ArrayLike, k: int = 10, max_images: int | None = None,
                  seed: int = 0) -> AgreementMap:
    """Each image's mutual k-NN overlap between ``XA [N, DA]`` and ``XB [N, DB]`` (the same images), for
    the agreement map. Above ``max_images`` (default :data:`core.compare.indices.MAX_KNN_IMAGES`, the
    mutual k-NN index's own limit) a seeded sample of that many images is mapped and its neighbours are
    searched among the sample, as the index does: the exact neighbour graphs of 100,000 images cost
    O(N^2 D) (about an hour here)."""
    from core.compare.indices import MAX_KNN_IMAGES, mutual_knn_overlap

    A, B = np.asarray(XA), np.asarray(XB)
    if len(A) != len(B):
        raise ValueError(f"XA has {len(A)} images but XB has {len(B)}; the agreement map compares the same images")
    cap = MAX_KNN_IMAGES if max_images is None else max_images
    n = len(A)
    rows = np.arange(n) if n <= cap else np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
    kk = min(k, len(rows) - 1)
    overlap = mutual_knn_overlap(A[rows], B[rows], kk)  # [n] neighbours among the mapped images
    return AgreementMap(rows, overlap, kk, n)
