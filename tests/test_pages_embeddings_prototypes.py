"""The Embeddings and Prototypes pages: their view helpers (fast, no weights), AppTest smoke tests of
every view with the real offline backbone on the sample stamps, and the app in a real browser (click a
point, upload an image and see its prediction; screenshots in docs/screenshots)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.classify.classifiers import classifier_names
from core.classify.evaluation import evaluate, few_shot_curve
from core.classify.prototypes import class_prototypes
from core.classify.tables import (
    evaluate_shots,
    nearest_wrong_prototypes,
    prototype_exemplars,
    teen_repeated,
    train_indices,
    zero_shot_mix_curve,
)
from core.classify.teen import teen_experiment
from core.geometry.neighbours import cosine_neighbours, projection_table
from core.geometry.vectors import distances
from core.projection.jobs import JobPool
from tests.conftest import ROOT, SCENES, SCREENSHOTS, wait_idle

EMBEDDINGS = str(ROOT / "pages" / "embeddings" / "page.py")
PROTOTYPES = str(ROOT / "pages" / "prototypes" / "page.py")


def _blobs(n_per=8, k=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centres]).astype(np.float32)
    y = np.repeat([f"c{i}" for i in range(k)], n_per)
    return X, y


# ---- view helpers -----------------------------------------------------------------------------------
def test_cosine_neighbours_match_brute_force_and_skip_the_query():
    X, _ = _blobs()
    nb = cosine_neighbours(X[[3, 10]], X, k=5, exclude=[3, None])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn[[3, 10]] @ Xn.T
    S[0, 3] = -np.inf
    ref = np.argsort(-S, axis=1, kind="stable")[:, :5]
    assert np.array_equal(nb.indices, ref)
    assert np.allclose(nb.similarities, np.take_along_axis(S, ref, axis=1))
    assert 3 not in nb.indices[0] and nb.indices[1, 0] == 10  # excluded itself; the other finds itself
    assert np.all(np.diff(nb.similarities, axis=1) <= 1e-12)
    with pytest.raises(ValueError, match="share D"):
        cosine_neighbours(X[:1, :3], X)
    with pytest.raises(ValueError, match="not a row"):
        cosine_neighbours(X[:1], X, exclude=[len(X)])


def test_projection_table_columns_and_checks():
    df = projection_table(np.arange(6).reshape(3, 2), ["a", "b", "u"], ["/d/a.png", "/d/b.png", None],
                          ["x", "y", ""], ["dataset", "dataset", "upload"])
    assert list(df.columns) == ["name", "path", "label", "source", "x", "y"]
    assert df.path.tolist()[2] == "" and df.y.tolist() == [1, 3, 5]
    assert list(projection_table(np.zeros((2, 3)), ["a", "b"], [None, None], ["x", "y"]).columns)[-3:] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="labels has 1 entries"):
        projection_table(np.zeros((2, 2)), ["a", "b"], [None, None], ["x"])


def test_job_pool_memoises_runs_in_background_and_keeps_failures():
    pool = JobPool(max_workers=1, max_done=2)
    gate = threading.Event()
    calls = []

    def slow(v):
        calls.append(v)
        gate.wait(5)
        return v * 2

    f1 = pool.submit("a", slow, 1)
    assert pool.submit("a", slow, 1) is f1 and not f1.done()  # same key: same future, nothing re-run
    gate.set()
    assert f1.result(5) == 2 and calls == [1]

    def boom():
        raise RuntimeError("bad input")

    f2 = pool.submit("b", boom)
    with pytest.raises(RuntimeError, match="bad input"):
        f2.result(5)
    assert pool.submit("b", boom) is f2  # the error stays visible until forgotten
    pool.forget("b")
    assert pool.submit("b", lambda: 7).result(5) == 7
    for k in "cde":
        pool.submit(k, lambda: 0).result(5)
    pool.submit("f", lambda: 0).result(5)
    assert len(pool) <= 3 and pool.get("a") is None  # least recently used finished jobs are dropped


def test_evaluation_helpers_agree_with_core_prototypes():
    X, y = _blobs(n_per=10)
    # shots without a test set = one point of few_shot_curve
    r = evaluate_shots(X, y, "nmc", 2, draws=4, seed=3)
    row = few_shot_curve(X, y, shots=[2], methods=["nmc"], draws=4, seed=3)[0]
    assert (r.accuracy, r.accuracy_std, r.n_train, r.n_test) == (row.mean_acc, row.std_acc, 8, 32)
    with pytest.raises(ValueError, match="smallest class"):
        evaluate_shots(X, y, "nmc", 10)
    # with a test set: each draw is an evaluate() on the given test set
    g = evaluate_shots(X[::2], y[::2], "linear", 2, draws=3, X_test=X[1::2], y_test=y[1::2])
    assert g.protocol == "few-shot/given" and g.n_test == 20 and 0 <= g.accuracy <= 1

    classes, P = class_prototypes(X, y)
    wl, dw, do = nearest_wrong_prototypes(X, y, classes, P, "euclidean")
    D = distances(X, P, "euclidean")
    own = np.searchsorted(classes, y)
    assert np.allclose(do, D[np.arange(len(y)), own]) and np.all(wl != y)
    D[np.arange(len(y)), own] = np.inf
    assert np.allclose(dw, D.min(1)) and np.array_equal(wl, classes[D.argmin(1)])
    ex = prototype_exemplars(X, y, classes, P)
    assert np.array_equal(y[ex], classes)

    res = evaluate(X, y, "nmc", seed=1)
    assert len(np.intersect1d(train_indices(res, len(y)), res.test_indices)) == 0

    df = teen_repeated(X, y, ["c0", "c1"], k_shot=1, draws=3, seed=5)
    runs = [teen_experiment(X, y, ["c0", "c1"], 1, seed=5 + d) for d in range(3)]
    assert np.isclose(df.query("prototypes == 'TEEN' and classes == 'new'")["mean"].item(),
                      np.mean([r["calibrated"]["new"] for r in runs]))


def test_zero_shot_mix_curve_ends_are_text_only_and_nmc():
    X, y = _blobs(n_per=10)
    classes = np.unique(y)
    T = class_prototypes(X, y)[1] + np.random.default_rng(1).normal(size=(4, 16)) * 4  # noisy "text" prototypes
    curve, nmc = zero_shot_mix_curve(X, y, list(classes), T, (0.0, 0.5, 1.0))
    assert np.isclose(curve.accuracy.iloc[-1], nmc.accuracy)  # mix = 1: cosine NMC on the same split
    te = nmc.test_indices
    text_only = np.mean(classes[distances(X[te], T, "cosine").argmin(1)] == y[te])
    assert np.isclose(curve.accuracy.iloc[0], text_only)
    with pytest.raises(ValueError, match="hold-out split"):
        zero_shot_mix_curve(X[:12], y[:12], list(np.unique(y[:12])), T[: len(np.unique(y[:12]))])


# ---- the pages in AppTest -------------------------------------------------------------------------
def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.mark.slow
def test_embeddings_page_map_neighbours_and_background_projection():
    at = _run(AppTest.from_file(EMBEDDINGS, default_timeout=300))
    assert at.title[0].value == "Embeddings"
    assert any(m.value.startswith("**PCA of mobilenetv2 embeddings** (1280-D, cosine) · 48 images") for m in at.markdown)
    assert any("48 rows" in c.value for c in at.caption)  # the CSV export covers every image

    at.selectbox(key="emb_pick").set_value(0)  # what a click on the first point does
    _run(at)
    assert any("nearest neighbours share its class" in c.value for c in at.caption)
    assert sum(m.value.startswith((":green[", ":red[")) for m in at.markdown) == 8  # k = 8 neighbours

    at.segmented_control(key="emb_method").set_value("tsne")
    _run(at)
    deadline = time.time() + 120  # t-SNE fits on the worker thread; PCA is shown meanwhile
    while any("being computed in the background" in i.value for i in at.info) and time.time() < deadline:
        time.sleep(0.5)
        _run(at)
    assert any(m.value.startswith("**t-SNE of mobilenetv2") for m in at.markdown)

    at.toggle(key="emb_3d").set_value(True)
    at.segmented_control(key="emb_method").set_value("pca")
    _run(at)
    assert any("pca/v1|n_components=3" in c.value for c in at.caption)


@pytest.mark.slow
def test_prototypes_page_every_tab():
    at = _run(AppTest.from_file(PROTOTYPES, default_timeout=300))
    assert at.title[0].value == "Prototypes"
    assert any("8 prototypes from all 48 images" in c.value for c in at.caption)

    at.session_state["proto_tab"] = "Classifiers"  # lazy tabs: only the open one runs
    _run(at)
    table = at.dataframe[0].value
    names = classifier_names()
    assert list(table.protocol) == ["split"] * len(names) and list(table.n_test) == [16] * len(names)
    from core.io.images import load_folder
    from core.models.extract import extract_features
    from core.models.registry import create_backbone

    fs = extract_features(create_backbone("mobilenetv2"), load_folder(ROOT / "sample_data" / "stamps").records)
    ref = [evaluate(fs["embedding"], fs.labels, m).accuracy for m in names]
    assert np.allclose(table.accuracy, ref)  # the page shows core.classify.evaluation.evaluate's numbers
    assert any("Misclassified by NMC" in s.value for s in at.subheader)

    at.session_state["proto_tab"] = "Few-shot"
    _run(at)
    assert any(m.value.startswith("**Two regimes (mobilenetv2):** Zheng et al. (2023) found") for m in at.markdown)
    shown = set(at.dataframe[0].value.method)
    assert {"naive Bayes, shared variance (Zheng et al. 2023)", "linear probe (logistic regression)"} <= shown

    at.session_state["proto_tab"] = "Out-of-distribution"
    _run(at)
    at.multiselect(key="ood_unknown").set_value(["fish"])
    _run(at)
    from core.classify.ood import unknown_class_ood
    ref_ood = unknown_class_ood(fs["embedding"], np.asarray(fs.labels), ["fish"])
    shown_auroc = {m.label: m.value for m in at.metric}
    assert shown_auroc["AUROC, Mahalanobis distance (to the nearest class)"] == f"{ref_ood.auroc['mahalanobis']:.3f}"

    for tab in ("Class-incremental", "TEEN"):
        at.session_state["proto_tab"] = tab
        _run(at)
    assert set(at.dataframe[0].value.prototypes) == {"plain", "TEEN"}
    at.slider(key="teen_alpha").set_value(1.0)  # alpha = 1: no calibration
    _run(at)
    df = at.dataframe[0].value
    assert np.allclose(df[df.prototypes == "TEEN"]["mean"].values, df[df.prototypes == "plain"]["mean"].values)

    at.session_state["proto_tab"] = "Class-incremental"
    _run(at)
    at.slider(key="cil_tasks").set_value(2)
    _run(at)
    assert any(m.label == "SimpleCIL: final" for m in at.metric)
    assert {"SimpleCIL (cosine)", "LDA", "RanPAC", "FeCAM"} <= set(at.dataframe[0].value.columns)

    at.session_state["proto_tab"] = "Zero-shot"
    _run(at)
    assert any("text tower" in i.value for i in at.info)  # a CNN: says why, offers a CLIP backbone

    at.session_state["proto_tab"] = "Classify an upload"
    _run(at)
    assert any(i.value.startswith("Upload one or more photos") for i in at.info)


@pytest.mark.slow
def test_prototypes_page_states_its_samples_when_the_caps_bite(monkeypatch):
    """At dataset scale the Classifiers and Class-incremental tabs score a stratified sample and say so;
    the caps are lowered here so that the 48 stamps reach them (another seed: nothing cached is reused)."""
    from core.classify import evaluation
    monkeypatch.setattr(evaluation, "MAX_TEST", 8)
    monkeypatch.setattr(evaluation, "INCREMENTAL_MAX_TEST", 8)
    at = AppTest.from_file(PROTOTYPES, default_timeout=300)
    at.session_state["proto_seed"] = 7
    at.session_state["proto_tab"] = "Classifiers"
    _run(at)
    assert set(at.dataframe[0].value.n_test) == {8}
    assert any("at most 8 held-out images are scored" in c.value for c in at.caption)
    at.session_state["proto_tab"] = "Class-incremental"
    _run(at)
    assert any("every task is scored on the seen classes among 8 held-out images (at most 8)" in c.value
               for c in at.caption)


@pytest.mark.slow
def test_prototypes_page_on_a_tiny_dataset_explains_instead_of_failing(tmp_path):
    """Classes of 3, 6 and 1 images: leave-one-out accuracies, and clear messages where a split is impossible."""
    import shutil

    from tests.conftest import STAMPS

    for cls, src, n in (("a", "birds", 3), ("b", "fish", 6), ("c", "fruit", 1)):
        (tmp_path / cls).mkdir()
        for f in sorted((STAMPS / src).glob("*.png"))[:n]:
            shutil.copy(f, tmp_path / cls / f.name)
    at = _run(AppTest.from_file(PROTOTYPES, default_timeout=300))
    at.radio(key="ds_source").set_value("Folder on server")
    _run(at)
    at.text_input(key="ds_path").set_value(str(tmp_path))
    _run(at)
    at.session_state["proto_tab"] = "Classifiers"
    _run(at)
    assert set(at.dataframe[0].value.protocol) == {"loo"}
    at.session_state["proto_tab"] = "Few-shot"
    _run(at)
    assert any("smallest class size (1)" in w.value for w in at.warning)
    for tab, says in (("Class-incremental", "at least 2 images"), ("TEEN", "Cannot run TEEN")):
        at.session_state["proto_tab"] = tab
        at.run()
        assert not at.exception and any(says in e.value for e in at.error), tab


@pytest.mark.slow
def test_prototypes_zero_shot_with_the_random_clip():
    at = AppTest.from_file(PROTOTYPES, default_timeout=300)
    at.session_state["proto_tab"] = "Zero-shot"
    _run(at)
    assert at.selectbox(key="zs_clip").value == "open_clip/ViT-B-32/random"
    at.button(key="zs_run").click()
    _run(at)
    assert at.sidebar.selectbox[0].value == "mobilenetv2"  # the tab's CLIP model is not the sidebar's backbone
    assert any("random weights" in w.value for w in at.warning)
    labels = [m.label for m in at.metric]
    assert labels == ["Text prototypes (zero-shot)", "Image prototypes (NMC)", "Mix 0.50"]
    assert all(m.value.endswith("%") for m in at.metric)


# ---- the app in a real browser ----------------------------------------------------------------------
_POINT = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  const fl = gd._fullLayout, r = gd.getBoundingClientRect(), tr = gd._fullData[0];
  return {x: r.left + fl._size.l + fl.xaxis.l2p(tr.x[1]), y: r.top + fl._size.t + fl.yaxis.l2p(tr.y[1]),
          name: tr.customdata[1][1]};
}"""


def _open_page(page, app_url, title: str) -> None:
    """Home first, then the sidebar link, as a user does. (A fresh server asked straight for
    /<page> runs that file without app.py until app.py has run once: Streamlit's pages/ folder.)"""
    page.goto(app_url)
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)
    page.locator("[data-testid='stSidebarNav'] a", has_text=title).click()


@pytest.mark.slow
@pytest.mark.browser
def test_embeddings_click_a_point_in_browser(page, app_url):
    page.set_viewport_size({"width": 1500, "height": 1350})
    _open_page(page, app_url, "Embeddings")
    page.get_by_text("Open an image").wait_for(timeout=120_000)
    wait_idle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.wait_for_timeout(1000)
    pt = page.evaluate(_POINT)
    page.mouse.move(pt["x"], pt["y"])
    page.mouse.click(pt["x"], pt["y"])
    page.get_by_text("nearest neighbours share its class").wait_for(timeout=60_000)
    wait_idle(page)
    assert page.get_by_text(f"{pt['name']} · class birds").is_visible()
    page.mouse.move(pt["x"], pt["y"])  # the hover label (file name, class) in the screenshot
    page.wait_for_timeout(800)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "embeddings.png"))


@pytest.mark.slow
@pytest.mark.browser
def test_prototypes_upload_and_prediction_in_browser(page, app_url, tmp_path):
    page.set_viewport_size({"width": 1500, "height": 1950})
    _open_page(page, app_url, "Prototypes")
    page.get_by_text("Per-class margin").wait_for(timeout=120_000)
    wait_idle(page)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3",
                           timeout=60_000)  # the three charts of the tab have drawn
    page.wait_for_timeout(1000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "prototypes.png"))

    page.get_by_role("tab", name="Classify an upload").click()
    page.get_by_text("Upload one or more photos").wait_for(timeout=60_000)
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.get_by_test_id("stTabs").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        [str(SCENES / "cat.jpg"), str(bad)])  # the tab's uploader (the sidebar's photos box has another)
    page.get_by_text("None of these classes").wait_for(timeout=120_000)  # a cat among stamps: far from every class
    wait_idle(page)
    assert page.get_by_text("Distance to every prototype").is_visible()
    # the rule's own distance is said beside the bar's, with why the two differ
    assert page.get_by_text("rule's cosine distance to birds").is_visible()
    assert page.get_by_text("Cannot use the uploaded file notes.png: not an image").is_visible()  # named, the rest goes on
    page.wait_for_timeout(800)
    page.screenshot(path=str(SCREENSHOTS / "prototypes_upload.png"))


@pytest.mark.slow
@pytest.mark.browser
def test_prototypes_classifier_views_in_browser(page, app_url):
    """Every classifier in the table, the two regimes marked on the few-shot curve, the class-incremental
    run of the statistics-based methods and an unknown class in the OOD tab, in a real browser."""
    page.set_viewport_size({"width": 1500, "height": 1500})
    _open_page(page, app_url, "Prototypes")
    page.get_by_text("Per-class margin").wait_for(timeout=120_000)
    wait_idle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for tab, ready, shot in (("Classifiers", "Misclassified by", "prototypes_classifiers.png"),
                             ("Few-shot", "Two regimes (mobilenetv2):", "prototypes_few_shot.png"),
                             ("Class-incremental", "Accuracy per task", "prototypes_incremental.png"),
                             ("Out-of-distribution", "Most unusual images", "prototypes_ood.png")):
        page.get_by_role("tab", name=tab).click()
        page.get_by_text(ready).first.wait_for(timeout=300_000)
        wait_idle(page, timeout=300_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(SCREENSHOTS / shot), full_page=True)
        if tab == "Few-shot":
            assert page.get_by_text("Zheng et al. (2023) found").is_visible()
