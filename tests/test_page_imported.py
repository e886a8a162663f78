"""Imported sets of embeddings on the Prototypes and Compare pages (issue 20's page half) and Compare's choice in
the link and across pages (issue 25).

Fast: small synthetic sets made with core.io.imports.import_table (no weights): every Prototypes tab, the views
that need a model saying why in one sentence, Saliency / Segmentation on a set, Compare on two imported sets (its
numbers are core.compare.comparison.compare_sources'), sources sharing too few images refused in one line, the
link round trip and the choice kept across page changes. Slow: the stamps' MobileNetV2 embeddings exported and
imported, on Prototypes (the folder's accuracies) and in Compare beside vits14_saliency run on the stamps (the
folder's linear CKA); the real app in headless Chromium: Compare with three backbones opened by a link, a click
on the agreement map, the link reopened in a new browser context, and the screenshots of both pages on an
imported set."""
from __future__ import annotations

import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.classify.evaluation import evaluate
from core.compare.metrics import accuracy_verdicts
from core.io.imports import MODEL_ONLY_VIEWS, import_table
from tests.conftest import ROOT, SCREENSHOTS, STAMPS, wait_idle

PROTOTYPES = str(ROOT / "pages" / "prototypes" / "page.py")
COMPARE = str(ROOT / "pages" / "compare" / "page.py")
STAMP_PATHS = sorted(str(p) for p in STAMPS.rglob("*.png"))


def _make_set(tmp_path, name: str, n: int = 120, dim: int = 16, classes: int = 6, *, seed: int = 0,
              noise: float = 1.2, labelled: bool = True, offset: int = 0):
    """Clustered vectors (class i % classes) of n images: the first ones are the bundled stamps (readable: the
    sample data is a data root), the others paths that do not exist (``offset`` shifts which). ``seed`` draws
    the vectors only, so two sets of the same n share the images and the labels."""
    rng = np.random.default_rng(seed)
    lab = np.arange(n) % classes
    V = (rng.normal(size=(classes, dim))[lab] + noise * rng.normal(size=(n, dim))).astype(np.float32)
    idx = np.arange(offset, offset + n)
    paths = np.array([STAMP_PATHS[i] if i < len(STAMP_PATHS) else f"/nonexistent/img{i}.jpg" for i in idx])
    labels = np.array([f"c{c}" for c in lab]) if labelled else np.array([""] * n)
    f = tmp_path / f"{name}.npz"
    np.savez(f, embeddings=V, paths=paths, labels=labels)
    return import_table(f, name)


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _text(els) -> str:
    return "\n".join(e.value for e in els)


# ---- Prototypes ---------------------------------------------------------------------------------------
def test_prototypes_every_tab_on_an_imported_set(tmp_path):
    s = _make_set(tmp_path, "proto_set")
    X, y = np.asarray(s.vectors, dtype=np.float32), np.asarray(s.labels(), dtype=str)
    at = AppTest.from_file(PROTOTYPES, default_timeout=300)
    at.query_params["dataset"] = "proto_set"
    _run(at)
    assert "Imported set **proto_set**: 120 vectors of dimension 16" in _text(at.caption)
    assert "6 prototypes from all 120 images" in _text(at.caption)

    at.session_state["proto_tab"] = "Classifiers"
    _run(at)
    table = at.dataframe[0].value
    from core.classify.classifiers import classifier_names
    ref = [evaluate(X, y, m).accuracy for m in classifier_names()]
    assert np.allclose(table.accuracy, ref)  # core's numbers on the set's vectors
    assert "`backbone-lens evaluate --imported proto_set --method nmc`" in _text(at.caption)
    wrong = [h.value for h in at.subheader if h.value.startswith("Misclassified by NMC")]
    assert wrong and not wrong[0].startswith("Misclassified by NMC: 0 ")
    assert len(at.image) >= 2  # each mistake beside the nearest wrong prototype: thumbnails or grey squares

    at.session_state["proto_tab"] = "Few-shot"
    _run(at)
    assert any(m.value.startswith("**Two regimes (proto_set):**") for m in at.markdown)
    from core.classify.evaluation import few_shot_curve
    ref_fs = few_shot_curve(X, y, shots=(1, 2, 3, 5), methods=("nb", "linear", "nmc", "nb_per_class"), draws=10)
    assert np.allclose(at.dataframe[0].value["mean_acc"], [r.mean_acc for r in ref_fs])  # one shot value at a time

    at.session_state["proto_tab"] = "Class-incremental"
    _run(at)
    assert any(m.label == "SimpleCIL: final" for m in at.metric)

    at.session_state["proto_tab"] = "TEEN"
    _run(at)
    assert set(at.dataframe[0].value.prototypes) == {"plain", "TEEN"}

    at.session_state["proto_tab"] = "Out-of-distribution"
    _run(at)
    at.multiselect(key="ood_unknown").set_value(["c2"])
    _run(at)
    from core.classify.ood import unknown_class_ood
    auroc = unknown_class_ood(X, y, ["c2"]).auroc["mahalanobis"]
    assert {m.label: m.value for m in at.metric}["AUROC, Mahalanobis distance (to the nearest class)"] == f"{auroc:.3f}"

    for tab, view in (("Zero-shot", "zero_shot"), ("Classify an upload", "upload")):
        at.session_state["proto_tab"] = tab
        _run(at)
        assert [i.value for i in at.info] == [MODEL_ONLY_VIEWS[view]]  # one sentence on why, nothing else


def test_unlabelled_set_says_so_in_one_line_and_model_pages_say_why(tmp_path):
    _make_set(tmp_path, "bare_set", labelled=False)
    at = AppTest.from_file(PROTOTYPES, default_timeout=120)
    at.query_params["dataset"] = "bare_set"
    _run(at)
    assert len(at.info) == 1 and "has no class label for any point" in at.info[0].value and not at.tabs
    for page, view, title in (("saliency", "saliency", "Saliency"), ("segmentation", "segmentation", "Segmentation")):
        at = AppTest.from_file(str(ROOT / "pages" / page / "page.py"), default_timeout=120)
        at.query_params["dataset"] = "bare_set"
        _run(at)
        assert at.title[0].value == title and len(at.info) == 1 and MODEL_ONLY_VIEWS[view] in at.info[0].value


def test_imported_thumbnails_only_where_the_policy_reads_them(tmp_path):
    """The first rows are stamps (the sample data is a data root); a missing path gives the grey square."""
    from core import render
    from pages.shared.items import imported_items

    s = _make_set(tmp_path, "thumb_set", n=60)
    items = imported_items(s)
    assert items.names[0] == STAMP_PATHS[0] and items.picture(0) is not None and items.thumb(0, 64).size[0] <= 64
    assert items.picture(55) is None  # /nonexistent/...
    grey = np.asarray(items.thumb(55, 64))
    assert grey.shape == (64, 64, 3) and np.array_equal(grey, np.asarray(render.placeholder(64)))


# ---- Compare --------------------------------------------------------------------------------------------
def test_compare_two_imported_sets_and_the_link(tmp_path):
    from core.compare.comparison import compare_sources
    from core.compare.sources import imported_source

    _make_set(tmp_path, "cmp_a", dim=24, seed=1)
    _make_set(tmp_path, "cmp_b", dim=12, seed=2)
    at = AppTest.from_file(COMPARE, default_timeout=300)
    at.query_params.update({"dataset": "cmp_a", "compare": "cmp_a,imported:cmp_b"})
    _run(at)
    assert at.multiselect(key="cmp_sources").value == ["imported:cmp_a", "imported:cmp_b"]
    assert at.query_params["compare"] == "imported:cmp_a,imported:cmp_b"  # written back
    assert any(m.value.startswith("120 images shared by the 2 sources (of cmp_a 120, cmp_b 120), matched by image path")
               for m in at.markdown)
    assert [h.value for h in at.main.header] == ["Metrics", "Representational similarity (CKA)", "Similarity indices",
                                             "Side by side", "Agreement of the NMC predictions"]
    ref = compare_sources([imported_source("cmp_a"), imported_source("cmp_b")], indices=())
    table = at.dataframe[0].value
    assert list(table["backbone"]) == ["cmp_a", "cmp_b"] and list(table["family"]) == ["imported"] * 2
    assert list(table["params"]) == list(table["img/s"]) == ["n/a", "n/a"]  # no model: no parameters, no speed
    assert np.allclose(table["NMC acc."], [r.nmc_accuracy for r in ref.rows])
    assert np.allclose(table["linear acc."], [r.linear_accuracy for r in ref.rows])
    ci = at.dataframe[1].value  # each accuracy with its 95 % Wilson interval
    assert list(ci["NMC"]) == [f"{r.nmc_accuracy:.2f} [{r.accuracy_ci['nmc'][0]:.2f}, {r.accuracy_ci['nmc'][1]:.2f}]"
                               for r in ref.rows]
    assert len(at.dataframe[2].value) == 4  # every index for the one pair, with interval and baseline
    caps = _text(at.caption)
    assert all(v in caps for v in accuracy_verdicts(ref.rows))  # the paired verdicts, one per classifier
    assert MODEL_ONLY_VIEWS["layer_cka"] in caps
    assert [i.value for i in at.info] == [f"cmp_a, cmp_b: imported sets, no column here. {MODEL_ONLY_VIEWS['side_by_side']}"]

    # the agreement map opens the image where the two spaces differ most; a click (its on_select) opens another
    panel = [m.value for m in at.markdown if "neighbours shared by cmp_a and cmp_b" in m.value]
    assert len(panel) == 1
    at.session_state["cmp_ag_pick"] = 7
    _run(at)
    assert [m.value for m in at.markdown if "neighbours shared by" in m.value][0].startswith(f"**{STAMP_PATHS[7]}** (c1)")

    # the link reopens the same comparison in another session
    at.multiselect(key="cmp_sources").set_value(["imported:cmp_b", "imported:cmp_a"])
    _run(at)
    link = dict(at.query_params)
    assert link["compare"] == "imported:cmp_b,imported:cmp_a" and link["dataset"] == "cmp_a"
    again = AppTest.from_file(COMPARE, default_timeout=300)
    again.query_params.update(link)
    _run(again)
    assert again.multiselect(key="cmp_sources").value == ["imported:cmp_b", "imported:cmp_a"]
    assert again.dataframe[0].value.equals(at.dataframe[0].value)


def test_sources_sharing_too_few_images_are_refused_in_one_line(tmp_path):
    _make_set(tmp_path, "few_a", n=40)
    _make_set(tmp_path, "few_b", n=40, offset=34, seed=3)  # rows 34..73: 6 paths shared with few_a
    at = AppTest.from_file(COMPARE, default_timeout=300)
    at.query_params.update({"dataset": "few_a", "compare": "few_a,few_b,no_such_set"})
    _run(at)
    assert [w.value for w in at.warning] == ["The link's sources not here, left out: imported:no_such_set."]
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert at.error[0].value.startswith("Cannot compare these sources: the sources share only 6 images (few_a 40, "
                                        "few_b 40) (matched by image path")
    assert not at.main.header  # nothing compared


def test_the_choice_is_kept_across_page_changes(tmp_path):
    _make_set(tmp_path, "keep_a", seed=4)
    _make_set(tmp_path, "keep_b", seed=5)
    _make_set(tmp_path, "keep_c", seed=6)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["dataset"] = "keep_a"
    _run(at)
    at.switch_page("pages/compare/page.py")
    _run(at)
    at.multiselect(key="cmp_sources").set_value(["imported:keep_a", "imported:keep_c"])
    _run(at)
    at.switch_page("pages/home/page.py")
    _run(at)
    if "cmp_sources" in at.session_state:  # the server drops the state of a widget a run did not draw; AppTest
        del at.session_state["cmp_sources"]  # keeps it, so drop it here as the server does
    at.switch_page("pages/compare/page.py")
    _run(at)
    assert at.multiselect(key="cmp_sources").value == ["imported:keep_a", "imported:keep_c"]
    assert at.query_params["compare"] == "imported:keep_a,imported:keep_c"


def test_progress_callbacks_of_the_comparison_count_every_step():
    """The page's progress bars follow these callbacks: one step per source, then CKA, then the end."""
    from core.compare.cka import cka_matrix
    from core.compare.comparison import compare_sources
    from core.compare.sources import EmbeddingSource

    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["a", "b", "c"]), 10)
    srcs = [EmbeddingSource(n, "imported", rng.normal(size=(30, d)).astype(np.float32) + (y == "a")[:, None], y,
                            [f"/x/{i}.png" for i in range(30)], None, [f"{i}" for i in range(30)], "test")
            for n, d in (("p", 8), ("q", 5), ("r", 6))]
    seen: list = []
    compare_sources(srcs, indices=(), progress=lambda d, t, what: seen.append((d, t, what)))
    assert seen == [(0, 4, "metrics of p"), (1, 4, "metrics of q"), (2, 4, "metrics of r"), (3, 4, "linear CKA"),
                    (4, 4, "done")]
    steps: list = []
    M = cka_matrix([s.X for s in srcs], progress=lambda d, t: steps.append((d, t)))
    assert steps == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)] and np.allclose(M, cka_matrix([s.X for s in srcs]))


# ---- the stamps' MobileNetV2 embeddings, exported and imported ------------------------------------------
@pytest.fixture(scope="module")
def stamps_mnv2(tmp_path_factory):
    """``backbone-lens export`` of mobilenetv2 on the stamps, imported as ``stamps_mnv2`` (paths and sha256)."""
    from core.cli import main

    out = tmp_path_factory.mktemp("export") / "stamps.npz"
    assert main(["export", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--out", str(out)]) == 0
    return import_table(out, "stamps_mnv2", backbone="mobilenetv2")


@pytest.mark.slow
def test_prototypes_on_the_imported_stamps_equal_the_folder(stamps_mnv2, get_backbone, stamps):
    from core.models.extract import extract_features

    fs = extract_features(get_backbone("mobilenetv2"), stamps.records)
    at = AppTest.from_file(PROTOTYPES, default_timeout=300)
    at.query_params["dataset"] = "stamps_mnv2"
    at.session_state["proto_tab"] = "Classifiers"
    _run(at)
    table = at.dataframe[0].value
    nmc = table[table.method == table.method.iloc[0]]
    assert nmc.accuracy.iloc[0] == pytest.approx(evaluate(fs["embedding"], fs.labels, "nmc").accuracy, abs=1e-9)
    assert "made by mobilenetv2" in _text(at.caption)


@pytest.mark.slow
def test_compare_an_imported_set_with_a_backbone_on_the_stamps(stamps_mnv2, get_backbone, stamps):
    from core.compare.cka import linear_cka
    from core.models.extract import extract_features

    at = AppTest.from_file(COMPARE, default_timeout=600)
    at.query_params.update({"dataset": "stamps", "compare": "stamps_mnv2,vits14_saliency"})
    _run(at)
    assert any(m.value.startswith("48 images shared by the 2 sources (of stamps_mnv2 48, vits14_saliency 48), matched "
                                  "by file content (sha256)") for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table.backbone) == ["stamps_mnv2", "vits14_saliency"]
    assert list(table["params"]) == ["n/a", "22.1 M"]  # a set has no model
    fa = extract_features(get_backbone("mobilenetv2"), stamps.records)
    fb = extract_features(get_backbone("vits14_saliency"), stamps.records)
    assert table["NMC acc."].iloc[0] == pytest.approx(evaluate(fa["embedding"], fa.labels, "nmc").accuracy)
    # the CKA matrix the page draws is core's on the aligned vectors: equal to the folder's within 1e-6
    from pages.compare import cache
    memo = cache.process_memo()["cka"]
    M = next(v for k, v in reversed(memo.items()) if k[1] == "linear")  # the page's run: the most recently used
    assert M[0, 1] == pytest.approx(linear_cka(fa["embedding"], fb["embedding"]), abs=1e-6)
    assert [s.value for s in at.subheader] == ["Agreement map", "vits14_saliency"]  # one column: the backbone
    caps = _text(at.caption)
    assert f"stamps_mnv2: an imported set, no column here. {MODEL_ONLY_VIEWS['side_by_side']}" in caps
    assert f"Block by block: stamps_mnv2 is an imported set. {MODEL_ONLY_VIEWS['layer_cka']}" in caps


# ---- the real app in headless Chromium -------------------------------------------------------------------
_AG_POINT = """([i]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(
      g => ((g.layout.title || {}).text || '').includes('coloured by neighbours shared with'));
  gd.scrollIntoView({block: 'center'});
  const fl = gd._fullLayout, r = gd.getBoundingClientRect(), tr = gd._fullData[0];
  return {x: r.left + fl._size.l + fl.xaxis.l2p(tr.x[i]), y: r.top + fl._size.t + fl.yaxis.l2p(tr.y[i]),
          n: tr.x.length, chosen: gd._fullData[1].customdata[0], name: tr.text[i].split('<br>')[0]};
}"""
_PANEL = re.compile(r"neighbours shared by \S+ and \S+$")


def _full_height_screenshot(page, path) -> None:
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stAppViewContainer], section')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1600, "height": int(height) + 40})
    page.wait_for_timeout(1500)
    wait_idle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


@pytest.mark.slow
@pytest.mark.browser
def test_compare_three_backbones_click_and_link_in_browser(browser, app_url):
    names = "mobilenetv2,vits14_saliency,efficientnet_lite0"
    ctx = browser.new_context(viewport={"width": 1600, "height": 1100})
    page = ctx.new_page()
    page.goto(f"{app_url}/compare?dataset=stamps&compare={names}")
    page.get_by_role("heading", name="Compare backbones").wait_for(timeout=240_000)
    page.get_by_text("Side by side", exact=True).wait_for(timeout=600_000)
    wait_idle(page, 600_000)
    for n in names.split(","):
        assert page.get_by_role("heading", name=n, exact=True).is_visible()  # one column each
    assert f"compare={names.replace(',', '%2C')}" in page.url or f"compare={names}" in page.url
    panel = page.get_by_text(_PANEL)
    before = panel.inner_text()
    pt = page.evaluate(_AG_POINT, [0])
    i = (pt["chosen"] + 1) % pt["n"]  # a point that is not the opened image
    pt = page.evaluate(_AG_POINT, [i])
    page.mouse.click(pt["x"], pt["y"])
    page.wait_for_function("([old]) => [...document.querySelectorAll('[data-testid=stMarkdownContainer]')]"
                           ".some(e => / neighbours shared by /.test(e.innerText) && e.innerText !== old)",
                           arg=[before], timeout=60_000)
    wait_idle(page)
    assert panel.inner_text() != before and panel.inner_text().startswith(pt["name"])
    table = page.get_by_test_id("stDataFrame").first.inner_text()
    url = page.url
    ctx.close()

    other = browser.new_context(viewport={"width": 1600, "height": 1100})  # the link, in a new browser context
    p2 = other.new_page()
    p2.goto(url)
    p2.get_by_text("Side by side", exact=True).wait_for(timeout=600_000)
    wait_idle(p2, 600_000)
    chips = p2.get_by_test_id("stMultiSelect").first.inner_text()
    assert all(n in chips for n in names.split(","))
    assert p2.get_by_test_id("stDataFrame").first.inner_text() == table
    other.close()


@pytest.mark.slow
@pytest.mark.browser
def test_imported_set_pages_in_browser(stamps_mnv2, browser, app_url):
    """Prototypes (Classifiers: mistakes beside the nearest wrong prototype) and Compare (the set beside
    vits14_saliency on the stamps) on an imported set; their screenshots are the README's."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1100})
    page = ctx.new_page()
    page.goto(f"{app_url}/prototypes?dataset=stamps_mnv2")
    page.get_by_role("heading", name="Prototypes").wait_for(timeout=240_000)
    wait_idle(page)
    page.get_by_role("tab", name="Classifiers").click()
    page.get_by_text(re.compile(r"^Misclassified by NMC")).wait_for(timeout=300_000)
    wait_idle(page)
    assert page.get_by_text("Imported set stamps_mnv2: 48 vectors").is_visible()
    _full_height_screenshot(page, SCREENSHOTS / "prototypes_imported.png")
    page.set_viewport_size({"width": 1600, "height": 1100})
    page.get_by_role("tab", name="Classify an upload").click()
    page.get_by_text(MODEL_ONLY_VIEWS["upload"]).wait_for(timeout=60_000)

    page.goto(f"{app_url}/compare?dataset=stamps&compare=stamps_mnv2,vits14_saliency")
    page.get_by_text("Side by side", exact=True).wait_for(timeout=600_000)
    wait_idle(page, 600_000)
    assert page.get_by_text(re.compile(r"^48 images shared by the 2 sources")).is_visible()
    _full_height_screenshot(page, SCREENSHOTS / "compare_imported.png")
    ctx.close()
