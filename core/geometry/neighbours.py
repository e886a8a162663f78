"""Nearest neighbours in feature space (cosine) and the table behind the embedding-map export.

Arrays in, arrays (or a DataFrame) out; nothing here imports Streamlit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike

from core.geometry.vectors import l2_normalize, work_dtype

__all__ = ["Neighbours", "cosine_neighbours", "neighbours_of_row", "neighbour_vote", "majority_vote",
           "projection_table"]

_CHUNK = 512  # query rows per [chunk, N] similarity block


@dataclass(frozen=True)
class Neighbours:
    """The k nearest reference rows of each query, most similar first.

    Attributes:
        indices: ``[M, k]`` rows of the reference set.
        similarities: ``[M, k]`` cosine similarities, in ``[-1, 1]``, descending along each row.
    """

    indices: np.ndarray
    similarities: np.ndarray


def cosine_neighbours(
    queries: ArrayLike,
    X: ArrayLike,
    k: int = 8,
    exclude: Sequence[int | None] | None = None,
) -> Neighbours:
    """The ``k`` most cosine-similar rows of ``X`` for every query.

    Args:
        queries: ``[M, D]`` query features.
        X: ``[N, D]`` reference features.
        k: neighbours per query (capped at the number of eligible rows).
        exclude: one entry per query: a row of ``X`` to leave out (the query itself when it is a
            member of ``X``) or ``None``.

    Returns:
        :class:`Neighbours` with ``[M, k']`` arrays, ``k' = min(k, N - (1 if anything is excluded))``.

    Raises:
        ValueError: bad shapes, ``k < 1``, or an ``exclude`` entry out of range.
    """
    Q = np.asarray(queries)
    R = np.asarray(X)
    if Q.ndim != 2 or R.ndim != 2 or Q.shape[1] != R.shape[1]:
        raise ValueError(f"queries [M, D] and X [N, D] must share D, got {Q.shape} and {R.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if exclude is not None and len(exclude) != len(Q):
        raise ValueError(f"exclude needs one entry per query ({len(Q)}), got {len(exclude)}")
    n = len(R)
    any_excluded = exclude is not None and any(e is not None for e in exclude)
    kk = min(k, n - (1 if any_excluded else 0))
    if kk < 1:
        raise ValueError(f"X has {n} rows: no neighbours left after excluding the query itself")
    idx = np.empty((len(Q), kk), dtype=np.int64)
    sim = np.empty((len(Q), kk), dtype=np.float64)
    dt = work_dtype(Q, R)  # float32 features: float32 products (twice the speed, half the block)
    Rn = l2_normalize(R, dtype=dt)  # [N, D] unit rows, once
    for s in range(0, len(Q), _CHUNK):
        S = l2_normalize(Q[s:s + _CHUNK], dtype=dt) @ Rn.T  # [m, N] cosine similarities
        if exclude is not None:
            for j, e in enumerate(exclude[s:s + _CHUNK]):
                if e is not None:
                    if not 0 <= e < n:
                        raise ValueError(f"exclude entry {e} is not a row of X (0..{n - 1})")
                    S[j, e] = -np.inf
        top = torch.from_numpy(S).topk(kk, dim=1, sorted=False).indices.numpy()  # [m, kk] unordered
        vals = np.take_along_axis(S, top, axis=1)
        order = np.lexsort((top, -vals), axis=1)  # most similar first; equal ones by row
        idx[s:s + len(S)] = np.take_along_axis(top, order, axis=1)
        sim[s:s + len(S)] = np.take_along_axis(vals, order, axis=1)
    return Neighbours(idx, sim)


def neighbours_of_row(X: ArrayLike, i: int, k: int, also_exclude: Sequence[int] = ()) -> Neighbours:
    """The ``k`` most cosine-similar rows of ``X [N, D]`` to its own row ``i``, leaving out row ``i``
    and the rows in ``also_exclude`` (e.g. other copies of the same picture, which are not neighbours).

    Returns:
        :class:`Neighbours` with ``[1, k']`` arrays (``k'`` = ``k`` or fewer when rows run out).
    """
    skip = {int(j) for j in also_exclude if int(j) != i}
    nb = cosine_neighbours(np.asarray(X)[i:i + 1], X, k + len(skip), exclude=[i])
    keep = ~np.isin(nb.indices[0], sorted(skip))  # [k + len(skip)]
    return Neighbours(nb.indices[:, keep][:, :k], nb.similarities[:, keep][:, :k])


def neighbour_vote(queries: ArrayLike, X: ArrayLike, labels: Sequence[str], k: int = 5) -> list[str]:
    """The majority label among the ``k`` cosine-nearest rows of ``X`` for every query.

    Args:
        queries: ``[M, D]``.
        X: ``[N, D]`` reference features.
        labels: ``[N]`` one label per row of ``X``.
        k: neighbours that vote (capped at N).

    Returns:
        ``M`` labels; a tie goes to the label that sorts first.
    """
    lab = np.asarray(labels)
    if len(lab) != len(np.asarray(X)):
        raise ValueError(f"labels has {len(lab)} entries for {len(np.asarray(X))} rows of X")
    classes, codes = np.unique(lab, return_inverse=True)  # sorted labels, [N] code of each row
    top = cosine_neighbours(queries, X, k=k).indices  # [M, k]
    return [str(c) for c in classes[majority_vote(codes[top], len(classes))]]


def majority_vote(neighbour_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``[M]`` the most frequent class code in each row of ``neighbour_codes [M, k]`` (codes ``0..n_classes-1``);
    a tie goes to the smallest code, as scikit-learn's k-NN vote."""
    votes = np.zeros((len(neighbour_codes), n_classes), dtype=np.int64)  # [M, K]
    rows = np.arange(len(neighbour_codes))
    for j in range(neighbour_codes.shape[1]):  # one neighbour rank at a time: no (row, code) repeats within it
        votes[rows, neighbour_codes[:, j]] += 1
    return np.argmax(votes, axis=1)


def projection_table(
    coords: ArrayLike,
    names: Sequence[str],
    paths: Sequence[str | None],
    labels: Sequence[str],
    source: Sequence[str] | str = "dataset",
) -> pd.DataFrame:
    """The map coordinates as a table: ``name, path, label, source, x, y[, z]``.

    Args:
        coords: ``[N, 2]`` or ``[N, 3]``.
        names / paths / labels: one per row (``path`` is empty for uploads held in memory).
        source: ``"dataset"`` / ``"upload"`` per row, or one value for all.
    """
    C = np.asarray(coords, dtype=np.float64)
    if C.ndim != 2 or C.shape[1] not in (2, 3):
        raise ValueError(f"coords must be [N, 2] or [N, 3], got shape {C.shape}")
    n = len(C)
    src = [source] * n if isinstance(source, str) else list(source)
    for what, seq in (("names", names), ("paths", paths), ("labels", labels), ("source", src)):
        if len(seq) != n:
            raise ValueError(f"{what} has {len(seq)} entries for {n} coordinate rows")
    df = pd.DataFrame({"name": list(names), "path": ["" if p is None else str(p) for p in paths],
                       "label": list(labels), "source": src})
    for j, axis in enumerate("xyz"[: C.shape[1]]):
        df[axis] = C[:, j]
    return df
