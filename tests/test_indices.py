"""core.compare.indices against the formulas written out here in numpy with N x N kernels (Song et al.'s
unbiased HSIC, the platonic-representation mutual k-NN and CKNNA definitions) and scipy's orthogonal
Procrustes; bootstrap draws, permutation baselines and the matrix over backbones."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

from core.compare import indices as I


def hsic1(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012, eq. 5."""
    n = len(K)
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    return float((np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
                  - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3)))


def ref_cka_unbiased(X, Y) -> float:
    K, L = X @ X.T, Y @ Y.T
    return hsic1(K, L) / np.sqrt(hsic1(K, K) * hsic1(L, L))


def unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def knn_masks(X, k):
    S = unit(X) @ unit(X).T
    np.fill_diagonal(S, -np.inf)
    idx = np.argsort(-S, axis=1)[:, :k]
    M = np.zeros_like(S)
    M[np.arange(len(X))[:, None], idx] = 1.0
    return M


def ref_mutual_knn(X, Y, k) -> float:
    return float((knn_masks(X, k) * knn_masks(Y, k)).sum(1).mean() / k)


def ref_cknna(X, Y, k) -> float:
    K, L = unit(X) @ unit(X).T, unit(Y) @ unit(Y).T
    mK, mL = knn_masks(X, k), knn_masks(Y, k)
    m = mK * mL
    return hsic1(m * K, m * L) / np.sqrt(hsic1(mK * K, mK * K) * hsic1(mL * L, mL * L))


def ref_procrustes(X, Y) -> float:
    A, B = X - X.mean(0), Y - Y.mean(0)
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    d = max(A.shape[1], B.shape[1])
    A = np.pad(A, ((0, 0), (0, d - A.shape[1])))
    B = np.pad(B, ((0, 0), (0, d - B.shape[1])))
    R, _ = orthogonal_procrustes(A, B)
    return float(np.linalg.norm(A @ R - B) ** 2)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 12))
    Y = np.tanh(X @ rng.normal(size=(12, 7))) + 0.3 * rng.normal(size=(60, 7)) + 2.0  # related, offset, other D
    return X, Y


def test_point_estimates_equal_the_written_out_formulas(pair):
    X, Y = pair
    assert I.cka_unbiased(X, Y) == pytest.approx(ref_cka_unbiased(X, Y), abs=1e-10)
    assert I.cka_unbiased(X.astype(np.float32), Y) == pytest.approx(ref_cka_unbiased(X, Y), abs=1e-5)
    for k in (1, 5, 10):
        assert I.mutual_knn(X, Y, k) == pytest.approx(ref_mutual_knn(X, Y, k), abs=1e-12)
    for k in (2, 5, 10):
        assert I.cknna(X, Y, k) == pytest.approx(ref_cknna(X, Y, k), abs=1e-10)
    assert I.procrustes_distance(X, Y) == pytest.approx(ref_procrustes(X, Y), abs=1e-10)
    # fewer images than dimensions: the principal-direction shortcut is exact
    rng = np.random.default_rng(1)
    W, Z = rng.normal(size=(20, 50)), rng.normal(size=(20, 30))
    Z[:, :10] += W[:, :10]
    assert I.cka_unbiased(W, Z) == pytest.approx(ref_cka_unbiased(W, Z), abs=1e-10)
    assert I.procrustes_distance(W, Z) == pytest.approx(ref_procrustes(W, Z), abs=1e-10)


def test_invariances_and_extremes(pair):
    X, Y = pair
    Q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(12, 12)))
    assert I.cka_unbiased(X, 3 * X @ Q + 1) == pytest.approx(1.0, abs=1e-10)
    assert I.procrustes_distance(X, 3 * X @ Q + 1) == pytest.approx(0.0, abs=1e-10)
    assert I.mutual_knn(X, X @ Q, 5) == 1.0 and I.cknna(X, X, 5) == pytest.approx(1.0)
    assert 0.0 <= I.procrustes_distance(X, Y) <= 2.0


def test_a_shuffle_permutes_the_sparse_kernel_as_recomputing_would(pair):
    X, Y = pair
    p = np.random.default_rng(7).permutation(len(X))
    c = I._Cknna(I._knn(X, 6), I._knn(Y, 6))
    assert c.shuffled(p) == pytest.approx(ref_cknna(X, Y[p], 6), abs=1e-10)
    assert c.value(np.ones(len(X))) == pytest.approx(ref_cknna(X, Y, 6), abs=1e-10)


def test_a_bootstrap_draw_never_pairs_copies_of_an_image(pair):
    X, Y = pair
    rng = np.random.default_rng(3)
    draw = rng.integers(0, len(X), len(X))
    w = np.bincount(draw, minlength=len(X)).astype(float)
    same = draw[:, None] == draw[None, :]  # positions holding copies of one image

    def masked(K):
        K = K[np.ix_(draw, draw)].copy()
        K[same] = 0.0  # copies are not pairs (the diagonal included)
        return K

    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    K, L = masked(Xc @ Xc.T), masked(Yc @ Yc.T)
    assert I._cka_unbiased(Xc, Yc, w) == pytest.approx(hsic1(K, L) / np.sqrt(hsic1(K, K) * hsic1(L, L)), abs=1e-10)
    # mutual k-NN: the graph of the full set, images reweighted
    o = (knn_masks(X, 5) * knn_masks(Y, 5)).sum(1) / 5
    e = I.estimate("mutual_knn", X, Y, k=5, n_boot=0, n_perm=0)
    assert e.value == pytest.approx(o.mean()) and np.isnan(e.ci_low) and np.isnan(e.baseline)
    # CKNNA on a draw: the full set's masked kernels, rows and columns resampled, copies unpaired
    Kc, Lc = unit(X) @ unit(X).T, unit(Y) @ unit(Y).T
    mK, mL = knn_masks(X, 5), knn_masks(Y, 5)
    m = mK * mL
    ref = hsic1(masked(m * Kc), masked(m * Lc)) / np.sqrt(hsic1(masked(mK * Kc), masked(mK * Kc))
                                                          * hsic1(masked(mL * Lc), masked(mL * Lc)))
    c = I._Cknna(I._knn(X, 5), I._knn(Y, 5))
    assert c.value(w) == pytest.approx(ref, abs=1e-10)
    # Procrustes on a draw: the drawn rows (copies repeated), centred on their own mean
    assert I._procrustes(Xc, Yc, w) == pytest.approx(ref_procrustes(X[draw], Y[draw]), abs=1e-10)


def test_permutation_baseline_and_interval():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 6))
    Y = X @ rng.normal(size=(6, 6)) + 0.5 * rng.normal(size=(200, 6))
    for name in I.INDICES:
        e = I.estimate(name, X, Y, k=10, n_boot=100, n_perm=50, seed=0)
        assert e.ci_low <= e.value <= e.ci_high, name
        assert e.p_value == pytest.approx(1 / 51), name  # no shuffle comes close
        better = e.value > e.baseline_high if I.INDICES[name].higher_is_similar else e.value < e.baseline_high
        assert better, name
        assert (e.n_images, e.n_boot, e.n_perm) == (200, 100, 50)
    # unrelated representations: the baseline is where the value lands; mutual k-NN near chance k / (N - 1)
    Z = rng.normal(size=(200, 6))
    e = I.estimate("mutual_knn", X, Z, k=10, n_boot=50, n_perm=200, seed=1)
    assert e.baseline == pytest.approx(10 / 199, abs=0.01) and e.p_value > 0.01
    # the same seed gives the same numbers
    assert I.estimate("cka_unbiased", X, Y, seed=5, n_boot=20, n_perm=20) == I.estimate(
        "cka_unbiased", X, Y, seed=5, n_boot=20, n_perm=20)


def test_permuted_neighbour_lists_are_those_of_the_shuffled_rows(pair):
    X, Y = pair
    p = np.random.default_rng(6).permutation(len(X))
    nb = I.knn_graph(Y, 5)
    inv = np.argsort(p)
    assert np.array_equal(np.sort(inv[nb[p]], 1), np.sort(I.knn_graph(Y[p], 5), 1))


def test_index_matrix_and_errors(pair):
    X, Y = pair
    M = I.index_matrix("cka_unbiased", [X, Y, X], ["a", "b", "c"], n_boot=10, n_perm=10)
    assert M.value.shape == (3, 3) and np.allclose(M.value, M.value.T) and np.allclose(np.diag(M.value), 1.0)
    assert M.value[0, 2] == pytest.approx(1.0) and M.value[0, 1] == pytest.approx(I.cka_unbiased(X, Y))
    assert set(M.estimates) == {(0, 1), (0, 2), (1, 2)}
    assert I.index_matrix("procrustes", [X, Y], ["a", "b"], n_boot=0, n_perm=0).value[0, 0] == 0.0
    with pytest.raises(ValueError, match="unknown similarity index"):
        I.estimate("svcca", X, Y)
    with pytest.raises(ValueError, match="same images"):
        I.cka_unbiased(X, Y[:-1])
    with pytest.raises(ValueError, match="k >= 2"):
        I.cknna(X, Y, 1)


def test_shared_neighbours_of_one_image_give_its_overlap(pair):
    from core.compare.agreement import shared_neighbours

    X, Y = pair
    o = I.mutual_knn_overlap(X, Y, 7)
    for i in (0, 13, 59):
        sh = shared_neighbours(X, Y, i, 7)
        assert sh.overlap == pytest.approx(o[i]) and i not in sh.a and i not in sh.b
        assert sh.shared == frozenset(set(sh.a.tolist()) & set(sh.b.tolist()))


def test_gram_draws_equal_the_feature_space_formula(pair):
    X, Y = pair
    A, B = X - X.mean(0), Y - Y.mean(0)
    g = I._GramCka(A, B)
    w = np.bincount(np.random.default_rng(8).integers(0, len(X), len(X)), minlength=len(X)).astype(float)
    assert g.value(w) == pytest.approx(I._cka_unbiased(A, B, w), abs=1e-10)
    p = np.random.default_rng(9).permutation(len(X))
    assert g.shuffled(p) == pytest.approx(I.cka_unbiased(X, Y[p]), abs=1e-10)


def test_indices_computed_together_equal_each_on_its_own(pair):
    X, Y = pair
    feats = [X, Y, X[:, :3] + 0.1 * Y[:, :3]]
    kw = dict(k=5, n_boot=20, n_perm=10, seed=3)
    seen = []
    together = I.index_matrices(list(I.INDICES), feats, ["x", "y", "z"], progress=lambda d, t: seen.append((d, t)), **kw)
    assert seen[-1] == (12, 12) and len(seen) == 12  # 3 pairs x 4 indices
    for name in I.INDICES:
        alone = I.index_matrix(name, feats, ["x", "y", "z"], **kw)
        for f in ("value", "ci_low", "ci_high", "baseline", "baseline_high", "p_value"):
            np.testing.assert_array_equal(getattr(together[name], f), getattr(alone, f))


# ---- the registry and the interface ------------------------------------------------------------------------
PLAIN = {"cka_unbiased": lambda X, Y: I.cka_unbiased(X, Y), "mutual_knn": lambda X, Y: I.mutual_knn(X, Y, 5),
         "cknna": lambda X, Y: I.cknna(X, Y, 5), "procrustes": lambda X, Y: I.procrustes_distance(X, Y)}


def test_the_registry_lists_the_four_indices_with_their_info():
    assert I.index_names() == ("cka_unbiased", "mutual_knn", "cknna", "procrustes") == tuple(I.INDICES)
    for name, cls in I.INDICES.items():
        assert cls.name == name and cls.label and cls.summary and I.check_index(name) is cls
    assert [c.higher_is_similar for c in I.INDICES.values()] == [True, True, True, False]
    assert [c.uses_k for c in I.INDICES.values()] == [False, True, True, False]
    with pytest.raises(TypeError):
        I.INDICES["x"] = I.INDICES["cknna"]  # read-only: register_index adds


@pytest.mark.parametrize("name", list(PLAIN))
def test_each_index_value_draw_and_shuffle_agree_with_the_plain_function(name, pair):
    """The interface's three operations: value() is the index, a draw of all ones is the value, and a
    shuffle equals the index of X against the shuffled rows of Y."""
    X, Y = pair
    cls = I.check_index(name)
    index = cls(I._PairWork(X, Y), 5 if cls.uses_k else None, np.random.default_rng(0))
    n = index.n_resample
    assert index.n_images == n == len(X)
    assert index.value() == pytest.approx(PLAIN[name](X, Y), abs=1e-10)
    assert index.draw(np.ones(n)) == pytest.approx(index.value(), abs=1e-10)
    p = np.random.default_rng(4).permutation(n)
    assert index.shuffled(p) == pytest.approx(PLAIN[name](X, Y[p]), abs=1e-10)


def _cos(a, b) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_a_registered_index_runs_through_estimate_and_duplicates_raise(pair):
    X, Y = pair

    class MeanCosine(I.SimilarityIndex):  # a new index is one subclass: the cosine of the two mean rows
        name, label, summary = "test_mean_cosine", "mean cosine", "cosine of the two centroids (test only)"
        higher_is_similar, uses_k, bounds = True, False, (-1.0, 1.0)

        def __init__(self, work, k, rng):
            self.A, self.B = work.A[:, :3], work.B[:, :3]
            self.n_images = self.n_resample = len(work.A)

        def value(self):
            return _cos(self.A.mean(0), self.B.mean(0))

        def draw(self, w):
            return _cos(w @ self.A, w @ self.B)

        def shuffled(self, p):
            return self.value()  # the means do not depend on the pairing

    I.register_index(MeanCosine)
    try:
        assert "test_mean_cosine" in I.index_names()
        e = I.estimate("test_mean_cosine", X, Y, n_boot=30, n_perm=10)
        assert e.value == pytest.approx(_cos(X[:, :3].mean(0), Y[:, :3].mean(0)))
        assert e.baseline == pytest.approx(e.value) and e.p_value == 1.0 and e.ci_low <= e.value <= e.ci_high
        with pytest.raises(ValueError, match="already registered"):
            I.register_index(MeanCosine)
    finally:
        I._REGISTRY.pop("test_mean_cosine", None)
    with pytest.raises(ValueError, match="choose one of .*cka_unbiased"):
        I.check_index("test_mean_cosine")
