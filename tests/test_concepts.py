"""The concept atlas (core/concepts): NMF and the non-negative codes against scikit-learn / scipy, the exact
split of the NMC score over concepts, the fidelity measures on sets whose answer is known, chunked encoding,
the cache, the CLI and bad input. Real-weights checks (marked slow): the CNNs' maps are post-ReLU and their
embedding is the mean of the map, so the split is of the project's own NMC score."""
from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout

import numpy as np
import pytest
from PIL import Image

from core.concepts import atlas as atlas_mod
from core.concepts.apply import apply_concepts, encode_tokens
from core.concepts.atlas import concept_atlas, main_concepts
from core.concepts.contributions import class_contributions, label_problem, score_terms
from core.concepts.fidelity import deletion_correct, deletion_test, loo_nmc_correct, variance_explained
from core.concepts.figures import atlas_figure, atlas_map_figure, concept_map_figure, patch_crop
from core.concepts.methods import ConceptBasis, fit_basis, get_method, method_names
from core.concepts.nmf import nmf
from core.concepts.nnls import nnls_rows
from core.concepts.tokens import ArrayTokens, StoreTokens, sample_patches, sample_plan
from core.io.store import FeatureKey, FeatureStore
from tests.conftest import STAMPS, tiny_timm_backbone


def _parts_tokens(n=40, h=4, w=5, D=24, k_true=6, seed=0, signed=False, noise=0.01):
    """Tokens made of a few non-negative parts plus a little noise, and 4 class labels (each class favours
    its own part)."""
    rng = np.random.default_rng(seed)
    parts = np.abs(rng.standard_normal((k_true, D)))  # [k_true, D]
    y = np.array(list("abcd"))[np.arange(n) * 4 // n]
    codes = rng.exponential(0.3, size=(n, h, w, k_true)) * (rng.random((n, h, w, k_true)) < 0.4)
    for c in range(4):
        codes[y == ["a", "b", "c", "d"][c], :, :, c] += 1.0
    T = codes @ parts + noise * rng.random((n, h, w, D))
    if signed:
        T = T - T.mean(axis=(0, 1, 2))
    return T.astype(np.float32), y


# ---- NMF and codes against the references ------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_reaches_scikit_learns_loss():
    from sklearn.decomposition import NMF

    # noise well above float32 precision: the loss is then a meaningful share of |X|^2
    T, _ = _parts_tokens(noise=0.5, k_true=9)
    X = T.reshape(-1, T.shape[-1])
    U, H, _ = nmf(X, 6, seed=0, max_iter=1000, tol=1e-6)
    ref = NMF(6, init="nndsvda", solver="cd", max_iter=1000, tol=1e-6, random_state=0)
    Ur = ref.fit_transform(X.astype(np.float64))
    ours = np.linalg.norm(X - U @ H) ** 2
    theirs = np.linalg.norm(X - Ur @ ref.components_) ** 2
    assert U.min() >= 0 and H.min() >= 0
    assert ours <= theirs * 1.01, (ours, theirs)


def test_nnls_rows_match_scipy_row_by_row():
    from scipy.optimize import nnls

    rng = np.random.default_rng(1)
    W = np.abs(rng.standard_normal((7, 30))).astype(np.float32)
    W[3] = 0.8 * W[2] + 0.2 * W[3]  # correlated directions: the slow case for coordinate descent
    X = rng.standard_normal((60, 30)).astype(np.float32) + X_offset(W, rng)
    U = nnls_rows(X, W)
    for i in range(len(X)):
        ref, _ = nnls(W.T.astype(np.float64), X[i].astype(np.float64))
        obj = np.linalg.norm(X[i] - U[i] @ W)
        obj_ref = np.linalg.norm(X[i] - ref @ W)
        assert obj <= obj_ref * (1 + 1e-5) + 1e-6
        np.testing.assert_allclose(U[i], ref, atol=2e-3 * max(1.0, ref.max()))


def X_offset(W, rng):
    return rng.exponential(size=(60, W.shape[0])).astype(np.float32) @ W


def test_nmf_basis_bookkeeping():
    T, _ = _parts_tokens()
    X = T.reshape(-1, T.shape[-1])
    basis = fit_basis(X, 6, "nmf")
    assert basis.method == "nmf" and basis.W.shape == (6, X.shape[1]) and not basis.offset.any()
    np.testing.assert_allclose(np.linalg.norm(basis.W, axis=1), 1.0, rtol=1e-5)
    U = basis.encode(X)
    _, H, _ = nmf(X, 6)
    Un, _, _ = nmf(X, 6)
    # the codes are optimal for the (rescaled) directions: never worse than the factorisation itself
    assert np.linalg.norm(X - basis.reconstruct(U)) <= np.linalg.norm(X - Un @ H) * (1 + 1e-4)


def test_method_registry_and_auto():
    assert method_names()[0] == "auto" and {"nmf", "nmf_shifted", "spherical_kmeans"} <= set(method_names())
    with pytest.raises(ValueError, match="unknown concept method 'pca'"):
        get_method("pca")
    T, _ = _parts_tokens()
    X = T.reshape(-1, T.shape[-1])
    assert fit_basis(X, 3).method == "nmf"
    assert fit_basis(X - X.mean(0), 3).method == "nmf_shifted"
    with pytest.raises(ValueError, match="non-negative.*nmf_shifted or spherical_kmeans"):
        fit_basis(X - X.mean(0), 3, "nmf")
    with pytest.raises(ValueError, match="at least 2 concepts"):
        fit_basis(X, 1)
    with pytest.raises(ValueError, match="at least 5 patch vectors"):
        fit_basis(X[:4], 5)


def test_spherical_kmeans_codes():
    T, _ = _parts_tokens(signed=True)
    X = T.reshape(-1, T.shape[-1])
    basis = fit_basis(X, 5, "spherical_kmeans")
    np.testing.assert_allclose(np.linalg.norm(basis.W, axis=1), 1.0, rtol=1e-5)
    U = basis.encode(X)
    assert ((U > 0).sum(1) <= 1).all()  # one concept per token
    cos = (X / np.linalg.norm(X, axis=1, keepdims=True)) @ basis.W.T
    hit = U.max(1) > 0
    np.testing.assert_array_equal(U[hit].argmax(1), cos[hit].argmax(1))
    np.testing.assert_allclose(U[hit].max(1), (X @ basis.W.T)[hit].max(1), rtol=1e-5)


# ---- encoding a dataset chunk by chunk ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["nmf", "nmf_shifted", "spherical_kmeans"])
def test_chunked_application_equals_all_at_once(method):
    T, _ = _parts_tokens(n=24, signed=method != "nmf")
    src = ArrayTokens(T)
    basis = fit_basis(T.reshape(-1, T.shape[-1]), 5, method)
    whole = apply_concepts(src, basis, chunk_images=len(T), top=6)
    for step in (1, 7):
        part = apply_concepts(src, basis, chunk_images=step, top=6)
        np.testing.assert_allclose(part.u, whole.u, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(part.e, whole.e, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(part.maps.astype(np.float32), whole.maps.astype(np.float32), rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(part.top.image, whole.top.image)
        np.testing.assert_array_equal(part.dominant, whole.dominant)
        assert part.patch_sse == pytest.approx(whole.patch_sse, rel=1e-6)
        assert part.patch_sst == pytest.approx(whole.patch_sst, rel=1e-6)
    # the pooled codes are the mean of the per-patch codes; the maps are the codes of each image alone
    np.testing.assert_allclose(whole.e, T.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode_tokens(basis, T[3]), whole.maps[3].astype(np.float32), rtol=2e-3, atol=1e-3)


def test_top_patches_are_the_largest_coefficients_one_per_image():
    T, _ = _parts_tokens(n=24)
    basis = fit_basis(T.reshape(-1, T.shape[-1]), 4, "nmf")
    codes = apply_concepts(ArrayTokens(T), basis, chunk_images=5, top=6)
    U = np.stack([encode_tokens(basis, t) for t in T])  # [N, h, w, k]
    h, w = T.shape[1:3]
    for j in range(4):
        best = U[..., j].reshape(len(T), -1).max(1)  # each image's best patch
        order = np.argsort(-best, kind="stable")[:6]
        np.testing.assert_array_equal(codes.top.image[j], order)
        np.testing.assert_allclose(codes.top.coef[j], best[order], rtol=1e-5)
        for i, r, c in zip(codes.top.image[j], codes.top.row[j], codes.top.col[j]):
            assert U[i, r, c, j] == pytest.approx(U[i, ..., j].max(), rel=1e-6)
        assert len(set(codes.top.image[j].tolist())) == 6
    assert codes.dominant.sum() == (U.max(-1) > 0).sum() and (r < h and c < w)


def test_patch_variance_explained_is_the_formula():
    T, _ = _parts_tokens(n=12)
    basis = fit_basis(T.reshape(-1, T.shape[-1]), 4, "nmf")
    codes = apply_concepts(ArrayTokens(T), basis, chunk_images=5)
    X = T.reshape(-1, T.shape[-1]).astype(np.float64)
    R = X - basis.reconstruct(basis.encode(X.astype(np.float32)))
    expect = 1 - (R ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert codes.patch_variance_explained == pytest.approx(expect, rel=1e-5)


# ---- the split of the score --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["nmf", "nmf_shifted", "spherical_kmeans"])
def test_class_contributions_sum_to_the_score(method):
    T, y = _parts_tokens(signed=method != "nmf")
    basis = fit_basis(T.reshape(-1, T.shape[-1]), 5, method)
    codes = apply_concepts(ArrayTokens(T), basis)
    tb = class_contributions(codes.u, codes.e, basis, y)
    np.testing.assert_allclose(tb.contributions.sum(1) + tb.offset + tb.residual, tb.score, atol=1e-10)
    # the score itself, written out: cosine of each image's mean token to its class's mean of mean tokens
    E = T.mean(axis=(1, 2)).astype(np.float64)
    for c, cls in enumerate(tb.classes):
        p = E[y == cls].mean(0)
        cos = (E[y == cls] @ p) / (np.linalg.norm(E[y == cls], axis=1) * np.linalg.norm(p))
        assert tb.score[c] == pytest.approx(cos.mean(), abs=1e-5)
    assert (tb.offset == 0).all() if method != "nmf_shifted" else (tb.offset != 0).any()


def test_score_terms_written_out_for_one_image():
    T, y = _parts_tokens(signed=True)
    basis = fit_basis(T.reshape(-1, T.shape[-1]), 4, "nmf_shifted")
    codes = apply_concepts(ArrayTokens(T), basis)
    P = np.stack([codes.e[y == c].mean(0) for c in "abcd"]).astype(np.float64)
    t = score_terms(codes.u[:1], codes.e[:1], basis, P)
    e, u = codes.e[0].astype(np.float64), codes.u[0].astype(np.float64)
    for c in range(4):
        ph = P[c] / np.linalg.norm(P[c])
        for j in range(4):
            assert t.concepts[0, c, j] == pytest.approx(u[j] * basis.W[j].astype(np.float64) @ ph / np.linalg.norm(e), rel=1e-6)
        r = e - u @ basis.W.astype(np.float64) - basis.offset
        assert t.residual[0, c] == pytest.approx(r @ ph / np.linalg.norm(e), rel=1e-6, abs=1e-12)
        assert t.concepts[0, c].sum() + t.offset[0, c] + t.residual[0, c] == pytest.approx(t.score[0, c], abs=1e-9)


def test_labels_that_give_no_table():
    assert "no class labels" in label_problem(np.array(["", ""]))
    assert "one class" in label_problem(np.array(["a", "a"]))
    assert label_problem(np.array(["a", "b"])) is None
    basis = ConceptBasis("nmf", np.eye(2, 3, dtype=np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="no class labels"):
        class_contributions(np.ones((2, 2)), np.ones((2, 3)), basis, np.array(["", ""]))


# ---- fidelity on sets whose answer is known ----------------------------------------------------------------
def test_variance_explained_known_answer():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((200, 4))
    e -= e.mean(0)
    e[:, 2:] *= np.linalg.norm(e[:, :2]) / np.linalg.norm(e[:, 2:])  # the two halves carry equal variance
    basis = ConceptBasis("nmf", np.eye(2, 4, dtype=np.float32), np.zeros(4, np.float32))
    assert variance_explained(e, e[:, :2], basis) == pytest.approx(0.5, abs=1e-6)
    full = ConceptBasis("nmf", np.eye(4, dtype=np.float32), np.zeros(4, np.float32))
    assert variance_explained(e, e, full) == pytest.approx(1.0, abs=1e-6)
    assert variance_explained(e, np.zeros_like(e), full) == pytest.approx(0.0, abs=1e-6)


def test_loo_nmc_matches_a_plain_leave_one_out_loop():
    from core.classify.prototypes import NearestMeanClassifier

    T, y = _parts_tokens(seed=3)
    E = T.mean(axis=(1, 2)) + np.random.default_rng(0).normal(0, 0.3, (len(T), T.shape[-1])).astype(np.float32)
    ours = loo_nmc_correct(E, y)
    for i in range(len(E)):
        keep = np.arange(len(E)) != i
        clf = NearestMeanClassifier().fit(E[keep], y[keep])
        assert ours[i] == (clf.predict(E[i:i + 1])[0] == y[i])
    with pytest.raises(ValueError, match="one image"):
        loo_nmc_correct(E[:5], np.array(["a", "a", "b", "b", "c"]))


def test_deletion_in_one_pass_equals_the_loop():
    T, y = _parts_tokens(seed=4, noise=0.4)
    basis = fit_basis(T.reshape(-1, T.shape[-1]), 5, "nmf")
    codes = apply_concepts(ArrayTokens(T), basis)
    fast = deletion_correct(codes.e, codes.u, basis.W, y)
    np.testing.assert_array_equal(fast[0], loo_nmc_correct(codes.e, y))
    for j in range(5):
        np.testing.assert_array_equal(fast[j + 1], loo_nmc_correct(codes.e, y, minus=(codes.u[:, j], basis.W[j].astype(np.float64))))
    assert not fast.all()  # the test can fail: some images are wrong with some concept deleted


def test_deleting_the_top_concept_known_answer():
    """Class c's images are 3 W_c + W_4 (shared) + noise: the top concept of class c is c; deleting it
    leaves the shared part (equally near every prototype), deleting any other concept changes nothing."""
    rng = np.random.default_rng(0)
    D, per = 16, 10
    W = np.zeros((5, D), np.float32)
    for j in range(5):
        W[j, 3 * j:3 * j + 3] = 1 / np.sqrt(3)
    y = np.repeat(np.array(list("abcd")), per)
    u = np.zeros((len(y), 5), np.float32)
    u[np.arange(len(y)), np.repeat(np.arange(4), per)] = 3.0
    u[:, 4] = 1.0
    e = u @ W + rng.normal(0, 0.01, (len(y), D)).astype(np.float32)
    basis = ConceptBasis("nmf", W, np.zeros(D, np.float32))
    tb = class_contributions(u, e, basis, y)
    np.testing.assert_array_equal(tb.top_concept, [0, 1, 2, 3])
    d = deletion_test(e, u, basis, y, tb)
    np.testing.assert_allclose(d.accuracy, 1.0)
    np.testing.assert_allclose(d.accuracy_other, 1.0)  # deleting another concept: nothing changes
    assert (d.accuracy_top < 0.6).all()  # the shared part alone: about chance (1/4)
    assert d.classes_where_top_drops_more == 4 and d.summary()["mean_drop_random"] == pytest.approx(0.0, abs=1e-12)
    assert variance_explained(e, u, basis) > 0.999


# ---- sampling and the feature cache ------------------------------------------------------------------------
def test_sample_plan_bounds_and_spread():
    idx, per = sample_plan(10, 49, 1000)
    assert per == 49 and idx.tolist() == list(range(10))
    idx, per = sample_plan(20_000, 49, 200_000, seed=1)
    assert len(idx) * per <= 200_000 and len(idx) == 16_327 and per == 12
    assert (np.diff(idx) > 0).all()
    idx, per = sample_plan(100_000, 256, 200_000)
    assert len(idx) == 3_125 and per == 64
    T, _ = _parts_tokens(n=16)
    X, n_img = sample_patches(ArrayTokens(T), max_vectors=40, seed=0)
    assert X.shape == (40, T.shape[-1]) and n_img <= 16
    flat = T.reshape(-1, T.shape[-1])
    assert all((np.abs(flat - x).sum(1) == 0).any() for x in X)  # every sampled vector is a real patch


def test_store_tokens_read_float16_entries(tmp_path):
    T, _ = _parts_tokens(n=6)
    store = FeatureStore(tmp_path / "f.sqlite")
    keys = [FeatureKey("w", "p", 3, "patch_tokens", f"{i:064d}") for i in range(6)]
    store.put_many({k: t.astype(np.float16) for k, t in zip(keys, T)})
    src = StoreTokens(store, [str(k) for k in keys], T.shape[1:3], T.shape[3])
    got = src.read([4, 1])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, T[[4, 1]], rtol=1e-3, atol=1e-3)
    missing = StoreTokens(store, [str(keys[0]), "w|p|L3|patch_tokens|" + "f" * 64], T.shape[1:3], T.shape[3])
    with pytest.raises(Exception, match="no cached patch tokens"):
        missing.read([0, 1])


# ---- the atlas: cache, labels, figures ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cnn():
    return tiny_timm_backbone("test_efficientnet", "tiny_concepts_cnn", num_classes=0)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """4 classes x 3 stamps (labelled) and the same 12 pictures in a flat folder."""
    from core.io.images import load_folder

    root = tmp_path_factory.mktemp("concept_set")
    flat = root / "flat"
    flat.mkdir()
    for cls in ("birds", "fish", "fruit", "tools"):
        (root / "lab" / cls).mkdir(parents=True)
        for p in sorted((STAMPS / cls).glob("*.png"))[:3]:
            shutil.copy(p, root / "lab" / cls / p.name)
            shutil.copy(p, flat / f"{cls}_{p.name}")
    return load_folder(root / "lab"), load_folder(flat)


def test_atlas_is_cached_and_a_second_open_computes_nothing(tiny_cnn, small_set, monkeypatch, tmp_path):
    ds, _ = small_set
    store = FeatureStore(tmp_path / "features.sqlite")
    a = concept_atlas(tiny_cnn, ds.records, k=3, size=64, store=store)
    assert a.path is not None and (a.path / "maps.npy").is_file() and not a.stats.from_cache
    assert a.k == 3 and a.stats.n_images == 12 and a.codes.maps.shape == (12, *a.grid, 3)

    def boom(*_a, **_k):
        raise AssertionError("computed again")

    for name in ("extract_features", "fit_basis", "apply_concepts", "sample_patches", "class_contributions"):
        monkeypatch.setattr(atlas_mod, name, boom)
    b = concept_atlas(tiny_cnn, ds.records, k=3, size=64, store=store)
    assert b.stats.from_cache and b.path == a.path
    np.testing.assert_array_equal(b.basis.W, a.basis.W)
    np.testing.assert_array_equal(np.asarray(b.codes.maps), np.asarray(a.codes.maps))
    np.testing.assert_array_equal(b.table.contributions, a.table.contributions)
    assert b.to_json()["fidelity"] == a.to_json()["fidelity"]
    # names are kept beside the cached atlas
    b.save_names(["wings", "  scales ", ""])
    c = concept_atlas(tiny_cnn, ds.records, k=3, size=64, store=store)
    assert c.names == ["wings", "scales", ""] and c.label(1) == "C1 scales" and c.short_label(0) == "C0 wings"
    with pytest.raises(ValueError, match="2 names for 3 concepts"):
        c.save_names(["a", "b"])
    # another k is another atlas
    monkeypatch.undo()
    d = concept_atlas(tiny_cnn, ds.records, k=4, size=64, store=store)
    assert d.path != a.path and d.names == [""] * 4


def test_a_damaged_cached_atlas_is_made_again(tiny_cnn, small_set, tmp_path):
    ds, _ = small_set
    store = FeatureStore(tmp_path / "features.sqlite")
    a = concept_atlas(tiny_cnn, ds.records, k=2, size=64, store=store, seed=5)
    (a.path / "arrays.npz").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="could not be read"):
        b = concept_atlas(tiny_cnn, ds.records, k=2, size=64, store=store, seed=5)
    assert not b.stats.from_cache and b.basis.k == 2


def test_unlabelled_folder_gives_concepts_and_says_why_there_is_no_table(tiny_cnn, small_set, tmp_path):
    _, flat = small_set
    a = concept_atlas(tiny_cnn, flat.records, k=3, size=64, store=FeatureStore(tmp_path / "f.sqlite"))
    assert a.table is None and a.deletion is None and "no class labels" in a.table_note
    assert a.codes.top.image[:, 0].min() >= 0  # the concepts still have typical patches
    js = a.to_json()
    assert js["class_table"] is None and "no class labels" in js["class_table_note"]
    assert js["fidelity"]["deletion"] is None and js["fidelity"]["variance_explained"] == a.variance_explained
    assert all(c["top_classes"] == [] for c in js["concepts"])
    fig = atlas_figure(a, crops=3, crop_px=60)
    assert fig.width >= 3 * 60


def test_bad_k_and_empty_input(tiny_cnn, small_set):
    ds, _ = small_set
    with pytest.raises(ValueError, match="at least 2 concepts"):
        concept_atlas(tiny_cnn, ds.records, k=1, size=64)
    with pytest.raises(ValueError, match="at least one image"):
        concept_atlas(tiny_cnn, [], k=3, size=64)


def test_figures(tiny_cnn, small_set, tmp_path):
    ds, _ = small_set
    a = concept_atlas(tiny_cnn, ds.records, k=3, size=64, store=FeatureStore(tmp_path / "f.sqlite"))
    fig = atlas_figure(a, crops=4, crop_px=80)
    assert fig.height > 3 * 80 and fig.width >= 4 * 80
    lab, coef = a.concept_map(0)
    assert lab.shape == a.grid and coef.shape == a.grid and lab.max() < 3
    U = np.asarray(a.codes.maps[0], np.float32)
    np.testing.assert_array_equal(main_concepts(U)[0], lab)
    m = atlas_map_figure(a, 0, max_side=200)
    assert m.width >= 2 * 150
    # the same picture through the backbone (an upload) gets the same map as the cached one (float16 tokens)
    lab2, _ = a.map_of_image(tiny_cnn, ds.records[0].decode())
    assert (lab2 == lab).mean() >= 0.9
    tile = patch_crop(Image.new("RGB", (300, 100), (0, 0, 255)), (1, 6), (3, 7), side=90)
    assert tile.size == (90, 90)
    f = concept_map_figure(Image.new("RGB", (50, 50)), -np.ones((2, 2), int), np.zeros((2, 2)), ["C0", "C1"])
    assert f.width > 100  # no concept anywhere: a legend saying so


# ---- the CLI -----------------------------------------------------------------------------------------------
def test_cli_rejects_k_below_2(capsys):
    from core.cli import main

    with pytest.raises(SystemExit) as e:
        main(["concepts", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--k", "1"])
    assert e.value.code == 2 and "at least 2 concepts" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_json_on_the_stamps(tmp_path, capsys):
    from core.cli import main

    png = tmp_path / "atlas.png"
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["concepts", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--k", "6", "--json",
                     "--atlas", str(png)]) == 0
    js = json.loads(buf.getvalue())
    assert js["method"] == "nmf" and js["k"] == 6 and js["exact"] is True and js["images"] == 48
    assert 0.2 < js["fidelity"]["variance_explained"] <= 1.0
    d = js["fidelity"]["deletion"]
    assert d["mean_drop_top"] > d["mean_drop_random"] and d["classes"] == 8
    tb = js["class_table"]
    assert len(tb["classes"]) == 8 and len(tb["concepts"][0]) == 6
    for c in range(8):
        assert sum(tb["concepts"][c]) + tb["offset"][c] + tb["residual"][c] == pytest.approx(tb["score"][c], abs=1e-5)
    for c in js["concepts"]:
        assert len(c["typical_patches"]) == 8
        for p in c["typical_patches"]:
            assert (STAMPS / p["image"]).is_file() and 0 <= p["row"] < 7 and 0 <= p["col"] < 7
    assert Image.open(png).size[0] > 800
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["concepts", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--k", "6", "--json"]) == 0
    assert json.loads(buf.getvalue())["from_cache"] is True


# ---- real weights ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet_lite0"])
def test_cnn_split_is_of_the_projects_own_nmc_score(get_backbone, stamps, name):
    """The CNNs' last map (the patch tokens at the embedding's block) is post-ReLU6 and the embedding is its
    mean, so the concept split sums to the cosine NMC score of the backbone's own embeddings."""
    from core.models.extract import extract_features

    b = get_backbone(name)
    L = b.resolve_layer(None, "embedding")
    fs = extract_features(b, stamps.records, kinds=("embedding", "patch_tokens"), layer=L)
    T, E = fs["patch_tokens"], fs["embedding"]
    assert T.min() >= 0.0  # after the last activation
    np.testing.assert_allclose(T.mean(axis=(1, 2)), E, rtol=1e-5, atol=1e-5)
    y = np.array(fs.labels)
    basis = fit_basis(T.reshape(-1, T.shape[-1]), 8)
    assert basis.method == "nmf"
    codes = apply_concepts(ArrayTokens(T), basis)
    tb = class_contributions(codes.u, codes.e, basis, y)
    for c, cls in enumerate(tb.classes):
        p = E[y == cls].astype(np.float64).mean(0)
        Ec = E[y == cls].astype(np.float64)
        own = (Ec @ p) / (np.linalg.norm(Ec, axis=1) * np.linalg.norm(p))  # the NMC score from the embeddings
        total = tb.contributions[c].sum() + tb.offset[c] + tb.residual[c]
        assert total == pytest.approx(own.mean(), abs=1e-5)
    d = deletion_test(codes.e, codes.u, basis, y, tb)
    assert d.drop_top.mean() > d.drop_other.mean() + 0.2


@pytest.mark.slow
def test_vit_atlas_states_its_proxy(get_backbone, stamps):
    a = concept_atlas(get_backbone("vits14_saliency"), stamps.records, k=8)
    assert a.basis.method == "nmf_shifted" and a.layer == 10 and a.grid == (16, 16)
    assert not a.exact and "not a sum over patches" in a.decomposition()
    tb = a.table
    np.testing.assert_allclose(tb.contributions.sum(1) + tb.offset + tb.residual, tb.score, atol=1e-9)
    assert a.embedding_accuracy is not None and a.deletion is not None
