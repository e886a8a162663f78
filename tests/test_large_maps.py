"""Large maps in core: exact block-wise cosine neighbours on float16 rows, sampled projections."""
from __future__ import annotations

import numpy as np
import pytest

from core.geometry.chunked import chunked_cosine_neighbours
from core.projection.projectors import ProjectionParams
from core.projection.sampled import cached_projection, project_sampled, sample_rows


def test_chunked_neighbours_equal_brute_force_on_float16():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5_000, 24)).astype(np.float16)
    Xf = X.astype(np.float32)
    norms = np.linalg.norm(Xf, axis=1)
    for qi in (0, 1234, 4999):
        nb = chunked_cosine_neighbours(Xf[qi], X, norms, k=10, exclude=[qi], chunk=700)
        S = (Xf @ Xf[qi]) / (norms * np.linalg.norm(Xf[qi]))  # written out: cosine to every row
        S[qi] = -np.inf
        ref = np.argsort(-S, kind="stable")[:10]
        np.testing.assert_array_equal(nb.indices[0], ref)
        np.testing.assert_allclose(nb.similarities[0], S[ref], rtol=1e-5)
    # without norms, and k larger than the rows left
    nb = chunked_cosine_neighbours(Xf[0], X[:5], k=10, exclude=[0])
    assert nb.indices.shape == (1, 4) and 0 not in nb.indices[0]
    with pytest.raises(ValueError, match="D=3"):
        chunked_cosine_neighbours(np.ones(3), X)


def test_sampled_pca_places_every_row_like_a_pca_fitted_on_the_sample():
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(3_000, 16)) * np.linspace(3, 0.1, 16)).astype(np.float16)
    p = ProjectionParams("pca", n_components=2, metric="euclidean")
    Y = project_sampled(X, p, sample=1_000, chunk=512)
    idx = sample_rows(3_000, 1_000, 0)
    Xs = X[idx].astype(np.float64)
    mu = Xs.mean(0)
    _, _, Vt = np.linalg.svd(Xs - mu, full_matrices=False)  # reference PCA of the sample
    ref = (X.astype(np.float64) - mu) @ Vt[:2].T
    np.testing.assert_allclose(np.abs(Y), np.abs(ref), atol=2e-3)  # component signs are arbitrary
    # all rows fit when the sample is not smaller than N
    assert project_sampled(X[:100], p, sample=1_000).shape == (100, 2)


def test_cached_projection_is_written_once_and_read_back(tmp_path):
    X = np.random.default_rng(2).normal(size=(200, 8)).astype(np.float16)
    p = ProjectionParams("pca", n_components=2)
    f = tmp_path / "proj" / "pca.npy"
    calls = []
    Y = cached_projection(f, X, p, progress=lambda d, t: calls.append((d, t)))
    assert f.is_file() and calls[-1] == (200, 200)
    again = []
    np.testing.assert_array_equal(cached_projection(f, X, p, progress=lambda d, t: again.append(d)), Y)
    assert again == []  # from disk, not recomputed


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_shape", "folder"])
def test_a_damaged_cached_projection_is_moved_aside_and_recomputed(tmp_path, damage):
    from core.io.heal import CacheRecoveredWarning

    X = np.random.default_rng(2).normal(size=(200, 8)).astype(np.float16)
    p = ProjectionParams("pca", n_components=2)
    f = tmp_path / "proj" / "pca.npy"
    Y = cached_projection(f, X, p)
    if damage == "truncated":
        f.write_bytes(f.read_bytes()[:500])
    elif damage == "garbage":
        f.write_bytes(b"\x93NUMPY garbage" * 100)
    elif damage == "other_shape":
        np.save(f, np.zeros((10, 2), np.float32))
    else:
        f.unlink()
        f.mkdir()
    with pytest.warns(CacheRecoveredWarning, match="cached projection"):
        out = cached_projection(f, X, p)
    np.testing.assert_array_equal(out, Y)
    assert f.is_file() and [q.name for q in f.parent.iterdir() if ".corrupt-" in q.name]


def test_neighbour_placement_is_the_weighted_mean_of_the_nearest_sample_positions():
    """place="neighbours" against the formula written out (exact k-NN, inverse-distance weights)."""
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(1_200, 12)) + np.repeat(rng.normal(size=(4, 12)) * 4, 300, axis=0)).astype(np.float32)
    p = ProjectionParams("pca", n_components=2, metric="euclidean")
    Y = project_sampled(X, p, sample=400, place="neighbours", k=5)
    idx = sample_rows(1_200, 400, 0)
    rest = np.setdiff1d(np.arange(1_200), idx)
    Ys = project_sampled(X[idx], p)  # the sample's own map (all rows fitted)
    np.testing.assert_allclose(Y[idx], Ys, atol=1e-5)
    Xs = X[idx].astype(np.float64)
    D = np.linalg.norm(X[rest, None, :].astype(np.float64) - Xs[None], axis=2)  # [M, S]: PCA fits in X's own space
    nn = np.argsort(D, axis=1)[:, :5]
    w = 1 / np.maximum(np.take_along_axis(D, nn, 1), 1e-12)
    want = np.einsum("mk,mkc->mc", w / w.sum(1, keepdims=True), Ys[nn])
    np.testing.assert_allclose(Y[rest], want, atol=1e-3)
    with pytest.raises(ValueError, match="place must be"):
        project_sampled(X, p, sample=400, place="nearest")
