"""Prototype classifiers against hand-written references and scikit-learn used directly; TEEN against
its formula with explicit loops; class-incremental accuracy on a hand-computed 2-D example."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from core.classify.classifiers import classifier_names, make_classifier
from core.classify.evaluation import evaluate, few_shot_curve
from core.classify.incremental import class_incremental
from core.classify.prototypes import NearestMeanClassifier, class_prototypes, per_class_margin
from core.classify.teen import teen_calibrate, teen_experiment
from core.classify.zeroshot import mix_prototypes, prompt_prototypes, zero_shot
from core.geometry.vectors import distances


def _blobs(n_per: int = 20, k: int = 5, d: int = 16, spread: float = 2.5, seed: int = 0, str_labels: bool = True):
    """``[k * n_per, d]`` float32 Gaussian clusters with overlap, labels ``[k * n_per]``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2 + 1.0  # offset so cosine and euclidean disagree
    yi = np.repeat(np.arange(k), n_per)
    X = (centres[yi] + spread * rng.normal(size=(len(yi), d))).astype(np.float32)
    y = np.array([f"class_{i}" for i in yi]) if str_labels else yi
    return X, y


def _train_test(seed: int = 0):
    """Even rows train, odd rows test, from the same clusters."""
    X, y = _blobs(n_per=40, seed=seed)
    return X[::2], y[::2], X[1::2], y[1::2]


def _numpy_nmc(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, metric: str) -> np.ndarray:
    """Reference nearest class mean, written out."""
    classes = sorted(set(ytr.tolist()))
    P = np.stack([Xtr[ytr == c].astype(np.float64).mean(axis=0) for c in classes])
    A = Xte.astype(np.float64)
    if metric == "cosine":
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        P = P / np.linalg.norm(P, axis=1, keepdims=True)
        d = 1.0 - A @ P.T
    else:
        d = np.sqrt(((A[:, None, :] - P[None, :, :]) ** 2).sum(axis=2))
    return np.array(classes)[d.argmin(axis=1)]


# ---- NMC ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nmc_matches_numpy_reference(metric: str) -> None:
    X, y, Xte, yte = _train_test()
    want = _numpy_nmc(X, y, Xte, metric)
    got = NearestMeanClassifier(metric).fit(X, y).predict(Xte)
    np.testing.assert_array_equal(got, want)
    assert 0.3 < np.mean(got == yte) < 1.0  # a non-trivial task


def test_class_prototypes_are_means_and_distances_match_formula() -> None:
    X, y = _blobs(n_per=7, k=3, d=5)
    classes, P = class_prototypes(X, y)
    assert classes.tolist() == ["class_0", "class_1", "class_2"]
    for c, p in zip(classes, P):
        np.testing.assert_allclose(p, X[y == c].mean(axis=0), rtol=1e-5)
    d_euc = distances(X, P, "euclidean")
    np.testing.assert_allclose(d_euc, np.linalg.norm(X[:, None].astype(np.float64) - P[None], axis=2), rtol=1e-6)
    d_cos = distances(X, P, "cosine")
    P64, X64 = P.astype(np.float64), X.astype(np.float64)
    cos = np.array([[x @ p / np.linalg.norm(x) / np.linalg.norm(p) for p in P64] for x in X64])
    np.testing.assert_allclose(d_cos, 1.0 - cos, atol=1e-12)
    assert d_cos.shape == (len(X), 3) and d_cos.min() >= 0 and d_cos.max() <= 2


def test_partial_fit_adds_classes_without_touching_old_ones() -> None:
    X, y = _blobs(k=4)
    old = np.isin(y, ["class_0", "class_1"])
    clf = NearestMeanClassifier().partial_fit(X[old], y[old])
    P_old = clf.prototypes_.copy()
    clf.partial_fit(X[~old], y[~old])
    np.testing.assert_array_equal(clf.prototypes_[:2], P_old)
    assert clf.classes_.tolist() == ["class_0", "class_1", "class_2", "class_3"]
    full = NearestMeanClassifier().fit(X, y)
    np.testing.assert_allclose(clf.prototypes_, full.prototypes_, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), full.predict(X))
    with pytest.raises(ValueError, match="already have a prototype"):
        clf.partial_fit(X[:3], y[:3])


def test_nmc_decision_function_is_negative_distance() -> None:
    X, y = _blobs()
    clf = NearestMeanClassifier("euclidean").fit(X, y)
    np.testing.assert_allclose(clf.decision_function(X), -distances(X, clf.prototypes_, "euclidean"))
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[clf.decision_function(X).argmax(1)])


# ---- the other classifiers equal scikit-learn used directly ---------------------------------------
def _sklearn_direct(method: str, n_train: int):
    if method == "knn":
        return KNeighborsClassifier(n_neighbors=min(5, n_train), metric="cosine")
    if method == "nb_per_class":
        return GaussianNB()
    raise AssertionError(method)


@pytest.mark.parametrize("method", ["knn", "linear", "linear_svm", "nb_per_class"])
def test_classifiers_match_sklearn(method: str) -> None:
    X, y, Xte, _ = _train_test()
    got = make_classifier(method, n_train=len(X)).fit(X, y).predict(Xte)
    if method == "linear":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Xten = Xte / np.linalg.norm(Xte, axis=1, keepdims=True)
        want = LogisticRegression(C=1.0, max_iter=5000).fit(Xn, y).predict(Xten)
    elif method == "linear_svm":  # Razavian et al.: L2-normalised features, linear SVM
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Xten = Xte / np.linalg.norm(Xte, axis=1, keepdims=True)
        want = LinearSVC(C=1.0).fit(Xn, y).predict(Xten)
    else:
        want = _sklearn_direct(method, len(X)).fit(X, y).predict(Xte)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k", [1, 4, 5, 60])
def test_cosine_knn_votes_as_sklearn_in_blocks_and_ties(k: int, monkeypatch) -> None:
    """k = 4 over 3 classes makes label ties (sklearn gives them to the label that sorts first); k = 60 is
    every training image; blocks of 7 queries leave a ragged last one."""
    from core.classify import knn
    from core.geometry import neighbours
    monkeypatch.setattr(neighbours, "_CHUNK", 7)
    rng = np.random.default_rng(4)
    X, Xte = rng.normal(size=(60, 9)), rng.normal(size=(50, 9))
    y = np.array(["b", "a", "c"])[rng.integers(0, 3, 60)]
    got = knn.CosineKNN(n_neighbors=k).fit(X, y).predict(Xte)
    want = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(X, y).predict(Xte)
    np.testing.assert_array_equal(got, want)


def test_knn_k_is_capped_by_training_size() -> None:
    assert make_classifier("knn", n_train=3).n_neighbors == 3
    assert make_classifier("knn", n_train=100).n_neighbors == 5


def test_unknown_classifier_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="nmc"):
        make_classifier("svm")
    assert set(classifier_names()) >= {"nmc", "knn", "linear", "linear_svm", "nb", "nb_per_class", "lda", "ranpac",
                                       "fecam"}


# ---- evaluate -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["nmc", "knn", "linear", "nb", "nb_per_class", "lda", "ranpac", "fecam"])
def test_evaluate_given_equals_direct_fit(method: str) -> None:
    X, y, Xte, yte = _train_test()
    r = evaluate(X, y, method, X_test=Xte, y_test=yte)
    want = make_classifier(method, n_train=len(X)).fit(X, y).predict(Xte)
    assert r.protocol == "given" and r.n_train == len(X) and r.n_test == len(Xte)
    np.testing.assert_array_equal(r.y_pred, want)
    assert r.accuracy == pytest.approx(np.mean(want == yte))
    np.testing.assert_array_equal(r.misclassified, np.flatnonzero(want != yte))


def test_evaluate_split_is_stratified_and_consistent() -> None:
    X, y = _blobs(n_per=10)
    r = evaluate(X, y, "nmc", test_size=0.3, seed=3)
    assert r.protocol == "split"
    assert r.n_train + r.n_test == len(X)
    np.testing.assert_array_equal(r.y_true, y[r.test_indices])
    assert sorted(np.unique(r.y_true, return_counts=True)[1].tolist()) == [3] * 5  # 30 % of 10 per class
    assert r.confusion.shape == (5, 5) and r.confusion.sum() == r.n_test
    assert np.trace(r.confusion) == round(r.accuracy * r.n_test)
    assert set(r.misclassified) <= set(r.test_indices)
    wrong = np.isin(r.test_indices, r.misclassified)
    assert np.all(r.y_pred[wrong] != r.y_true[wrong]) and np.all(r.y_pred[~wrong] == r.y_true[~wrong])
    again = evaluate(X, y, "nmc", test_size=0.3, seed=3)
    np.testing.assert_array_equal(again.test_indices, r.test_indices)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evaluate_tiny_set_uses_exact_leave_one_out(metric: str) -> None:
    X, y = _blobs(n_per=4, k=4)  # N = 16 < 20
    r = evaluate(X, y, "nmc", metric=metric)
    assert r.protocol == "loo" and r.n_test == 16 and r.n_train == 15
    want = np.array([_numpy_nmc(np.delete(X, i, 0), np.delete(y, i), X[i : i + 1], metric)[0] for i in range(len(X))])
    np.testing.assert_array_equal(r.y_pred, want)


def test_evaluate_loo_generic_path_and_singleton_class() -> None:
    X, y = _blobs(n_per=4, k=3)
    y = y.copy()
    y[0] = "lonely"  # a class with one image can never be predicted when it is held out
    for method in ("nmc", "knn"):
        r = evaluate(X, y, method)
        assert r.protocol == "loo"
        assert r.y_pred[0] != "lonely"
        assert 0 in r.misclassified
    r = evaluate(X, y, "knn")
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine")
    want = [knn.fit(np.delete(X, i, 0), np.delete(y, i)).predict(X[i : i + 1])[0] for i in range(len(X))]
    np.testing.assert_array_equal(r.y_pred, want)


def test_evaluate_rejects_bad_input() -> None:
    X, y = _blobs()
    with pytest.raises(ValueError, match="2-D"):
        evaluate(X[0], y[:1])
    with pytest.raises(ValueError, match="labels"):
        evaluate(X, y[:-1])
    with pytest.raises(ValueError, match="both"):
        evaluate(X, y, X_test=X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        evaluate(X[:20], y[:20])


# ---- few-shot curve -------------------------------------------------------------------------------
def test_few_shot_curve_shapes_ranges_and_seed() -> None:
    X, y = _blobs(n_per=8, k=4)
    rows = few_shot_curve(X, y, shots=(1, 2, 5, 10), methods=("nmc", "linear", "nb"), draws=4, seed=0)
    # 10 shots leave no test image (8 per class): skipped
    assert [(r.method, r.shots) for r in rows] == [(m, k) for m in ("nmc", "linear", "nb") for k in (1, 2, 5)]
    for r in rows:
        assert 0.0 <= r.mean_acc <= 1.0 and r.std_acc >= 0.0 and r.n_draws == 4
    assert rows == few_shot_curve(X, y, shots=(1, 2, 5, 10), methods=("nmc", "linear", "nb"), draws=4, seed=0)
    assert rows != few_shot_curve(X, y, shots=(1, 2, 5, 10), methods=("nmc", "linear", "nb"), draws=4, seed=1)
    nmc = {r.shots: r.mean_acc for r in rows if r.method == "nmc"}
    assert nmc[5] > nmc[1]  # more shots, better prototypes


# ---- class-incremental ----------------------------------------------------------------------------
def test_class_incremental_hand_computed() -> None:
    # Train prototypes: A (1,0), B (10,1), C (5,2); Euclidean NMC.
    X = np.array([[0, 0], [2, 0], [10, 0], [10, 2], [5, 0], [5, 4]], dtype=np.float32)
    y = np.array(["A", "A", "B", "B", "C", "C"])
    Xt = np.array([[1, 1], [4, 0], [9, 1], [7, 1], [5, 3]], dtype=np.float32)
    yt = np.array(["A", "A", "B", "B", "C"])
    r = class_incremental(X, y, n_tasks=2, metric="euclidean", X_test=Xt, y_test=yt)
    # step 1 (A, B): all 4 right. step 2 adds C at (5, 2): (4,0) and (7,1) are now nearer C
    # (sqrt 5 < 3), so 3 of 5 right: task 0 keeps 2/4, task 1 (C) 1/1.
    assert [g.tolist() for g in r.task_classes] == [["A", "B"], ["C"]]
    np.testing.assert_allclose(r.step_accuracies, [1.0, 0.6])
    np.testing.assert_allclose(r.task_accuracy, [[1.0, np.nan], [0.5, 1.0]])
    assert r.average_incremental_accuracy == pytest.approx(0.8)
    assert r.final_accuracy == pytest.approx(0.6)
    assert r.n_seen_classes.tolist() == [2, 3]
    # class order changes the groups: C first, then A and B
    r2 = class_incremental(X, y, n_tasks=2, class_order=["C", "A", "B"], metric="euclidean", X_test=Xt, y_test=yt)
    assert [g.tolist() for g in r2.task_classes] == [["C", "A"], ["B"]]
    assert r2.final_accuracy == pytest.approx(0.6)


def test_class_incremental_split_protocol() -> None:
    X, y = _blobs(n_per=10, k=6)
    r = class_incremental(X, y, n_tasks=3, seed=0)
    assert r.protocol == "split" and len(r.step_accuracies) == 3
    assert r.n_seen_classes.tolist() == [2, 4, 6]
    assert r.average_incremental_accuracy == pytest.approx(r.step_accuracies.mean())
    # final step equals NMC on the same split with all classes at once
    again = class_incremental(X, y, n_tasks=1, seed=0)
    assert again.final_accuracy == pytest.approx(r.final_accuracy)
    with pytest.raises(ValueError, match="permutation"):
        class_incremental(X, y, n_tasks=2, class_order=["class_0"])
    with pytest.raises(ValueError, match="n_tasks"):
        class_incremental(X, y, n_tasks=7)


# ---- TEEN -----------------------------------------------------------------------------------------
def _teen_loops(Pb: np.ndarray, Pn: np.ndarray, alpha: float, tau: float, normalize: bool) -> np.ndarray:
    """TEEN written out: softmax over base classes of tau * cosine, weighted base mean, mix."""
    out = np.zeros_like(Pn, dtype=np.float64)
    for n in range(len(Pn)):
        sims = [float(Pn[n] @ Pb[b]) / (np.linalg.norm(Pn[n]) * np.linalg.norm(Pb[b])) for b in range(len(Pb))]
        e = [np.exp(tau * s) for s in sims]
        w = [v / sum(e) for v in e]
        if normalize:
            shift = sum(w[b] * Pb[b] / np.linalg.norm(Pb[b]) for b in range(len(Pb)))
            out[n] = alpha * Pn[n] / np.linalg.norm(Pn[n]) + (1 - alpha) * shift / np.linalg.norm(shift)
        else:
            out[n] = alpha * Pn[n] + (1 - alpha) * sum(w[b] * Pb[b] for b in range(len(Pb)))
    return out


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("alpha,tau", [(0.5, 16.0), (0.9, 2.0), (0.0, 30.0)])
def test_teen_matches_formula(normalize: bool, alpha: float, tau: float) -> None:
    rng = np.random.default_rng(0)
    Pb, Pn = rng.normal(size=(6, 8)) * 3, rng.normal(size=(3, 8))
    got = teen_calibrate(Pb, Pn, alpha, tau, normalize=normalize)
    np.testing.assert_allclose(got, _teen_loops(Pb, Pn, alpha, tau, normalize), rtol=1e-9, atol=1e-12)


def test_teen_limits() -> None:
    rng = np.random.default_rng(1)
    Pb, Pn = rng.normal(size=(4, 5)), rng.normal(size=(2, 5))
    np.testing.assert_allclose(teen_calibrate(Pb, Pn, alpha=1.0, normalize=False), Pn)
    # tau = 0: uniform weights over base classes
    np.testing.assert_allclose(teen_calibrate(Pb, Pn, alpha=0.0, tau=0.0, normalize=False), np.tile(Pb.mean(0), (2, 1)))
    with pytest.raises(ValueError, match="alpha"):
        teen_calibrate(Pb, Pn, alpha=1.5)


def test_teen_experiment_reports_both_settings() -> None:
    X, y = _blobs(n_per=12, k=6)
    out = teen_experiment(X, y, base_classes=["class_0", "class_1", "class_2", "class_3"], k_shot=2, seed=0)
    for key in ("plain", "calibrated"):
        assert set(out[key]) == {"base", "new", "all"}
        assert all(0.0 <= v <= 1.0 for v in out[key].values())
        n = out["n_test_base"] + out["n_test_new"]
        weighted = out[key]["base"] * out["n_test_base"] + out[key]["new"] * out["n_test_new"]
        assert out[key]["all"] == pytest.approx(weighted / n)
    assert out["n_base_classes"] == 4 and out["n_new_classes"] == 2
    assert out == teen_experiment(X, y, base_classes=["class_0", "class_1", "class_2", "class_3"], k_shot=2, seed=0)
    with pytest.raises(ValueError, match="do not occur"):
        teen_experiment(X, y, base_classes=["nope"])


# ---- zero-shot and margins ------------------------------------------------------------------------
def test_prompt_prototypes_average_normalised_templates() -> None:
    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}

    def encode_text(texts: list[str]) -> np.ndarray:
        return np.stack([table.setdefault(t, rng.normal(size=6)) for t in texts])

    templates = ("a photo of a {}.", "art of the {}.")
    P = prompt_prototypes(encode_text, ["cat", "dog"], templates)
    for i, c in enumerate(["cat", "dog"]):
        e = [table[t.format(c)] / np.linalg.norm(table[t.format(c)]) for t in templates]
        m = (e[0] + e[1]) / 2
        np.testing.assert_allclose(P[i], m / np.linalg.norm(m))
    with pytest.raises(ValueError, match="placeholder"):
        prompt_prototypes(encode_text, ["cat"], ("no slot",))


def test_zero_shot_mix_endpoints() -> None:
    X, y = _blobs(k=3)
    _, img_P = class_prototypes(X, y)
    txt_P = np.random.default_rng(2).normal(size=img_P.shape)
    text_only = zero_shot(X, txt_P)
    np.testing.assert_array_equal(zero_shot(X, txt_P, img_P, mix=0.0), text_only)
    np.testing.assert_array_equal(zero_shot(X, txt_P, img_P, mix=1.0), distances(X, img_P).argmin(1))
    np.testing.assert_allclose(np.linalg.norm(mix_prototypes(txt_P, img_P, 0.3), axis=1), 1.0)


def test_per_class_margin_hand_example() -> None:
    D = np.array([[0.1, 0.5, 0.3], [0.4, 0.2, 0.1]])
    np.testing.assert_allclose(per_class_margin(D, np.array([0, 1])), [0.3 - 0.1, 0.1 - 0.2])
    with pytest.raises(ValueError, match="integer"):
        per_class_margin(D, np.array([0.0, 1.0]))
