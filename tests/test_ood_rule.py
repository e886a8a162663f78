"""One Mahalanobis convention (core.classify.ood) and the "far from every class" rule (core.classify.ood_rule),
against numpy written out and, with real weights, on the stamps against real out-of-set photos."""
from __future__ import annotations

import numpy as np
import pytest

from core.classify.lda import ShrunkLDA
from core.classify.ood import ood_scores, unknown_class_ood
from core.classify.ood_rule import FAR, IN_DISTRIBUTION, calibrate_ood


def _blobs(n_per=20, k=4, d=5, seed=0, spread=4.0):
    rng = np.random.default_rng(seed)
    centres = spread * rng.normal(size=(k, d))
    X = np.concatenate([rng.normal(size=(n_per, d)) + c for c in centres])
    y = np.repeat(np.array([f"c{i}" for i in range(k)]), n_per)
    return X, y, centres


def test_mahalanobis_is_the_distance_and_the_square_says_so():
    X, y, _ = _blobs()
    m = ShrunkLDA().fit(X, y)
    s = ood_scores(m, X[:7])
    P = np.linalg.inv(m.covariance_)
    sq = np.stack([np.einsum("ni,ij,nj->n", X[:7] - mu, P, X[:7] - mu) for mu in m.means_], axis=1)  # [7, K]
    np.testing.assert_allclose(s.distance_sq, sq, rtol=1e-8)
    np.testing.assert_allclose(s.distance, np.sqrt(sq), rtol=1e-8)
    np.testing.assert_allclose(s.mahalanobis, np.sqrt(sq).min(axis=1), rtol=1e-8)
    np.testing.assert_allclose(s.mahalanobis_sq, sq.min(axis=1), rtol=1e-8)
    assert list(s.nearest) == list(m.classes_[np.argmin(sq, axis=1)])
    assert s.score("mahalanobis") is s.mahalanobis
    assert not hasattr(s, "distances")  # the old, ambiguous name is gone: a page cannot square-root twice
    # AUROC does not depend on the convention (a monotone map)
    held = unknown_class_ood(X, y, "c1")
    assert held.auroc["mahalanobis"] > 0.9


def _p_value_by_hand(ref, X, y, U, score):
    """The rule written out: refit each fold's statistics, score the new image by the fold that held each
    reference image out, count."""
    out = []
    for u in U:
        as_far = 0
        for i in range(len(ref.reference_rows)):
            train = ref.reference_rows[ref.fold_of != ref.fold_of[i]]
            if score == "mahalanobis":
                m = ShrunkLDA().fit(X[train], y[train])
                inv = np.linalg.pinv(m.covariance_)
                s = min(np.sqrt((u - mu) @ inv @ (u - mu)) for mu in m.means_)
            else:
                means = [X[train][y[train] == c].mean(axis=0) for c in np.unique(y)]
                s = min(1 - u @ mu / np.linalg.norm(u) / np.linalg.norm(mu) for mu in means)
            as_far += ref.reference[i] >= s - 1e-9
        out.append((1 + as_far) / (len(ref.reference) + 1))
    return np.array(out)


@pytest.mark.parametrize("score", ["mahalanobis", "cosine"])
def test_the_rule_calls_a_far_point_far_and_matches_the_rule_written_out(score):
    X, y, centres = _blobs(n_per=10, k=3, d=4)
    if score == "cosine":
        X = X + 20.0  # cosine needs directions that differ: move everything off the origin
        centres = centres + 20.0
    ref = calibrate_ood(X, y, score=score, folds=5)
    assert ref.n_reference == 30 and sorted(set(ref.fold_of)) == [0, 1, 2, 3, 4]
    far_point = centres[0] + (60.0 * np.ones(4) if score == "mahalanobis" else np.array([-60.0, 60.0, -60.0, 60.0]))
    U = np.stack([centres[1], far_point])  # a class centre, and a point far from every class
    v = ref.judge(U, ["centre.png", "far.png"])
    assert (v[0].verdict, v[1].verdict) == (IN_DISTRIBUTION, FAR) and v[1].far and not v[0].far
    assert v[0].nearest == "c1" and v[1].p_value == pytest.approx(1 / 31) and v[1].percentile == 100.0
    np.testing.assert_allclose([x.p_value for x in v], _p_value_by_hand(ref, X, y, U, score), rtol=1e-9)
    assert v[1].sentence.startswith("far.png is far from every class:") and "95th percentile" in v[1].sentence
    assert v[0].sentence.startswith("centre.png lies among the dataset's classes: nearest class c1")
    # the threshold is the conformal 95 % quantile of the reference
    assert ref.threshold == np.sort(ref.reference)[int(np.ceil(31 * 0.95)) - 1]


def test_the_rule_is_calibrated_on_in_distribution_images():
    """New images drawn like the dataset's are called far about 5 % of the time (not more)."""
    X, y, centres = _blobs(n_per=30, k=3, d=4, seed=1)
    ref = calibrate_ood(X, y, score="mahalanobis")
    rng = np.random.default_rng(5)
    U = np.concatenate([rng.normal(size=(200, 4)) + c for c in centres])
    share = np.mean([v.far for v in ref.judge(U)])
    assert share < 0.1


def test_the_rule_says_what_it_cannot_do():
    X, y, _ = _blobs(n_per=3, k=2)
    with pytest.raises(ValueError, match="99th-percentile rule needs at least 99 images"):
        calibrate_ood(X, y, level=0.99, score="cosine")
    with pytest.raises(ValueError, match="class 'c1' has 2 image"):
        calibrate_ood(np.concatenate([X, X[:1]]), np.array([*y[:-1], "c0", "c0"]), score="mahalanobis")
    with pytest.raises(ValueError, match="unknown OOD score"):
        calibrate_ood(X, y, score="energy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names for"):
        calibrate_ood(*_blobs()[:2]).judge(X[:2], ["one"])


# ---- real weights: the stamps' 8 classes against scikit-image's photos -------------------------------------
# Measured (default rule: cosine, level 0.95, 5 folds over the 48 stamps): every one of cat / astronaut / coffee /
# rocket lies beyond all 48 held-out stamps (p = 1/49) with each of the three built-in backbones; with the
# Mahalanobis score EfficientNet-Lite0 calls only the astronaut far (cat p = 0.10). An unseen stamp class (each
# class left out in turn) is called far for only 23-35 % of its images (cosine; Mahalanobis 10-23 %): stamps
# of another class are photographed like the rest, and the rule says so rather than guessing.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["vits14_saliency", "mobilenetv2", "efficientnet_lite0"])
def test_the_scikit_image_photos_are_far_from_every_stamp_class(get_backbone, stamps, name):
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.extract import extract_features
    from tests.conftest import SCENES

    b, store = get_backbone(name), FeatureStore()
    X = extract_features(b, stamps.records, store=store)["embedding"]
    y = np.asarray(stamps.labels)
    scenes = load_folder(SCENES)
    U = extract_features(b, scenes.records, store=store)["embedding"]
    ref = calibrate_ood(X, y)
    assert ref.n_reference == 48 and ref.score == "cosine"
    verdicts = ref.judge(U, [r.name for r in scenes.records])
    assert [(v.name, v.verdict) for v in verdicts] == [(n, FAR) for n in ("astronaut.jpg", "cat.jpg", "coffee.jpg",
                                                                           "rocket.jpg")]
    assert all(v.p_value == pytest.approx(1 / 49) and v.percentile == 100.0 for v in verdicts)
    # each stamp against a rule calibrated without it: called far about 5 % of the time, as designed
    far = [calibrate_ood(np.delete(X, i, 0), np.delete(y, i)).judge(X[i:i + 1])[0].far for i in range(len(y))]
    assert np.mean(far) <= 0.15
