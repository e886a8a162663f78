"""Classifier evaluation and prototype distances at dataset scale: stated caps on the images scored
and fitted, and block-wise sums that equal the plain formulas."""
from __future__ import annotations

import numpy as np
import pytest

from core.classify import classifiers, evaluation
from core.classify.evaluation import evaluate, few_shot_curve, stratified_cap
from core.classify.incremental import class_incremental
from core.classify.prototypes import class_prototypes
from core.geometry import vectors
from core.geometry.vectors import class_sums, distances


def _data(n: int = 600, d: int = 12, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.choice(k, n, p=[0.6, 0.3, 0.1][:k] if k == 3 else None)
    X = (rng.normal(size=(k, d))[y] * 2 + rng.normal(size=(n, d))).astype(np.float32)
    return X, np.array([f"c{c}" for c in y])


def test_stratified_cap_keeps_each_class_share_and_every_class():
    rng = np.random.default_rng(1)
    y_idx = np.r_[np.zeros(900, int), np.ones(95, int), np.full(5, 2)]
    idx = np.arange(1000)
    got = stratified_cap(idx, y_idx, 100, rng)
    counts = np.bincount(y_idx[got], minlength=3)
    assert counts.tolist() == [90, 9, 1]  # 100 in all by share; the rarest class keeps one
    assert np.all(np.diff(got) > 0) and len(np.unique(got)) == len(got)
    assert stratified_cap(idx, y_idx, None, rng) is idx and stratified_cap(idx, y_idx, 1000, rng) is idx


def test_evaluate_scores_at_most_max_test_and_fits_at_most_max_train(monkeypatch):
    X, y = _data()
    small = evaluate(X, y, "knn")
    assert small.n_test + small.n_train == 600 and small.n_test > 100  # below the caps: the whole split
    monkeypatch.setattr(evaluation, "MAX_TEST", 50)
    info = classifiers._REGISTRY["knn"]
    monkeypatch.setitem(classifiers._REGISTRY, "knn", classifiers.ClassifierInfo(
        info.name, info.label, info.assumes, info.min_shots, info.incremental, info.factory, max_train=100))
    r = evaluate(X, y, "knn")
    assert r.n_test == len(r.y_true) == 50 and r.n_train == 100
    assert set(r.test_indices) <= set(small.test_indices)  # a sample of the same held-out split
    # the capped test set keeps the class shares of the split
    share = lambda lab: np.array([np.mean(lab == c) for c in ("c0", "c1", "c2")])  # noqa: E731
    np.testing.assert_allclose(share(r.y_true), share(small.y_true), atol=0.03)
    # NMC has no fit cap: all training images
    assert evaluate(X, y, "nmc").n_train == small.n_train


def test_few_shot_and_incremental_score_at_most_max_test(monkeypatch):
    X, y = _data()
    monkeypatch.setattr(evaluation, "MAX_TEST", 40)
    monkeypatch.setattr(evaluation, "FEW_SHOT_MAX_TEST", 40)
    rows = few_shot_curve(X, y, shots=(1,), methods=("nmc",), draws=2)
    assert rows and rows[0].n_draws == 2
    full = class_incremental(X, y, 3)
    assert full.n_test + full.n_train == 600 and full.n_test > 150  # below the cap: the whole 30 % split
    monkeypatch.setattr(evaluation, "INCREMENTAL_MAX_TEST", 40)
    res = class_incremental(X, y, 3)
    assert res.n_test == 40 and res.n_train == full.n_train and np.isfinite(res.final_accuracy)


def test_class_sums_and_blockwise_distances_equal_the_plain_formulas(monkeypatch):
    monkeypatch.setattr(vectors, "ROW_BLOCK", 7)  # many blocks, a ragged last one
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 6)).astype(np.float32)
    codes = rng.integers(0, 4, 50)
    ref = np.zeros((4, 6))
    np.add.at(ref, codes, X.astype(np.float64))
    np.testing.assert_allclose(class_sums(X, codes, 4), ref, rtol=1e-12)
    P = rng.normal(size=(4, 6))
    Xd = X.astype(np.float64)
    cos_ref = 1 - (Xd / np.linalg.norm(Xd, axis=1, keepdims=True)) @ (P / np.linalg.norm(P, axis=1, keepdims=True)).T
    eu_ref = np.sqrt(((Xd[:, None, :] - P[None]) ** 2).sum(-1))
    np.testing.assert_allclose(distances(X, P, "cosine"), cos_ref, atol=1e-12)
    np.testing.assert_allclose(distances(X, P, "euclidean"), eu_ref, atol=1e-9)
    classes, M = class_prototypes(X, np.array([f"k{c}" for c in codes]))
    np.testing.assert_allclose(M, (ref / np.bincount(codes)[:, None]).astype(np.float32), rtol=1e-6)
    assert M.dtype == np.float32 and classes.tolist() == ["k0", "k1", "k2", "k3"]


@pytest.mark.parametrize("name, cap", [("linear", 20_000), ("linear_svm", 10_000), ("knn", 20_000), ("ranpac", 2_000),
                                       ("lda", 20_000), ("fecam", 20_000),
                                       ("nmc", None)])
def test_registered_fit_caps(name, cap):
    assert classifiers.classifier_info(name).max_train == cap


def test_centred_product_equals_the_plain_formula_in_blocks(monkeypatch):
    monkeypatch.setattr(vectors, "ROW_BLOCK", 7)  # many blocks, a ragged last one
    rng = np.random.default_rng(5)
    A = rng.normal(3.0, 1.0, size=(50, 6))  # a large mean: centring must happen before the product
    B = rng.normal(size=(50, 4))
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    np.testing.assert_allclose(vectors.centred_product(A, B), Ac.T @ Bc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vectors.centred_product(A, A), Ac.T @ Ac, rtol=1e-12, atol=1e-12)
    got32 = vectors.centred_product(A.astype(np.float32), B.astype(np.float32))  # float32 blocks
    np.testing.assert_allclose(got32, Ac.T @ Bc, rtol=1e-4, atol=1e-4)
    assert got32.dtype == np.float64
