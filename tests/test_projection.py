"""Projections: shapes, seeded determinism, cache keys, and placement of new points (PCA / UMAP
transform, t-SNE neighbour placement against its formula written out)."""
from __future__ import annotations

import numpy as np
import pytest

import core.projection.projectors as projection
from core.projection.projectors import (
    ProjectionParams,
    Projector,
    available_methods,
    make_projector,
    place_by_neighbours,
    project,
    register_projector,
)


@pytest.fixture(scope="module")
def clusters() -> tuple[np.ndarray, np.ndarray]:
    """``[240, 32]`` float32: 3 well-separated clusters, labels ``[240]``."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 4
    lab = np.repeat(np.arange(3), 80)
    return (centres[lab] + rng.normal(size=(240, 32))).astype(np.float32), lab


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
@pytest.mark.parametrize("n_components", [2, 3])
def test_shapes_and_seeded_determinism(clusters, method: str, n_components: int) -> None:
    X, _ = clusters
    p = ProjectionParams(method, n_components=n_components, seed=3)
    E = project(X, p)
    assert E.shape == (len(X), n_components) and E.dtype == np.float32 and np.all(np.isfinite(E))
    np.testing.assert_array_equal(project(X, p), E)


def test_seed_changes_umap_only(clusters) -> None:
    X, _ = clusters
    assert not np.allclose(project(X, ProjectionParams("umap", seed=0)), project(X, ProjectionParams("umap", seed=1)))
    # PCA-initialised t-SNE is deterministic, hence the seed is not part of its key
    t0, t1 = project(X, ProjectionParams("tsne", seed=0)), project(X, ProjectionParams("tsne", seed=1))
    np.testing.assert_array_equal(t0, t1)
    assert ProjectionParams("tsne", seed=0).key() == ProjectionParams("tsne", seed=1).key()


def test_pca_is_svd_of_normalised_rows_and_transform_is_exact(clusters) -> None:
    X, _ = clusters
    pr = make_projector(ProjectionParams("pca")).fit(X)
    Xn = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    Xc = Xn - Xn.mean(axis=0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    want = Xc @ Vt[:2].T  # [N, 2], up to the sign of each axis
    got = pr.embedding_.astype(np.float64)
    signs = np.sign(np.sum(got * want, axis=0))
    np.testing.assert_allclose(got, want * signs, atol=1e-5)
    np.testing.assert_allclose(pr.transform(X), pr.embedding_, atol=1e-5)
    # cosine: positive rescaling of rows does not move anything
    np.testing.assert_allclose(pr.transform(X * 7.5), pr.embedding_, atol=1e-5)


def _near_own_points(E: np.ndarray, T: np.ndarray, lab: np.ndarray) -> tuple[float, float]:
    """(fraction of placed points whose nearest fitted point has the same label,
    median shift / map extent)."""
    nearest = np.linalg.norm(T[:, None, :] - E[None, :, :], axis=2).argmin(axis=1)
    extent = np.linalg.norm(E.max(axis=0) - E.min(axis=0))
    return float(np.mean(lab[nearest] == lab)), float(np.median(np.linalg.norm(T - E, axis=1)) / extent)


def test_umap_transform_places_training_points_near_their_fit(clusters) -> None:
    X, lab = clusters
    pr = make_projector(ProjectionParams("umap")).fit(X)
    jitter = 1e-3 * np.random.default_rng(1).normal(size=X.shape).astype(np.float32)
    T = pr.transform(X + jitter)  # copies, so umap cannot short-cut the training array
    same, shift = _near_own_points(pr.embedding_, T, lab)
    assert T.shape == pr.embedding_.shape
    assert same == 1.0 and shift < 0.1


@pytest.mark.slow  # pynndescent JIT-compiles for 20-30 s in every new process
def test_umap_approximate_path_for_large_n(clusters, monkeypatch) -> None:
    X, lab = clusters
    monkeypatch.setattr(projection, "UMAP_EXACT_BELOW", 0)  # as if N >= 4096
    pr = make_projector(ProjectionParams("umap")).fit(X)
    T = pr.transform(X + 1e-3 * np.random.default_rng(1).normal(size=X.shape).astype(np.float32))
    same, shift = _near_own_points(pr.embedding_, T, lab)
    assert same == 1.0 and shift < 0.1


def test_tsne_places_new_points_by_weighted_neighbour_mean(clusters) -> None:
    X, _ = clusters
    k = 7
    pr = make_projector(ProjectionParams("tsne", n_neighbors=k)).fit(X)
    E = pr.embedding_.astype(np.float64)
    # a training point lands on itself (zero distance dominates the weights)
    np.testing.assert_allclose(pr.transform(X[5:6])[0], E[5], atol=1e-4)
    # a new point: inverse-cosine-distance weighted mean of its k nearest training points
    x_new = (0.6 * X[5] + 0.4 * X[9]).astype(np.float32)
    Xn = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    d = 1.0 - Xn @ (x_new / np.linalg.norm(x_new))
    nearest = np.argsort(d)[:k]
    w = [1.0 / d[j] for j in nearest]
    want = sum(w[i] * E[j] for i, j in enumerate(nearest)) / sum(w)
    np.testing.assert_allclose(pr.transform(x_new[None])[0], want, rtol=1e-4, atol=1e-4)


def test_place_by_neighbours_equals_plain_mean_when_equidistant() -> None:
    X_ref = np.array([[1, 0], [-1, 0], [0, 5]], dtype=np.float32)
    coords = np.array([[0.0, 0.0], [2.0, 4.0], [9.0, 9.0]])
    got = place_by_neighbours(np.zeros((1, 2), np.float32), X_ref, coords, k=2, metric="euclidean")
    np.testing.assert_allclose(got, [[1.0, 2.0]])


def test_key_is_stable_and_uses_only_relevant_fields() -> None:
    a = ProjectionParams("umap")
    assert a.key() == ProjectionParams("umap").key() and hash(a) == hash(ProjectionParams("umap"))
    assert a.key().startswith("umap/v1|")
    assert a.key() != ProjectionParams("umap", min_dist=0.5).key()
    assert a.key() == ProjectionParams("umap", perplexity=5.0).key()  # t-SNE field: irrelevant here
    assert ProjectionParams("tsne").key() != ProjectionParams("tsne", perplexity=5.0).key()
    assert ProjectionParams("pca").key() == ProjectionParams("pca", n_neighbors=50, seed=4).key()
    assert a.key() != ProjectionParams("umap", seed=1).key()


def test_bad_input_raises(clusters) -> None:
    X, _ = clusters
    with pytest.raises(ValueError, match="pca"):
        ProjectionParams("isomap")
    with pytest.raises(ValueError, match="n_components"):
        ProjectionParams("pca", n_components=4)
    pr = make_projector(ProjectionParams("pca"))
    with pytest.raises(ValueError, match="not fitted"):
        pr.transform(X)
    pr.fit(X)
    with pytest.raises(ValueError, match="D=31"):
        pr.transform(X[:, :31])
    with pytest.raises(ValueError, match="NaN"):
        project(np.full((10, 4), np.nan), ProjectionParams("pca"))
    with pytest.raises(ValueError, match="at least"):
        project(X[:3], ProjectionParams("umap"))


def test_registry_rejects_duplicates() -> None:
    assert available_methods() == ["pca", "umap", "tsne"]

    class Again(Projector):
        method = "pca"

        def _fit(self, Z, X):  # pragma: no cover - never registered
            return Z[:, :2]

        def _transform(self, Z, X):  # pragma: no cover
            return Z[:, :2]

    with pytest.raises(ValueError, match="already registered"):
        register_projector(Again)
