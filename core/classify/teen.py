"""TEEN: training-free calibration of few-shot prototypes towards the base-class prototypes (Wang et
al., "Few-Shot Class-Incremental Learning via Training-Free Prototype Calibration", NeurIPS 2023)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from core.classify.evaluation import MAX_TEST, _stratified_split, n_test_of_class, stratified_cap
from core.classify.prototypes import class_prototypes
from core.geometry.vectors import as_features, as_labels, l2_normalize


# ---- TEEN prototype calibration ---------------------------------------------------------------------
def teen_calibrate(
    base_protos: ArrayLike,
    new_protos: ArrayLike,
    alpha: float = 0.5,
    tau: float = 16.0,
    *,
    normalize: bool = True,
) -> np.ndarray:
    """TEEN: pull few-shot prototypes towards similar, well-estimated base prototypes.

    With ``S_{n,b} = cos(p_n, p_b)`` and ``w_{n,b} = exp(tau S_{n,b}) / sum_b' exp(tau S_{n,b'})``
    (a softmax over the B base classes), the paper's calibrated prototype is::

        p^_n = alpha * p_n + (1 - alpha) * sum_b w_{n,b} p_b

    ``normalize=True`` (default) follows the official code (wangkiw/TEEN, ``soft_calibration``):
    all prototypes are L2-normalised first and the shift ``sum_b w_{n,b} p_b`` is re-normalised
    before mixing, i.e. ``p^_n = alpha * p_n/|p_n| + (1 - alpha) * d_n/|d_n|`` with
    ``d_n = sum_b w_{n,b} p_b/|p_b|``. The code's ``shift_weight`` is ``1 - alpha``; its defaults
    are ``softmax_t = tau = 16``, ``shift_weight = 0.5`` (0.1 in its CIFAR-100 script).
    ``normalize=False`` is the formula above on the raw prototypes.

    Args:
        base_protos: ``[B, D]`` base-class prototypes.
        new_protos: ``[K, D]`` few-shot prototypes.
        alpha: weight of the original prototype, in ``[0, 1]`` (1 = no calibration).
        tau: softmax temperature (>= 0; larger = only the most similar base classes).
        normalize: official-code normalisation (see above).

    Returns:
        ``[K, D]`` calibrated prototypes (float64).
    """
    Pb = as_features(base_protos, "base_protos").astype(np.float64)  # [B, D]
    Pn = as_features(new_protos, "new_protos").astype(np.float64)  # [K, D]
    if Pb.shape[1] != Pn.shape[1]:
        raise ValueError(f"base_protos has D={Pb.shape[1]} but new_protos has D={Pn.shape[1]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    Pb_n, Pn_n = l2_normalize(Pb), l2_normalize(Pn)
    logits = tau * (Pn_n @ Pb_n.T)  # [K, B] scaled cosine similarities
    W = np.exp(logits - logits.max(axis=1, keepdims=True))
    W /= W.sum(axis=1, keepdims=True)  # [K, B] softmax over base classes
    if normalize:
        shift = l2_normalize(W @ Pb_n)  # [K, D]
        return alpha * Pn_n + (1.0 - alpha) * shift
    return alpha * Pn + (1.0 - alpha) * (W @ Pb)


def max_new_class_shots(y: ArrayLike, base_classes: Sequence[Any], test_size: float = 0.3) -> int:
    """The largest ``k_shot`` :func:`teen_experiment` accepts: the fewest training images a new (non-base)
    class keeps after the stratified split (at least 1)."""
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    new = ~np.isin(classes, np.asarray(list(base_classes)))
    if not new.any():
        raise ValueError("every class is a base class: leave at least one class as a new class")
    return max(1, min(int(n) - n_test_of_class(int(n), test_size) for n in counts[new]))


def teen_experiment(
    X: ArrayLike,
    y: ArrayLike,
    base_classes: Sequence[Any],
    k_shot: int = 5,
    alpha: float = 0.5,
    tau: float = 16.0,
    seed: int = 0,
    test_size: float = 0.3,
) -> dict[str, Any]:
    """Few-shot new classes with and without TEEN calibration, cosine NMC on frozen features.

    Every class is split into train/test (stratified, ``test_size``). Base prototypes use all the
    training images of the base classes; each other ("new") class gets a prototype from
    ``k_shot`` random training images. Both prototype sets are then scored on the same test images.

    Args:
        X: features ``[N, D]``.
        y: labels ``[N]``.
        base_classes: the labels treated as base classes; the rest are new classes.
        k_shot: training images per new class.
        alpha / tau: TEEN parameters (see :func:`teen_calibrate`).
        seed: seed of the split and of the shot sampling.
        test_size: per-class hold-out fraction.

    Returns:
        ``{"plain": {"base", "new", "all"}, "calibrated": {"base", "new", "all"}}`` accuracies,
        plus ``n_base_classes``, ``n_new_classes``, ``n_test_base``, ``n_test_new``, ``k_shot``,
        ``alpha``, ``tau``.
    """
    return teen_experiments(X, y, base_classes, k_shot, (alpha,), tau, seed, test_size)[0]


def teen_experiments(
    X: ArrayLike,
    y: ArrayLike,
    base_classes: Sequence[Any],
    k_shot: int,
    alphas: Sequence[float],
    tau: float = 16.0,
    seed: int = 0,
    test_size: float = 0.3,
) -> list[dict[str, Any]]:
    """:func:`teen_experiment` for each of ``alphas`` on one draw: the split, the shots, the base
    prototypes and the plain scores are made once and shared (the same numbers as one
    :func:`teen_experiment` call per alpha with this seed, at a fraction of the cost)."""
    X = as_features(X)
    y = as_labels(y, len(X))
    classes = np.unique(y)
    base = np.unique(np.asarray(base_classes))
    unknown = base[~np.isin(base, classes)]
    if len(unknown):
        raise ValueError(f"base_classes {unknown.tolist()} do not occur in y")
    new = classes[~np.isin(classes, base)]
    if len(base) == 0 or len(new) == 0:
        raise ValueError(f"need at least one base and one new class, got {len(base)} base and {len(new)} new")
    if k_shot < 1:
        raise ValueError(f"k_shot must be >= 1, got {k_shot}")

    rng = np.random.default_rng(seed)
    codes = np.searchsorted(classes, y)
    tr, te = _stratified_split(codes, test_size, rng)
    base_tr = tr[np.isin(y[tr], base)]
    _, P_base = class_prototypes(X[base_tr], y[base_tr])  # [B, D], order = base
    P_new = []
    for c in new:
        idx = tr[y[tr] == c]
        if len(idx) < k_shot:
            raise ValueError(f"class {c!r} has only {len(idx)} training images after the split, "
                             f"fewer than k_shot={k_shot}")
        P_new.append(X[rng.choice(idx, k_shot, replace=False)].astype(np.float64).mean(axis=0))
    P_new_arr = np.stack(P_new)  # [K, D]
    te = stratified_cap(te, codes, MAX_TEST, rng)  # at most MAX_TEST test images (a stratified sample)
    labels = np.concatenate([base, new])  # [B + K]

    Xte_n, yte = l2_normalize(X[te]), y[te]  # [T, D] unit rows, normalised once for every prototype set
    is_base_te = np.isin(yte, base)

    def accuracies(P: np.ndarray) -> dict[str, float]:
        # nearest prototype in cosine distance (1 - cos) = highest cosine
        correct = labels[np.argmax(Xte_n @ l2_normalize(P).T, axis=1)] == yte
        return {"base": float(correct[is_base_te].mean()), "new": float(correct[~is_base_te].mean()),
                "all": float(correct.mean())}

    plain = accuracies(np.vstack([P_base, P_new_arr]))
    info = dict(n_base_classes=len(base), n_new_classes=len(new), n_test_base=int(is_base_te.sum()),
                n_test_new=int((~is_base_te).sum()), k_shot=k_shot, tau=tau)
    return [{"plain": plain,
             "calibrated": accuracies(np.vstack([P_base, teen_calibrate(P_base, P_new_arr, float(a), tau)])),
             **info, "alpha": a} for a in alphas]
