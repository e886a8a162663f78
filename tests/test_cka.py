"""CKA against the HSIC formula with an explicit centering matrix, and its invariances."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.compare.cka import cka_matrix, layer_cka, linear_cka, rbf_cka


def _hsic_cka(K: np.ndarray, L: np.ndarray) -> float:
    """tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) with H = I - 11^T/N."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H) / np.sqrt(np.trace(K @ H @ K @ H) * np.trace(L @ H @ L @ H)))


def _rbf_kernel(X: np.ndarray, sigma_frac: float) -> np.ndarray:
    n = X.shape[0]
    d = np.array([[np.linalg.norm(X[i] - X[j]) for j in range(n)] for i in range(n)])
    sigma = sigma_frac * np.median(d[np.triu_indices(n, k=1)])
    return np.exp(-(d**2) / (2 * sigma**2))


@pytest.mark.parametrize("shape", [(40, 5, 7), (10, 30, 50)])  # N > D and N < D (Gram path)
def test_linear_cka_matches_hsic_formula(shape: tuple[int, int, int]) -> None:
    n, d1, d2 = shape
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d1))
    Y = X[:, :1] @ rng.normal(size=(1, d2)) + rng.normal(size=(n, d2))  # partly related
    want = _hsic_cka(X @ X.T, Y @ Y.T)
    assert linear_cka(X, Y) == pytest.approx(want, rel=1e-9)
    assert 0.0 < want < 1.0


def test_linear_cka_invariances() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 8)) + 3.0
    R, _ = np.linalg.qr(rng.normal(size=(8, 8)))  # orthogonal
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, X @ R) == pytest.approx(1.0)
    assert linear_cka(X, 3.0 * X) == pytest.approx(1.0)
    assert linear_cka(X, X + 7.0) == pytest.approx(1.0)  # centering
    assert linear_cka(torch.from_numpy(X), X[:, :4]) < 1.0


def test_rbf_cka_matches_formula_and_self_is_one() -> None:
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(25, 6)), rng.normal(size=(25, 3))
    assert rbf_cka(X, X) == pytest.approx(1.0)
    assert rbf_cka(X, Y, sigma_frac=0.8) == pytest.approx(_hsic_cka(_rbf_kernel(X, 0.8), _rbf_kernel(Y, 0.8)), rel=1e-9)
    R, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert rbf_cka(X, 2.0 * X @ R) == pytest.approx(1.0)  # bandwidth scales with the median distance


def test_cka_matrix_and_layer_cka() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 6))
    feats = [X, X @ np.linalg.qr(rng.normal(size=(6, 6)))[0], rng.normal(size=(30, 4))]
    for kind in ("linear", "rbf"):
        M = cka_matrix(feats, kind=kind)
        assert M.shape == (3, 3)
        np.testing.assert_allclose(M, M.T)
        np.testing.assert_allclose(np.diag(M), 1.0)
        assert M[0, 1] == pytest.approx(1.0) and M[0, 2] < 0.9
    assert cka_matrix(feats)[0, 2] == pytest.approx(linear_cka(X, feats[2]))
    assert cka_matrix(feats, kind="rbf")[1, 2] == pytest.approx(rbf_cka(feats[1], feats[2]))

    LC = layer_cka(feats, feats[:2])
    assert LC.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert LC[i, j] == pytest.approx(linear_cka(feats[i], feats[j]))


def test_cka_errors() -> None:
    X = np.random.default_rng(4).normal(size=(10, 3))
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(X, X[:9])
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        linear_cka(X[None], X)
    with pytest.raises(ValueError, match="constant"):
        linear_cka(X, np.ones((10, 2)))
    with pytest.raises(ValueError, match="same N"):
        cka_matrix([X, X[:5]])
    with pytest.raises(ValueError, match="kind"):
        cka_matrix([X, X], kind="cosine")  # type: ignore[arg-type]
