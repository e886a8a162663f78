"""core.compare (comparison, metrics, speed, agreement, layers): the metrics are core.classify's
(one implementation), CKA, agreement, speed, nearest
neighbours, saliency choice, layer-by-layer features (timm's one-pass path equals the contract), and the
`backbone-lens compare` command. Tiny random-init timm models keep the fast tests fast; the real offline
backbones run in the tests marked slow."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score

from core.classify.evaluation import evaluate, few_shot_curve
from core.compare import agreement as CA
from core.compare import comparison as C
from core.compare import layers as CL
from core.compare import metrics as CM
from core.compare import speed as CS
from core.compare.cka import cka_matrix, layer_cka, linear_cka
from core.models.base import Backbone
from core.models.extract import ExtractStats, FeatureSet, extract_features
from tests.conftest import STAMPS

TINY_VIT, TINY_CNN, TINY_HEADLESS = "tiny_vit_test", "tiny_cnn_test", "tiny_cnn_headless_test"


# ---- tiny random-init backbones (seeded, so the same weights every time) -----------------------------
def tiny_backbone(name: str) -> Backbone:
    """A seeded random-init timm test model: a 6-block ViT, a CNN with a head, or a CNN without one."""
    import timm

    from core.models.spec import BackboneSpec
    from core.models.timm_backbone import TimmBackbone, timm_spec_fields

    arch, kw = {TINY_VIT: ("test_vit", {}), TINY_CNN: ("test_efficientnet", {}),
                TINY_HEADLESS: ("test_efficientnet", {"num_classes": 0})}[name]
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kw)
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
    spec = BackboneSpec(name=name, source="local", architecture=arch, weights_name="random-init (seed 0, tests)",
                        weights_sha256=digest, description="tiny random-init model for tests", **timm_spec_fields(model))
    return TimmBackbone(model, spec)


@contextlib.contextmanager
def tiny_registered():
    """The tiny backbones in the registry (as offline ones) for the duration, then removed again."""
    from core.models import registry

    registry._ensure_builtins()
    with pytest.MonkeyPatch.context() as mp:
        for n in (TINY_VIT, TINY_CNN, TINY_HEADLESS):
            mp.setitem(registry._REGISTRY, n, registry.RegistryEntry(n, lambda n=n: tiny_backbone(n),
                                                                     "tiny test model", True, lambda: True))
        yield


@pytest.fixture(scope="module")
def tiny():
    return {n: tiny_backbone(n) for n in (TINY_VIT, TINY_CNN, TINY_HEADLESS)}


@pytest.fixture(scope="module")
def tiny_fsets(tiny, stamps):
    return {n: extract_features(b, stamps.records) for n, b in tiny.items()}


def _clusters(n_classes: int = 8, per_class: int = 6, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 2
    X = np.concatenate([c + rng.normal(size=(per_class, dim)) for c in centres]).astype(np.float32)
    y = np.repeat([f"c{k}" for k in range(n_classes)], per_class)
    return X, y


def _fs(name: str, X: np.ndarray, labels, stats: ExtractStats | None = None) -> FeatureSet:
    from core.io.images import ImageRecord

    recs = [ImageRecord(hashlib.sha256(str(i).encode()).hexdigest(), f"img{i}.png", str(l), None, b"")
            for i, l in enumerate(labels)]
    return FeatureSet(name, 224, {"embedding": -1}, recs, {"embedding": X}, [], stats or ExtractStats())


# ---- metrics: one implementation, the one in core.classify.evaluation ------------------------------------------
def test_feature_metrics_equal_prototypes_evaluate_and_few_shot_curve():
    X, y = _clusters()
    fm = CM.feature_metrics(X, y)
    for m in ("nmc", "knn", "linear"):
        ref = evaluate(X, y, m)  # the library defaults, as the Prototypes page uses them
        got = fm.evals[m]
        assert got.accuracy == ref.accuracy and got.protocol == ref.protocol == "split"
        np.testing.assert_array_equal(got.y_pred, ref.y_pred)
        np.testing.assert_array_equal(got.test_indices, ref.test_indices)
    # few-shot: the same draws whatever other methods the Prototypes page asks for
    ref = {(r.method, r.shots): r for r in few_shot_curve(X, y, shots=(1, 2, 5, 10))}
    for k in (1, 5):
        mean, std, n = fm.few_shot[k]
        assert (mean, std, n) == (ref["nmc", k].mean_acc, ref["nmc", k].std_acc, ref["nmc", k].n_draws)
    assert fm.silhouette == pytest.approx(silhouette_score(X, y, metric="cosine"))
    # passing options through reaches evaluate unchanged
    alt = CM.feature_metrics(X, y, test_size=0.5, seed=3, draws=2)
    assert alt.evals["nmc"].accuracy == evaluate(X, y, "nmc", test_size=0.5, seed=3).accuracy
    assert alt.few_shot[1][2] == 2


def test_feature_metrics_equal_the_prototypes_page_defaults():
    """The Prototypes page calls core.classify.tables.evaluate_all (cosine, 30 % hold-out, seed 0 by default)."""
    from core.classify.tables import evaluate_all

    X, y = _clusters(seed=4)
    fm = CM.feature_metrics(X, y)
    for r in evaluate_all(X, y, ("nmc", "knn", "linear")):
        assert fm.evals[r.method].accuracy == r.accuracy
        np.testing.assert_array_equal(fm.evals[r.method].y_pred, r.y_pred)


def test_few_shot_too_few_images_is_nan_not_an_error():
    X, y = _clusters(n_classes=3, per_class=4)
    fm = CM.feature_metrics(X, y, shots=(1, 5))
    assert fm.few_shot[1][2] == 10 and math.isnan(fm.few_shot[5][0]) and fm.few_shot[5][2] == 0


def test_table_rows_equal_evaluate_on_real_extracted_features(tiny, tiny_fsets, stamps):
    names = [TINY_VIT, TINY_CNN]
    cmp, fsets = C.compare_backbones([tiny[n] for n in names], stamps.records)
    for n, row, fs in zip(names, cmp.rows, fsets):
        X, y = fs["embedding"], fs.labels
        np.testing.assert_array_equal(X, tiny_fsets[n]["embedding"])
        assert row.nmc_accuracy == evaluate(X, y, "nmc").accuracy
        assert row.knn_accuracy == evaluate(X, y, "knn").accuracy
        assert row.linear_accuracy == evaluate(X, y, "linear").accuracy
        assert row.dim == X.shape[1] and row.n_images == 48 and row.n_classes == 8
        assert row.params == sum(p.numel() for p in tiny[n].model.parameters())
        assert row.images_per_s > 0 and row.speed_source in ("extraction", "timed forward")
    np.testing.assert_allclose(cmp.cka, cka_matrix([fs["embedding"] for fs in fsets]))


# ---- the table's helpers -----------------------------------------------------------------------------
def test_best_per_column_directions_ties_and_nan():
    cols = [CM.Column("a", "a", "higher", ""), CM.Column("b", "b", "lower", ""), CM.Column("c", "c", None, ""),
            CM.Column("d", "d", "higher", "")]
    rows = [dict(a=0.5, b=3, c=1, d=float("nan")), dict(a=0.9, b=2, c=5, d=float("nan")),
            dict(a=0.9, b=7, c=9, d=float("nan"))]
    assert CM.best_per_column(rows, cols) == {"a": {1, 2}, "b": {1}}


def test_columns_follow_the_shots_and_rows_flatten_in_that_order():
    keys = [c.key for c in CM.columns((1, 5))]
    assert keys[:3] == ["backbone", "family", "dim"] and keys[-1] == "silhouette"
    assert keys.index("nmc_1shot_mean") < keys.index("nmc_1shot_std") < keys.index("nmc_5shot_mean")
    row = CM.MetricsRow("b", "vit", 4, 10, 1.0, "extraction", 0.5, 0.5, 0.5, {1: (0.3, 0.1, 10), 5: (0.6, 0.2, 10)},
                       0.1, "split", 48, 8)
    assert list(row.as_dict())[:len(keys)] == keys


# ---- comparison, JSON, agreement ------------------------------------------------------------------------
class _Fake:
    """The fields of a Backbone that build_comparison reads."""

    def __init__(self, name: str, dim: int = 16):
        self.spec = type("Spec", (), {"name": name, "family": "cnn"})()
        self.model = torch.nn.Linear(dim, 2)


def _comparison(n: int = 3):
    X, y = _clusters()
    rng = np.random.default_rng(1)
    Xs = [X, X @ rng.normal(size=(16, 16)), rng.normal(size=X.shape)][:n]
    fsets = [_fs(f"b{i}", Xi.astype(np.float32), y) for i, Xi in enumerate(Xs)]

    bbs = [_Fake(f"b{i}", 16) for i in range(n)]
    speeds = [CS.Speed(10.0 + i, "extraction", 48, 1.0) for i in range(n)]
    return C.build_comparison(bbs, fsets, speeds), fsets


def test_json_is_a_list_with_cka_rows_in_backbone_order():
    cmp, fsets = _comparison(3)
    out = json.loads(json.dumps(cmp.to_json(), allow_nan=False))  # NaN would fail here
    assert [o["backbone"] for o in out] == ["b0", "b1", "b2"]
    for i, o in enumerate(out):
        assert {"backbone", "dim", "nmc_accuracy", "knn_accuracy", "linear_accuracy", "cka", "cka_order"} <= set(o)
        assert o["cka_order"] == ["b0", "b1", "b2"] and o["cka"][i] == pytest.approx(1.0)
        for j, p in enumerate(out):
            assert o["cka"][j] == pytest.approx(p["cka"][i])  # symmetric
    assert out[0]["cka"][1] == pytest.approx(linear_cka(fsets[0]["embedding"], fsets[1]["embedding"]))
    assert out[0]["params"] == 16 * 2 + 2 and out[1]["images_per_s"] == 11.0
    assert "cka_unbiased" not in out[0]  # the indices are only added on request


def test_json_adds_similarity_index_rows_beside_cka():
    from core.compare import indices as I

    X, y = _clusters()
    rng = np.random.default_rng(1)
    fsets = [_fs(f"b{i}", Xi.astype(np.float32), y) for i, Xi in enumerate([X, X @ rng.normal(size=(16, 16))])]
    cmp = C.build_comparison([_Fake("b0", 16), _Fake("b1", 16)], fsets, [CS.Speed(1.0, "extraction", 48, 1.0)] * 2,
                             indices=tuple(I.INDICES), index_kw=dict(k=5, n_boot=20, n_perm=20))
    out = json.loads(json.dumps(cmp.to_json(), allow_nan=False))
    A, B = fsets[0]["embedding"], fsets[1]["embedding"]
    assert out[0]["cka_unbiased"][1] == pytest.approx(I.cka_unbiased(A, B)) == out[1]["cka_unbiased"][0]
    assert out[0]["mutual_knn"][1] == pytest.approx(I.mutual_knn(A, B, 5)) and out[0]["mutual_knn"][0] == 1.0
    assert out[1]["procrustes"][0] == pytest.approx(I.procrustes_distance(A, B)) and out[1]["procrustes"][1] == 0.0
    assert out[0]["cknna"][1] == pytest.approx(I.cknna(A, B, 5))
    det = out[0]["index_details"]["mutual_knn"]
    assert det["k"] == 5 and det["n_boot"] == 20 and det["ci_low"][0] is None  # a backbone with itself: no interval
    assert det["ci_low"][1] <= out[0]["mutual_knn"][1] <= det["ci_high"][1]


def test_agreement_counts_and_disagreements():
    cmp, fsets = _comparison(3)
    assert [(p.a, p.b) for p in cmp.agreement] == [("b0", "b1"), ("b0", "b2"), ("b1", "b2")]
    for p in cmp.agreement:
        ra, rb = cmp.metrics[p.a].evals["nmc"], cmp.metrics[p.b].evals["nmc"]
        same = ra.y_pred == rb.y_pred
        assert p.agree == pytest.approx(same.mean()) and p.n_test == len(same)
        assert p.both_correct + p.only_a + p.only_b + p.both_wrong == p.n_test
        assert p.only_a == int(((ra.y_pred == ra.y_true) & (rb.y_pred != rb.y_true)).sum())
        assert [d.index for d in p.disagreements] == list(ra.test_indices[~same])
        for d in p.disagreements:
            assert d.pred_a != d.pred_b and d.name == f"img{d.index}.png"
    assert any(p.disagreements for p in cmp.agreement)  # random features disagree with clustered ones


def test_agreement_refuses_different_test_images():
    X, y = _clusters()
    with pytest.raises(ValueError, match="different test images"):
        CA.agreement({"a": evaluate(X, y, "nmc", seed=0), "b": evaluate(X, y, "nmc", seed=1)}, [""] * len(y))
    with pytest.raises(ValueError, match="at least 2"):
        CA.agreement({"a": evaluate(X, y, "nmc")}, [""] * len(y))


def test_build_comparison_errors():
    X, y = _clusters()
    a, b = _fs("a", X, y), _fs("b", X[::-1].copy(), y[::-1])
    with pytest.raises(ValueError, match="different images"):
        C.check_aligned([a, b])
    unlabelled = _fs("u", X, [""] * len(y))
    with pytest.raises(ValueError, match="labelled"):
        C.build_comparison([_Fake("a"), _Fake("b")], [unlabelled, unlabelled], [None, None])
    with pytest.raises(ValueError, match="at least 2"):
        C.build_comparison([_Fake("a")], [a], [None])
    with pytest.raises(ValueError, match="once"):
        C.build_comparison([_Fake("a"), _Fake("a")], [a, a], [None, None])
    with pytest.raises(ValueError, match="2 to N-1 classes"):
        CM.silhouette(X, ["one"] * len(X))


# ---- speed and parameters ----------------------------------------------------------------------
def test_speed_from_stats_else_a_timed_forward(tiny, stamps):
    X, y = _clusters()
    fresh = _fs("a", X, y, ExtractStats(n_images=48, n_computed=48, seconds=2.0))
    assert CS.extraction_speed(fresh) == CS.Speed(24.0, "extraction", 48, 2.0)
    cached = _fs("a", X, y, ExtractStats(n_images=48, n_cached=48, seconds=0.01))
    assert CS.extraction_speed(cached) is None
    b = tiny[TINY_CNN]
    s = CS.timed_forward_speed(b, stamps.records, n_images=4)
    assert s.source == "timed forward" and s.n_images == 4 and s.images_per_s == pytest.approx(4 / s.seconds)
    fs = extract_features(b, stamps.records[:10])
    s2 = CS.measure_speed(b, fs)
    assert s2.source == ("extraction" if fs.stats.n_computed >= CS.MIN_IMAGES_FOR_STATS_SPEED else "timed forward")
    assert CM.count_parameters(b) == sum(p.numel() for p in b.model.parameters())


# ---- saliency: the method each backbone supports --------------------------------------------------------
def test_default_saliency_picks_rollout_gradcam_or_prototype(tiny, tiny_fsets, stamps):
    from core.explain.prototype_maps import PrototypeSet

    img = stamps.records[0].decode()
    vit = C.default_saliency(tiny[TINY_VIT], img)
    assert vit.method == "Attention rollout" and vit.map.shape == tiny[TINY_VIT].spec.grid()
    cnn = C.default_saliency(tiny[TINY_CNN], img)
    S = tiny[TINY_CNN].spec.input_size
    assert cnn.method == "Grad-CAM" and cnn.map.shape == (S, S) and cnn.target.startswith("class ")
    for v in (vit, cnn):
        assert np.isfinite(v.map).all() and v.map.min() >= 0 and v.map.max() <= 1 + 1e-6
    headless = tiny[TINY_HEADLESS]
    with pytest.raises(ValueError, match="prototypes"):
        C.default_saliency(headless, img)
    fs = tiny_fsets[TINY_HEADLESS]
    protos = PrototypeSet.from_embeddings(fs["embedding"], fs.labels, exclude=[0])
    hv = C.default_saliency(headless, img, prototypes=protos)
    assert hv.method == "Grad-CAM" and hv.target.startswith("prototype: ")


# ---- layer-by-layer features ----------------------------------------------------------------------
class _ContractOnly(Backbone):
    """Delegates extract to a TimmBackbone but keeps the base class's extract_layers: one extract per block."""

    def __init__(self, inner):
        self.inner, self.spec, self.model = inner, inner.spec, inner.model

    def forward_features(self, x):
        return self.inner.forward_features(x)

    def extract(self, x, layer=None, *, want=("embedding",)):
        return self.inner.extract(x, layer, want=want)


@pytest.mark.parametrize("name", [TINY_VIT, TINY_CNN])
@pytest.mark.parametrize("pool", ["embedding", "mean"])
def test_layer_features_one_pass_equals_the_contract(tiny, stamps, name, pool):
    b = tiny[name]
    recs = stamps.records[:3]
    fast = CL.layer_features(b, recs, pool=pool, batch_size=2)  # two batches
    slow = CL.layer_features(_ContractOnly(b), recs, pool=pool, batch_size=2)
    assert fast.layers == slow.layers == list(range(b.spec.num_layers))
    for f, s in zip(fast.features, slow.features):
        assert f.shape == s.shape and f.shape[0] == 3
        np.testing.assert_allclose(f, s, rtol=1e-5, atol=1e-5)
    # "embedding" at the default block is the global embedding the metrics use
    if pool == "embedding":
        emb = extract_features(b, recs)["embedding"]
        np.testing.assert_allclose(fast.features[b.resolve_layer(None)], emb, rtol=1e-5, atol=1e-5)
    # subsets, negative indices and repeats keep the order asked for
    sub = CL.layer_features(b, recs, layers=[-1, 0, -1], pool=pool)
    assert sub.layers == [b.spec.num_layers - 1, 0, b.spec.num_layers - 1]
    np.testing.assert_allclose(sub.features[1], fast.features[0], rtol=1e-5, atol=1e-5)


def test_layer_cka_between_blocks(tiny, stamps):
    lf = CL.layer_features(tiny[TINY_VIT], stamps.records[:12])
    M = CL.layer_cka_between(lf, lf)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-9)
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    np.testing.assert_allclose(M, layer_cka(lf.features, lf.features))
    cnn = CL.layer_features(tiny[TINY_CNN], stamps.records[:12])
    assert CL.layer_cka_between(lf, cnn).shape == (tiny[TINY_VIT].spec.num_layers, tiny[TINY_CNN].spec.num_layers)
    with pytest.raises(ValueError, match="pool"):
        CL.block_representations(tiny[TINY_VIT], torch.zeros(1, 3, 160, 160), [0], pool="max")
    with pytest.raises(ValueError, match="at least 2 images"):
        CL.layer_features(tiny[TINY_VIT], stamps.records[:1])


# ---- the command line ---------------------------------------------------------------------------------
def _cli(*argv: str) -> tuple[int, str, str]:
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_cli_compare_json_and_table(tmp_path):
    with tiny_registered():
        rc, out, err = _cli("--cache", str(tmp_path), "compare", "--backbones", f"{TINY_VIT},{TINY_CNN}",
                            "--images", str(STAMPS), "--json")
        assert rc == 0, err
        data = json.loads(out)
        assert [d["backbone"] for d in data] == [TINY_VIT, TINY_CNN]
        for d in data:
            assert d["cka_order"] == [TINY_VIT, TINY_CNN] and d["cka_kind"] == "linear" and len(d["cka"]) == 2
            assert {"dim", "nmc_accuracy", "knn_accuracy", "linear_accuracy", "nmc_1shot_mean", "silhouette"} <= set(d)
            assert d["nmc_accuracy_low"] <= d["nmc_accuracy"] <= d["nmc_accuracy_high"]  # its 95 % Wilson interval
        assert data[0]["cka"][1] == pytest.approx(data[1]["cka"][0])
        for name in ("cka_unbiased", "mutual_knn", "cknna", "procrustes"):  # rows beside cka, same order
            assert len(data[0][name]) == 2 and data[0][name][1] == pytest.approx(data[1][name][0])
            assert data[0]["index_details"][name]["n_boot"] == 200
        rc, out, err = _cli("--cache", str(tmp_path), "compare", "--backbones", f"{TINY_VIT},{TINY_CNN}",
                            "--images", str(STAMPS), "--cka", "rbf", "--k", "5", "--bootstrap", "10",
                            "--permutations", "10")
        assert rc == 0, err
        assert "NMC acc." in out and TINY_VIT in out and "rbf CKA of the global embeddings" in out
        assert re.search(r"^NMC: .*McNemar p = ", out, re.M)  # the paired verdict of the two best
        assert "mutual k-NN (higher = more similar, k = 5; 95% bootstrap interval over 10 draws" in out
        assert f"{TINY_VIT} vs {TINY_CNN}:" in out and "Procrustes distance (lower = more similar" in out
        rc, _, err = _cli("--cache", str(tmp_path), "compare", "--backbones", TINY_VIT, "--images", str(STAMPS))
        assert rc == 2 and "at least two different names" in err


def test_cli_compare_unlabelled_folder_says_why(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(STAMPS.glob("*/*.png"))[:6]:
        (flat / p.name).write_bytes(p.read_bytes())
    with tiny_registered():
        rc, _, err = _cli("--cache", str(tmp_path / "c"), "compare", "--backbones", f"{TINY_VIT},{TINY_CNN}",
                          "--images", str(flat))
    assert rc == 2 and "labelled" in err


# ---- real offline weights ----------------------------------------------------------------------------
@pytest.mark.slow
def test_real_backbones_table_equals_evaluate_and_json(get_backbone, stamps):
    names = ["mobilenetv2", "vits14_saliency"]
    bbs = [get_backbone(n) for n in names]
    cmp, fsets = C.compare_backbones(bbs, stamps.records)
    for row, fs in zip(cmp.rows, fsets):
        X, y = fs["embedding"], fs.labels
        for m, got in (("nmc", row.nmc_accuracy), ("knn", row.knn_accuracy), ("linear", row.linear_accuracy)):
            assert got == evaluate(X, y, m).accuracy
        ref = {r.shots: r for r in few_shot_curve(X, y, shots=(1, 5), methods=("nmc",))}
        assert row.few_shot[1][0] == ref[1].mean_acc and row.few_shot[5][0] == ref[5].mean_acc
    assert cmp.rows[0].dim == 1280 and cmp.rows[1].dim == 384
    assert 0.2 < cmp.cka[0, 1] < 1.0
    assert min(r.nmc_accuracy for r in cmp.rows) > 0.5  # real features separate the 8 stamp classes
    data = cmp.to_json()  # what `backbone-lens compare --json` prints
    assert [d["nmc_accuracy"] for d in data] == [r.nmc_accuracy for r in cmp.rows]
    assert data[0]["cka"][1] == pytest.approx(cmp.cka[0, 1]) and data[0]["cka_order"] == names


@pytest.mark.slow
def test_real_vit_layer_features_one_pass_equals_contract(get_backbone, stamps):
    b = get_backbone("vits14_saliency")
    recs = stamps.records[:3]
    fast = CL.layer_features(b, recs, pool="embedding")  # all 12 blocks, one forward
    slow = CL.layer_features(_ContractOnly(b), recs, layers=[10, 11], pool="embedding")  # CLS of 10, head pooling of 11
    assert len(fast.features) == 12
    for f, s in zip(fast.features[10:], slow.features):
        np.testing.assert_allclose(f, s, rtol=1e-4, atol=1e-4)
