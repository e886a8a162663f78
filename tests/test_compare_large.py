"""Compare at 100,000 images: no [N, N] matrix. Linear CKA at full N in feature space, RBF CKA and
the silhouette on a stated seeded sample, layer-by-layer CKA with the minibatch estimator."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from core.compare import cka as ckam
from core.compare import metrics as comparison
from core.compare.cka import (
    cka_matrix,
    layer_cka,
    linear_cka,
    minibatch_cka,
    rbf_cka,
    unbiased_hsic,
)


def _hsic1_reference(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC of Song et al. (2012), Eq. 5, written out with loops' worth of sums."""
    m = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    one = np.ones(m)
    return float((np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((m - 1) * (m - 2))
                  - 2 / (m - 2) * (one @ Kt @ Lt @ one)) / (m * (m - 3)))


def test_unbiased_hsic_matches_the_paper_formula():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    assert unbiased_hsic(X @ X.T, Y @ Y.T) == pytest.approx(_hsic1_reference(X @ X.T, Y @ Y.T), rel=1e-10)


def test_minibatch_cka_is_the_ratio_of_mean_unbiased_hsics_and_close_to_full_cka():
    rng = np.random.default_rng(1)
    n = 4_096
    A = [rng.normal(size=(n, 8)) for _ in range(2)]
    B = [A[0] @ rng.normal(size=(8, 6)) + 0.5 * rng.normal(size=(n, 6)), rng.normal(size=(n, 4))]
    got = minibatch_cka(A, B, batch_size=512, max_batches=4, seed=3)
    order = np.random.default_rng(3).permutation(n)[:2048].reshape(4, 512)
    for i in range(2):
        for j in range(2):
            hs = [[_hsic1_reference(*(np.asarray(F)[np.sort(r)] @ np.asarray(F)[np.sort(r)].T for F in pair))
                   for r in order] for pair in ((A[i], B[j]), (A[i], A[i]), (B[j], B[j]))]
            want = np.mean(hs[0]) / np.sqrt(np.mean(hs[1]) * np.mean(hs[2]))
            assert got[i, j] == pytest.approx(want, rel=1e-9)
    full = np.array([[linear_cka(a, b) for b in B] for a in A])
    np.testing.assert_allclose(got, full, atol=0.03)  # the estimator tracks the full-N value


def test_layer_cka_switches_to_minibatches_above_the_limit(monkeypatch):
    rng = np.random.default_rng(2)
    A = [rng.normal(size=(600, 4))]
    B = [A[0] @ rng.normal(size=(4, 3))]
    monkeypatch.setattr(ckam, "LAYER_FULL_MAX_N", 500)
    monkeypatch.setattr(ckam, "MINIBATCH", 100)
    got = layer_cka(A, B)
    np.testing.assert_allclose(got, minibatch_cka(A, B, batch_size=100, max_batches=ckam.MAX_MINIBATCHES))
    assert ckam.layer_cka_sample_size(600) == 600


def test_rbf_cka_matrix_uses_a_stated_sample(monkeypatch):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(300, 5)), rng.normal(size=(300, 4))
    monkeypatch.setattr(ckam, "RBF_MAX_N", 120)
    rows = ckam._sample(300, 120)
    assert len(rows) == ckam.rbf_sample_size(300) == 120
    got = cka_matrix([X, Y], kind="rbf")
    assert got[0, 1] == pytest.approx(rbf_cka(X[rows], Y[rows]), rel=1e-12)


def test_linear_cka_at_100k_inputs_builds_no_n_by_n_matrix():
    rng = np.random.default_rng(4)
    n = 100_000
    X = rng.normal(size=(n, 32)).astype(np.float32)
    Y = X[:, :16] @ rng.normal(size=(16, 24)).astype(np.float32) + rng.normal(size=(n, 24)).astype(np.float32)
    tracemalloc.start()
    got = cka_matrix([X, Y], kind="linear")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200 * 2**20  # an [N, N] float64 Gram would be 80 GB
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)  # reference, feature-space form written out
    Xc, Yc = Xc.astype(np.float64), Yc.astype(np.float64)
    want = np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    assert got[0, 1] == pytest.approx(want, rel=1e-6)  # float32 features: float32 block products
    exact = cka_matrix([X.astype(np.float64), Y.astype(np.float64)], kind="linear")  # float64 throughout
    assert exact[0, 1] == pytest.approx(want, rel=1e-10)


def test_silhouette_on_a_seeded_sample_above_the_limit(monkeypatch):
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=400)
    X = rng.normal(size=(400, 6)) + y[:, None]
    monkeypatch.setattr(comparison, "SILHOUETTE_MAX_N", 150)
    rows = np.sort(np.random.default_rng(0).choice(400, size=150, replace=False))
    assert comparison.silhouette_sample_size(400) == 150
    assert comparison.silhouette(X, y) == pytest.approx(silhouette_score(X[rows], y[rows], metric="cosine"), rel=1e-12)
