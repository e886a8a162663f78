"""The computations the Embeddings, Prototypes and Compare pages show, as core calls: layer resolution,
the neighbour vote, neighbours without copies, prototype distances and margins, new images against
the prototypes, mistakes beside the nearest wrong prototype, class orders, the TEEN shot limit, display
names and class colours. References are numpy written out here."""
from __future__ import annotations

import numpy as np
import pytest

from core import render
from core.classify.evaluation import evaluate, n_test_of_class
from core.classify.incremental import class_order
from core.classify.margins import misclassified, new_image_distances, prototype_distances
from core.classify.teen import max_new_class_shots, teen_experiment
from core.geometry.neighbours import neighbour_vote, neighbours_of_row
from core.geometry.vectors import l2_normalize
from core.models.layers import Layer, output_layers, resolve_layer
from core.models.spec import BackboneSpec
from core.projection.projectors import axis_titles, method_label


def _spec(num_layers: int = 12, embed_layer: int = -3) -> BackboneSpec:
    return BackboneSpec("toy", "offline", "vit", "toy", "w", "0" * 64, 224, (0.5,) * 3, (0.5,) * 3, 14, 1,
                        num_layers, embed_layer)


def _blobs(seed: int = 0, k: int = 4, per: int = 9, d: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    X = np.concatenate([c + rng.normal(size=(per, d)) for c in centres]).astype(np.float32)
    y = np.repeat([f"c{i}" for i in range(k)], per)
    return X, y


# ---- one layer rule -----------------------------------------------------------------------------------
def test_resolve_layer_defaults_per_kind_and_explicit_blocks():
    s = _spec()
    assert resolve_layer(s, "embedding") == 9 and resolve_layer(s, "embedding", Layer.DEFAULT) == 9
    assert resolve_layer(s, "patch_tokens") == 11 and resolve_layer(s, "patch_tokens", None) == 11
    for layer in (4, Layer(4), -8, Layer(-8)):
        assert resolve_layer(s, "embedding", layer) == resolve_layer(s, "patch_tokens", layer) == 4
    assert resolve_layer(s, "embedding", Layer.LAST) == 11
    assert output_layers(s, ["embedding", "patch_tokens", "logits"]) == {"embedding": 9, "patch_tokens": 11,
                                                                          "logits": -1}
    with pytest.raises(ValueError, match="out of range"):
        resolve_layer(s, "embedding", 12)
    with pytest.raises(ValueError, match="does not depend on a block"):
        resolve_layer(s, "logits", 0)
    with pytest.raises(TypeError):
        Layer.of("sel")  # no string markers
    assert Layer.of(3) == Layer(3) and hash(Layer(3)) == hash(Layer.of(3)) and str(Layer.DEFAULT) == "default"


def test_backbone_extract_uses_the_same_rule():
    from tests.test_compare import TINY_VIT, tiny_backbone

    b = tiny_backbone(TINY_VIT)
    assert b.resolve_layer(None) == resolve_layer(b.spec, "embedding")
    assert b.resolve_layer(None, "patch_tokens") == b.spec.num_layers - 1
    from core.models.extract import feature_layers
    assert feature_layers(b, ("embedding", "patch_tokens"), Layer.DEFAULT) == {
        "embedding": resolve_layer(b.spec, "embedding"), "patch_tokens": b.spec.num_layers - 1}


# ---- neighbours -----------------------------------------------------------------------------------------
def test_neighbour_vote_is_the_majority_of_the_k_nearest():
    X, y = _blobs()
    rng = np.random.default_rng(1)
    U = X[[0, 10, 20]] + rng.normal(size=(3, X.shape[1])).astype(np.float32) * 0.1
    got = neighbour_vote(U, X, list(y), k=5)
    Un, Xn = U / np.linalg.norm(U, axis=1, keepdims=True), X / np.linalg.norm(X, axis=1, keepdims=True)
    ref = []
    for row in np.argsort(-(Un @ Xn.T), axis=1)[:, :5]:
        counts = {c: int((y[row] == c).sum()) for c in sorted(set(y[row]))}
        ref.append(max(counts, key=lambda c: (counts[c], -sorted(counts).index(c))))
    assert got == ref == ["c0", "c1", "c2"]
    # a tie goes to the label that sorts first
    T = np.array([[1.0, 0.0], [1.0, 0.01], [0.99, 0.0], [1.0, -0.01]])
    assert neighbour_vote([[1.0, 0.0]], T, ["b", "b", "a", "a"], k=4) == ["a"]


def test_neighbours_of_row_skip_the_row_and_its_copies():
    X, _ = _blobs()
    X[5] = X[3]  # a copy of row 3
    nb = neighbours_of_row(X, 3, 4, also_exclude=[5])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn[3] @ Xn.T
    S[[3, 5]] = -np.inf
    ref = np.argsort(-S, kind="stable")[:4]
    assert nb.indices.shape == (1, 4) and np.array_equal(nb.indices[0], ref)
    np.testing.assert_allclose(nb.similarities[0], S[ref], atol=1e-6)


# ---- prototypes -------------------------------------------------------------------------------------------
def test_prototype_distances_and_margins_against_numpy():
    X, y = _blobs(seed=2)
    X[0] = X[30]  # one image of c0 that sits in c3: a negative margin
    for metric in ("cosine", "euclidean"):
        pd_ = prototype_distances(X, y, metric)
        classes = np.unique(y)
        P = np.stack([X[y == c].astype(np.float64).mean(0) for c in classes])
        order = np.argsort(y, kind="stable")

        def dist(A, B, metric=metric):
            if metric == "cosine":
                return 1 - (A / np.linalg.norm(A, axis=1, keepdims=True)) @ (B / np.linalg.norm(B, axis=1, keepdims=True)).T
            return np.sqrt(((A[:, None, :] - B[None, :, :]) ** 2).sum(-1))

        D = dist(X[order].astype(np.float64), P)
        own = np.searchsorted(classes, y[order])
        others = D.copy()
        others[np.arange(len(D)), own] = np.inf
        np.testing.assert_allclose(pd_.P, P, rtol=1e-6)
        np.testing.assert_allclose(pd_.D_ip, D, atol=1e-6)
        np.testing.assert_allclose(pd_.D_pp, dist(P, P), atol=1e-6)
        np.testing.assert_allclose(pd_.margin, others.min(1) - D[np.arange(len(D)), own], atol=1e-6)
        assert np.array_equal(pd_.order, order)
        assert list(pd_.wrong_rows) == list(np.flatnonzero(D.argmin(1) != own)) and 0 in pd_.wrong_rows


def test_new_image_distances_rank_and_share():
    X, y = _blobs(seed=3)
    U = np.stack([X[4], X[20] * 0.5 + X[30] * 0.5, np.full(X.shape[1], 50.0, np.float32)])
    nd = new_image_distances(X, y, U, "euclidean")
    classes = np.unique(y)
    P = np.stack([X[y == c].astype(np.float64).mean(0) for c in classes])
    D = np.sqrt(((U[:, None, :].astype(np.float64) - P[None]) ** 2).sum(-1))
    own = np.sqrt(((X.astype(np.float64) - P[np.searchsorted(classes, y)]) ** 2).sum(-1))
    np.testing.assert_allclose(nd.D, D, atol=1e-5)
    assert list(nd.predicted) == list(classes[D.argmin(1)]) and nd.predicted[0] == "c0"
    np.testing.assert_allclose(nd.runner_up_gap, np.sort(D, 1)[:, 1] - np.sort(D, 1)[:, 0], atol=1e-5)
    np.testing.assert_allclose(nd.share_as_far, [(own >= d).mean() for d in D.min(1)])
    assert nd.share_as_far[2] == 0.0  # far from everything


def test_misclassified_against_the_training_prototypes():
    X, y = _blobs(seed=5, per=12)
    X[2] = X[40]  # c0 image that looks like c3
    r = evaluate(X, y, "nmc", test_size=0.3, seed=0)
    mis = misclassified(X, y, r, "cosine")
    assert list(mis.rows) == list(r.misclassified)
    tr = np.setdiff1d(np.arange(len(y)), r.test_indices)
    classes = np.unique(y)
    P = np.stack([X[tr][y[tr] == c].astype(np.float64).mean(0) for c in classes])
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    for j, i in enumerate(mis.rows):
        d = 1 - Pn @ (X[i] / np.linalg.norm(X[i]))
        own = int(np.searchsorted(classes, y[i]))
        d_other = d.copy()
        d_other[own] = np.inf
        assert mis.wrong_label[j] == classes[d_other.argmin()]
        assert mis.d_wrong[j] == pytest.approx(d_other.min(), abs=1e-6) and mis.d_own[j] == pytest.approx(d[own], abs=1e-6)
        assert mis.predicted[j] == r.y_pred[list(r.test_indices).index(i)]
        cand = tr[y[tr] == mis.wrong_label[j]]  # the training image of that class nearest its prototype
        k = int(np.searchsorted(classes, mis.wrong_label[j]))
        dc = 1 - (X[cand] / np.linalg.norm(X[cand], axis=1, keepdims=True)) @ Pn[k]
        assert mis.exemplar[j] == cand[dc.argmin()]


def test_class_order_and_teen_shot_limit():
    cls = ["a", "b", "c", "d"]
    assert class_order(cls) == cls
    assert class_order(cls, "shuffled", 3) == list(np.random.default_rng(3).permutation(np.asarray(cls)))
    with pytest.raises(ValueError, match="unknown class order"):
        class_order(cls, "custom")
    y = np.array(["a"] * 10 + ["b"] * 4 + ["c"] * 7)
    assert n_test_of_class(4, 0.3) == 1 and n_test_of_class(2, 0.9) == 1
    k = max_new_class_shots(y, ["a"], 0.3)
    assert k == min(4 - round(0.3 * 4), 7 - round(0.3 * 7)) == 3
    X = np.random.default_rng(0).normal(size=(len(y), 5))
    teen_experiment(X, y, ["a"], k_shot=k, test_size=0.3)  # the limit is accepted ...
    with pytest.raises(ValueError, match="fewer than k_shot"):
        teen_experiment(X, y, ["a"], k_shot=k + 1, test_size=0.3)  # ... and is the limit
    with pytest.raises(ValueError, match="new class"):
        max_new_class_shots(y, ["a", "b", "c"])


# ---- one table of names, one palette, one normalisation ---------------------------------------------
def test_projection_names_and_class_colours():
    assert [method_label(m) for m in ("pca", "umap", "tsne")] == ["PCA", "UMAP", "t-SNE"]
    assert axis_titles("pca") == ["PC 1", "PC 2"] and axis_titles("tsne", 3)[-1] == "t-SNE 3"
    with pytest.raises(ValueError, match="unknown projection method"):
        method_label("mds")
    cols = render.class_colours(["a", "b", "c"])
    assert list(cols) == ["a", "b", "c"] and cols["a"] == "#1f77b4"  # tab10, as plotly's D3
    assert render.hex_colours(12)[0] == "#{:02x}{:02x}{:02x}".format(*render.palette(12)[0])


def test_l2_normalize_keeps_a_requested_precision():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    a = l2_normalize(x, dtype=np.float32)
    assert a.dtype == np.float32 and np.array_equal(a, x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    assert l2_normalize(x).dtype == np.float64


def _js_hex_to_rgb(h: str) -> list[int]:
    """pointmap.js's hexToRgb, written out."""
    v = int(h.replace("#", ""), 16)
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255]


def test_the_point_map_and_the_figures_share_one_palette():
    """For 1..40 classes the point map's colours (render.hex_colours, sent to pointmap.js and parsed there)
    are the colours render.class_colours gives every other figure, and nothing under pages/ defines a
    palette of its own."""
    import ast
    import re

    from tests.conftest import ROOT

    for n in range(1, 41):
        classes = [f"class {i:02d}" for i in range(n)]
        sent = render.hex_colours(n)
        assert sent == list(render.class_colours(classes).values())
        assert [_js_hex_to_rgb(h) for h in sent] == render.palette(n).tolist()
        assert len(set(sent)) == n
    for path in sorted((ROOT / "pages").rglob("*.py")):
        tree = ast.parse(path.read_text())
        defs = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and re.search("colou?rs?$|palette", f.name)]
        assert not defs, f"{path.name} defines {defs}: use core.render.class_colours / hex_colours"
        for seq in (s for s in ast.walk(tree) if isinstance(s, (ast.List, ast.Tuple))):  # a table of colours
            hexes = [c.value for c in seq.elts if isinstance(c, ast.Constant) and isinstance(c.value, str)
                     and re.fullmatch("#[0-9a-fA-F]{6}", c.value)]
            assert len(hexes) < 5, f"{path.name} lists colours {hexes}: the class palette is core.render's"
