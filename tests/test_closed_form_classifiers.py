"""Closed-form classifiers on frozen features (nb, nb_per_class, lda, ranpac, fecam) and the OOD scores,
each against its definition written out here or the library that defines it."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import roc_auc_score
from sklearn.naive_bayes import GaussianNB

from core.classify.classifiers import classifier_info, classifier_names, make_classifier, register_classifier
from core.classify.evaluation import evaluate, few_shot_curve
from core.classify.fecam import FeCAM
from core.classify.incremental import class_incremental
from core.classify.lda import ShrunkLDA
from core.classify.naive_bayes import PerClassVarianceNB, SharedVarianceNB
from core.classify.ood import auroc, ood_scores, unknown_class_ood
from core.classify.ranpac import RIDGES, RanPAC, random_projection

NEW = ("nb", "nb_per_class", "lda", "ranpac", "fecam")


def _blobs(n_per: int = 12, k: int = 4, d: int = 10, seed: int = 0, positive: bool = False):
    """``[k * n_per, d]`` clusters with class-specific spreads; non-negative features if ``positive``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 2.0
    scales = rng.uniform(0.5, 2.0, size=(k, d))
    yi = np.repeat(np.arange(k), n_per)
    X = centres[yi] + scales[yi] * rng.normal(size=(len(yi), d))
    if positive:
        X = np.abs(X)
    return X, np.array([f"c{i}" for i in yi])


# ---- naive Bayes ---------------------------------------------------------------------------------------
class AuthorsNB:
    """The rule of Zheng et al.'s ``models/gaussnb.py``, written out: per-class population variances
    plus epsilon, merged across calls by the pairwise rule; prediction with their prior-weighted
    average and the log prior. Assumes every call holds the same classes (as theirs)."""

    def __init__(self, eps: float = 1e-9):
        self.eps, self.mu = eps, None

    def fit(self, X, y):
        cls = np.unique(y)
        mu = np.stack([X[y == c].mean(0) for c in cls])
        n = np.array([np.sum(y == c) for c in cls], dtype=float)
        var = np.stack([X[y == c].var(0) + self.eps for c in cls])
        if self.mu is None:
            self.cls, self.mu, self.n, self.var = cls, mu, n, var
        else:
            tot = self.n + n
            ssd = self.n[:, None] * self.var + n[:, None] * var + (n * self.n / tot)[:, None] * (self.mu - mu) ** 2
            self.mu = (self.n[:, None] * self.mu + n[:, None] * mu) / tot[:, None]
            self.var, self.n = ssd / tot[:, None], tot
        return self

    def joint(self, X):
        prior = self.n / self.n.sum()
        v = np.sum(self.var * prior[:, None], axis=0)
        return np.stack([np.log(prior[i]) - 0.5 * np.sum((X - self.mu[i]) ** 2 / v, axis=1)
                         for i in range(len(self.cls))], axis=1)


def test_nb_is_the_papers_shared_variance_rule() -> None:
    X, y = _blobs(n_per=15)
    keep = np.ones(len(y), bool)
    keep[:5] = False  # unequal class sizes: the priors matter
    X, y = X[keep], y[keep]
    ref = AuthorsNB().fit(X, y)
    nb = make_classifier("nb").fit(X, y)
    assert isinstance(nb, SharedVarianceNB)
    np.testing.assert_allclose(nb.decision_function(X), ref.joint(X), rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(nb.predict(X), ref.cls[np.argmax(ref.joint(X), axis=1)])
    # incremental: a second batch of the same classes merges exactly as the authors' fit does
    X2, y2 = _blobs(n_per=7, seed=5)
    ref.fit(X2, y2)
    nb.partial_fit(X2, y2)
    np.testing.assert_allclose(nb.decision_function(X2), ref.joint(X2), rtol=1e-9, atol=1e-6)
    # the shared variance is not the per-class one: the two variants disagree on these blobs
    assert not np.array_equal(nb.predict(X2), make_classifier("nb_per_class").fit(X, y).predict(X2))


def test_nb_adds_classes_one_by_one() -> None:
    X, y = _blobs()
    inc = SharedVarianceNB()
    for c in np.unique(y):
        inc.partial_fit(X[y == c], y[y == c])
    np.testing.assert_allclose(inc.decision_function(X), SharedVarianceNB().fit(X, y).decision_function(X), atol=1e-8)


def test_nb_per_class_is_sklearn_gaussian_nb() -> None:
    X, y = _blobs()
    Xte, _ = _blobs(seed=3)
    ours = make_classifier("nb_per_class").fit(X, y)
    assert isinstance(ours, PerClassVarianceNB)
    sk = GaussianNB().fit(X, y)
    np.testing.assert_allclose(ours.decision_function(Xte), sk.predict_joint_log_proba(Xte), rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(Xte), sk.predict(Xte))
    # more images of known classes: sklearn's partial_fit (which re-derives epsilon from each batch,
    # where ours keeps the first one: a 1e-9-relative difference)
    X2, y2 = _blobs(seed=4)
    sk.partial_fit(X2, y2)
    ours.partial_fit(X2, y2)
    np.testing.assert_allclose(ours.decision_function(Xte), sk.predict_joint_log_proba(Xte), rtol=1e-7)


# ---- LDA --------------------------------------------------------------------------------------------
def test_lda_matches_sklearn_lsqr_auto_and_is_incremental() -> None:
    X, y = _blobs(n_per=10, d=25)  # D > n per class: the shrinkage matters
    Xte, _ = _blobs(n_per=10, d=25, seed=9)
    sk = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
    ours = make_classifier("lda").fit(X, y)
    np.testing.assert_allclose(ours.covariance_, sk.covariance_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.decision_function(Xte), sk.decision_function(Xte), rtol=1e-7, atol=1e-7)
    np.testing.assert_array_equal(ours.predict(Xte), sk.predict(Xte))
    inc = ShrunkLDA()
    for c in np.unique(y)[::-1]:  # one class at a time, in another order
        inc.partial_fit(X[y == c], y[y == c])
    order = np.searchsorted(np.unique(y), inc.classes_)
    np.testing.assert_allclose(inc.decision_function(Xte), sk.decision_function(Xte)[:, order], rtol=1e-7, atol=1e-7)
    with pytest.raises(ValueError, match="only adds new classes"):
        inc.partial_fit(X[:3], y[:3])
    with pytest.raises(ValueError, match="at least 2 images per class"):
        ShrunkLDA().fit(X[[0, 20, 21]], y[[0, 20, 21]])


def test_lda_with_two_images_per_class_is_sklearns_least_squares_answer() -> None:
    X, y = _blobs(n_per=2, d=30)  # Ledoit-Wolf gives shrinkage 0 on two images: a singular covariance
    Xte, _ = _blobs(n_per=5, d=30, seed=8)
    sk = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
    ours = ShrunkLDA().fit(X, y)
    assert np.linalg.matrix_rank(ours.covariance_) < 30
    np.testing.assert_allclose(ours.decision_function(Xte), sk.decision_function(Xte), rtol=1e-6, atol=1e-6)


def test_lda_mahalanobis_formula() -> None:
    X, y = _blobs(d=6)
    m = ShrunkLDA().fit(X, y)
    P = np.linalg.inv(m.covariance_)
    want = np.stack([np.einsum("ni,ij,nj->n", X - mu, P, X - mu) for mu in m.means_], axis=1)
    np.testing.assert_allclose(m.mahalanobis_sq(X), want, rtol=1e-8, atol=1e-8)


# ---- RanPAC -----------------------------------------------------------------------------------------
def _ranpac_dense(X, y, classes, M, seed, lam):
    """The paper's readout with explicit G and C: h = ReLU(x W); (G + lam I)^-1 C."""
    H = np.maximum(X.astype(np.float32) @ random_projection(X.shape[1], M, seed), 0).astype(np.float64)
    Y = (y[:, None] == classes[None, :]).astype(float)
    G, C = H.T @ H, H.T @ Y
    return np.linalg.solve(G + lam * np.eye(M), C)


def test_ranpac_equals_the_dense_gram_formula_and_is_incremental() -> None:
    X, y = _blobs(n_per=10, d=8)
    Xte, _ = _blobs(seed=2, d=8)
    Wo = _ranpac_dense(X, y, np.unique(y), 300, 7, 1.0)
    r = RanPAC(M=300, ridge=1.0, seed=7).fit(X, y)
    tol = 1e-6 * np.abs(Wo).max()
    np.testing.assert_allclose(r.readout(), Wo, rtol=1e-6, atol=tol)
    Hte = np.maximum(Xte.astype(np.float32) @ random_projection(8, 300, 7), 0).astype(np.float64)
    np.testing.assert_allclose(r.decision_function(Xte), Hte @ Wo, rtol=1e-6, atol=tol * np.abs(Hte).sum(1).max())
    inc = RanPAC(M=300, ridge=1.0, seed=7)
    for c in np.unique(y):
        inc.partial_fit(X[y == c], y[y == c])
    np.testing.assert_allclose(inc.readout(), Wo, rtol=1e-6, atol=tol)
    # a small M: the stacked factors outgrow M + K columns and are brought back by one QR
    Wo_small = _ranpac_dense(X, y, np.unique(y), 20, 7, 1.0)
    small = RanPAC(M=20, ridge=1.0, seed=7)
    for c in np.unique(y):
        small.partial_fit(X[y == c], y[y == c])
    assert small._R.shape == (24, 24)
    np.testing.assert_allclose(small.readout(), Wo_small, rtol=1e-6, atol=1e-6 * np.abs(Wo_small).max())


def test_ranpac_chooses_the_ridge_as_the_authors() -> None:
    X, y = _blobs(n_per=10, d=8)
    r = RanPAC(M=200, seed=3).fit(X, y)
    # the authors' optimise_ridge_parameter on the same shuffled images: first 80 % fit, rest scored
    H = np.maximum(X.astype(np.float32) @ random_projection(8, 200, 3), 0).astype(np.float64)
    Y = (y[:, None] == np.unique(y)[None, :]).astype(float)
    perm = np.random.default_rng([3, len(X)]).permutation(len(X))
    H, Y = H[perm], Y[perm]
    n = int(len(H) * 0.8)
    G, Q = H[:n].T @ H[:n], H[:n].T @ Y[:n]
    losses = [np.mean((H[n:] @ np.linalg.solve(G + lam * np.eye(200), Q) - Y[n:]) ** 2) for lam in RIDGES]
    assert r.ridge_ == RIDGES[int(np.argmin(losses))]
    assert r.ridge_history_ == [r.ridge_]
    with pytest.raises(ValueError, match="80/20"):
        RanPAC(M=50).fit(X[:1], y[:1])


# ---- FeCAM ------------------------------------------------------------------------------------------
def _fecam_dense(X, y, Xte, beta=0.5, a1=1.0, a2=1.0, passes=2):
    """The authors' FeCAM rule with dense matrices and pinv (models/base.py, utils/maha_utils.py)."""
    def t(v):
        return np.sign(v) * np.abs(v) ** beta

    def norm(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    def shrink(c):
        off = c.copy()
        np.fill_diagonal(off, 0.0)
        mask = off != 0.0
        iden = np.eye(len(c))
        return c + a1 * np.mean(np.diag(c)) * iden + a2 * (off * mask).sum() / mask.sum() * (1 - iden)

    Z = norm(t(norm(Xte)))
    out = []
    for c in np.unique(y):
        cov = np.cov(t(X[y == c]).T)
        for _ in range(passes):
            cov = shrink(cov)
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        diff = Z - norm(t(X[y == c].mean(0)))
        out.append(np.diag(diff @ np.linalg.pinv(corr) @ diff.T))
    return np.stack(out, axis=1)


def test_fecam_on_float32_features_scores_in_float32_and_agrees() -> None:
    X, y = _blobs(n_per=40, d=10, positive=True)  # more images than dimensions: the dense path
    Xte, _ = _blobs(n_per=10, d=10, seed=4, positive=True)
    m = FeCAM().fit(X, y)
    assert m._models[0].dense_pinv is not None
    s64, s32 = m.decision_function(Xte), m.decision_function(Xte.astype(np.float32))
    np.testing.assert_allclose(s32, s64, rtol=1e-4)
    assert not np.array_equal(s32, s64)  # float32 products did run
    np.testing.assert_array_equal(m.predict(Xte.astype(np.float32)), m.predict(Xte))


def test_fecam_inverse_is_numpys_pinv_for_definite_and_singular_matrices() -> None:
    from core.classify.fecam import _pinv_symmetric
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 12))
    for A in (np.cov(X.T) + 0.1 * np.eye(12), np.cov(X[:5].T)):  # positive definite; rank 4
        np.testing.assert_allclose(_pinv_symmetric(A), np.linalg.pinv(A, hermitian=True), rtol=1e-8, atol=1e-10)


def test_fecam_with_more_images_than_dimensions_takes_the_dense_path_and_the_same_rule() -> None:
    X, y = _blobs(n_per=30, d=8)  # n_c + 1 > D: a dense pseudo-inverse per class
    Xte, _ = _blobs(n_per=6, d=8, seed=4)
    f = make_classifier("fecam").fit(X, y)
    assert all(m.core_inv is None and m.dense_pinv is not None for m in f._models)
    np.testing.assert_allclose(f.mahalanobis_sq(Xte), _fecam_dense(X, y, Xte), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("positive", [True, False])
def test_fecam_equals_the_authors_dense_rule(positive: bool) -> None:
    X, y = _blobs(n_per=6, d=20, positive=positive)  # n < D: the low-rank path
    Xte, _ = _blobs(n_per=6, d=20, seed=4, positive=positive)
    f = make_classifier("fecam").fit(X, y)
    assert isinstance(f, FeCAM)
    np.testing.assert_allclose(f.mahalanobis_sq(Xte), _fecam_dense(X, y, Xte), rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(f.predict(Xte), np.unique(y)[np.argmin(_fecam_dense(X, y, Xte), axis=1)])
    one_pass = FeCAM(shrink_passes=1, alpha2=0.0).fit(X, y)  # the authors' ViT script setting
    np.testing.assert_allclose(one_pass.mahalanobis_sq(Xte), _fecam_dense(X, y, Xte, a2=0.0, passes=1), rtol=1e-6,
                               atol=1e-8)
    with pytest.raises(ValueError, match="at least 2 images per class"):
        FeCAM().fit(X[[0, 1, 6]], y[[0, 1, 6]])


# ---- registry, evaluation, incremental ----------------------------------------------------------------
def test_registry_is_dynamic_and_describes_every_method() -> None:
    names = classifier_names()
    assert set(NEW) <= set(names) and {"nmc", "knn", "linear"} <= set(names)
    for n in names:
        info = classifier_info(n)
        assert info.label and info.assumes.endswith(".")

    @register_classifier("test_only_nmc", "test", "Nothing.")
    def _factory(n_train=None):
        return make_classifier("nmc")

    try:
        assert "test_only_nmc" in classifier_names()
        with pytest.raises(ValueError, match="already registered"):
            register_classifier("test_only_nmc", "x", "y.")(_factory)
    finally:
        from core.classify import classifiers
        classifiers._REGISTRY.pop("test_only_nmc")


@pytest.mark.parametrize("method", NEW)
def test_new_methods_learn_and_evaluate(method: str) -> None:
    X, y = _blobs(n_per=15, positive=True)
    r = evaluate(X, y, method, seed=1)
    assert r.protocol == "split" and r.accuracy > 0.6  # chance is 0.25


def test_few_shot_curve_leaves_out_methods_below_their_minimum() -> None:
    X, y = _blobs(n_per=8, positive=True)
    rows = few_shot_curve(X, y, shots=(1, 3), methods=("nb", "lda", "fecam"), draws=2)
    got = {(r.method, r.shots) for r in rows}
    assert got == {("nb", 1), ("nb", 3), ("lda", 3), ("fecam", 3)}


@pytest.mark.parametrize("method", ["lda", "nb", "fecam", "ranpac"])
def test_class_incremental_with_statistics_equals_a_joint_fit(method: str) -> None:
    X, y = _blobs(n_per=10, positive=True)
    Xte, yte = _blobs(n_per=10, seed=6, positive=True)
    kw = {"ridge": 1.0, "M": 500} if method == "ranpac" else {}
    r = class_incremental(X, y, n_tasks=2, method=method, X_test=Xte, y_test=yte, classifier_kw=kw)
    joint = make_classifier(method, **kw).fit(X, y).predict(Xte)
    assert r.final_accuracy == pytest.approx(np.mean(joint == yte))
    assert r.n_seen_classes.tolist() == [2, 4]
    with pytest.raises(ValueError, match="partial_fit"):
        class_incremental(X, y, n_tasks=2, method="knn")


@pytest.mark.parametrize("method", ["nmc", "fecam"])
def test_class_incremental_scored_once_equals_scoring_after_every_task(method: str, monkeypatch) -> None:
    """NMC and FeCAM never change a class's scores once it is added, so a run scores the test images
    once at the end; that must give every step's accuracies exactly as scoring after each task."""
    X, y = _blobs(n_per=15, k=6, positive=True)
    once = class_incremental(X, y, n_tasks=3, method=method, seed=2)
    cls = type(make_classifier(method))
    assert cls.fixed_class_scores
    monkeypatch.setattr(cls, "fixed_class_scores", False)
    every = class_incremental(X, y, n_tasks=3, method=method, seed=2)
    np.testing.assert_array_equal(once.step_accuracies, every.step_accuracies)
    np.testing.assert_array_equal(once.task_accuracy, every.task_accuracy)
    np.testing.assert_array_equal(once.n_seen_classes, every.n_seen_classes)
    assert len(set(once.step_accuracies)) > 1  # later classes do take images from earlier ones here


@pytest.mark.parametrize("method", ["ranpac", "lda"])
def test_class_incremental_embeds_test_images_once_with_the_same_numbers(method: str) -> None:
    """The other methods score after every task from test images embedded once (RanPAC: projected once);
    that must equal predicting the raw test images after every task, written out here."""
    X, y = _blobs(n_per=15, k=6, positive=True)
    Xte, yte = _blobs(n_per=10, k=6, seed=5, positive=True)
    kw = {"M": 300} if method == "ranpac" else {}
    r = class_incremental(X, y, n_tasks=3, method=method, X_test=Xte, y_test=yte, classifier_kw=kw)
    clf, seen = make_classifier(method, **kw), np.zeros(len(yte), bool)
    for t, g in enumerate(r.task_classes):
        clf.partial_fit(X[np.isin(y, g)], y[np.isin(y, g)])
        seen |= np.isin(yte, g)
        assert r.step_accuracies[t] == np.mean(clf.predict(Xte[seen]) == yte[seen])
    assert len(set(r.step_accuracies)) > 1


# ---- OOD --------------------------------------------------------------------------------------------
def test_ood_scores_and_auroc_against_definitions_and_sklearn() -> None:
    X, y = _blobs(n_per=15, d=6)
    m = ShrunkLDA().fit(X[y != "c3"], y[y != "c3"])
    s = ood_scores(m, X)
    prior = np.array([np.mean(y[y != "c3"] == c) for c in m.classes_])
    np.testing.assert_allclose(s.energy, -logsumexp(np.log(prior) - 0.5 * m.mahalanobis_sq(X), axis=1))
    np.testing.assert_allclose(s.mahalanobis_sq, m.mahalanobis_sq(X).min(axis=1))
    np.testing.assert_allclose(s.mahalanobis, np.sqrt(m.mahalanobis_sq(X).min(axis=1)))
    is_unk = y == "c3"
    for kind in ("mahalanobis", "energy"):
        assert auroc(s.score(kind), is_unk) == pytest.approx(roc_auc_score(is_unk, s.score(kind)))
    ties = np.array([0.0, 1.0, 1.0, 2.0, 1.0])
    lab = np.array([False, True, False, True, True])
    assert auroc(ties, lab) == pytest.approx(roc_auc_score(lab, ties))
    with pytest.raises(ValueError, match="positive and negative"):
        auroc([1.0, 2.0], [True, True])


def test_unknown_class_ood_separates_a_far_class() -> None:
    X, y = _blobs(n_per=15, d=6)
    X[y == "c2"] += 8.0  # far from every other class
    res = unknown_class_ood(X, y, "c2", seed=0)
    assert res.is_unknown.sum() == 15 and set(y[res.test_indices[~res.is_unknown]]) == {"c0", "c1", "c3"}
    for kind, a in res.auroc.items():
        assert a == pytest.approx(roc_auc_score(res.is_unknown, res.scores.score(kind)))
        assert a > 0.9
    with pytest.raises(ValueError, match="do not occur"):
        unknown_class_ood(X, y, "nope")
    none = unknown_class_ood(X, y, seed=0)  # nothing held out: the test split, scored out of sample
    assert none.auroc == {} and not none.is_unknown.any() and len(none.test_indices) == 4 * round(0.3 * 15)


# ---- the two regimes -----------------------------------------------------------------------------------
def _rows(nb, lr, shots=(1, 2, 5, 10), n_test=10_000):
    from core.classify.evaluation import FewShotRow
    n = [n_test] * len(shots) if isinstance(n_test, int) else n_test
    return ([FewShotRow("nb", k, a, 0.0, 3, t) for k, a, t in zip(shots, nb, n)]
            + [FewShotRow("linear", k, a, 0.0, 3, t) for k, a, t in zip(shots, lr, n)])


def test_two_regimes_finds_the_crossing_on_a_log_scale() -> None:
    from core.classify.tables import PAPER_FINDING, two_regimes
    r = two_regimes(_rows([0.6, 0.7, 0.75, 0.78], [0.4, 0.6, 0.8, 0.9]))
    # NB - LR: +0.2, +0.1, -0.05: crosses between 2 and 5 shots, 2/3 of the way in log(shots)
    assert r.pattern == "both" and list(r.separated) == [1, 1, -1, -1]
    assert r.crossing == pytest.approx(np.exp(np.log(2) + (0.1 / 0.15) * (np.log(5) - np.log(2))))
    assert r.crossing_accuracy == pytest.approx(0.7 + (0.1 / 0.15) * 0.05) and r.mean_crossing == pytest.approx(r.crossing)
    assert r.sentence.startswith(PAPER_FINDING) and "both regimes show" in r.sentence
    # level at 1 shot (intervals overlap), NB ahead at 2 and 5, LR ahead at 10: still both regimes
    tie_first = two_regimes(_rows([0.537, 0.656, 0.702, 0.738], [0.539, 0.620, 0.640, 0.769]))
    assert tie_first.pattern == "both" and 5 < tie_first.crossing < 10 and list(tie_first.separated) == [0, 1, 1, -1]
    assert two_regimes(_rows([0.6, 0.7, 0.8, 0.9], [0.4, 0.5, 0.6, 0.7])).pattern == "generative"
    none = two_regimes(_rows([0.3, 0.4, 0.5, 0.605], [0.4, 0.5, 0.6, 0.6]))
    assert none.pattern == "discriminative" and none.crossing is None and "do not show" in none.sentence
    rev = two_regimes(_rows([0.3, 0.8], [0.4, 0.6], shots=(1, 2)))
    assert rev.pattern == "reversed" and 1 < rev.crossing < 2
    assert two_regimes(_rows([0.5], [0.4], shots=(1,))).pattern == "undetermined"


def test_two_regimes_marks_no_crossing_inside_the_intervals() -> None:
    """The issue's case: 48 images in 8 classes, so 40 / 32 / 24 / 8 test images per draw at 1 / 2 / 3 / 5
    shots; the mean curves cross (near 4.4 shots) but the intervals overlap everywhere."""
    from core.classify.intervals import wilson_interval
    from core.classify.tables import NO_CROSSING, two_regimes
    nb, lr, shots, n = [0.537, 0.656, 0.702, 0.738], [0.539, 0.620, 0.640, 0.769], (1, 2, 3, 5), (40, 32, 24, 8)
    r = two_regimes(_rows(nb, lr, shots, n))
    assert r.pattern == "indistinguishable" and r.crossing is None and r.crossing_accuracy is None
    assert list(r.separated) == [0, 0, 0, 0] and 3 < r.mean_crossing < 5
    assert NO_CROSSING in r.sentence and "inside the intervals" in r.sentence and "40/32/24/8 test images" in r.sentence
    np.testing.assert_allclose(r.generative_ci[3], wilson_interval(0.738 * 8, 8))
    # the same means on a large test set separate: NB ahead at 2 and 3 shots, LR at 5
    big = two_regimes(_rows(nb, lr, shots, 5000))
    assert big.pattern == "both" and 3 < big.crossing < 5 and NO_CROSSING not in big.sentence


def test_evaluate_methods_reports_what_cannot_run() -> None:
    from core.classify.tables import evaluate_methods
    X, y = _blobs(n_per=4)
    X, y = X[:13], y[:13]  # the last class has a single image: leave-one-out, and no covariance for it
    results, not_run = evaluate_methods(X, y, ("nmc", "lda", "fecam", "nb"))
    assert [r.method for r in results] == ["nmc", "nb"] and all(r.protocol == "loo" for r in results)
    assert set(not_run) == {"lda", "fecam"} and "at least 2 images per class" in not_run["lda"]
