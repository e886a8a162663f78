"""The Compare page: an AppTest smoke test of every section with three tiny backbones (its table equals
core.classify.evaluation.evaluate), and the real app in headless Chromium with two offline backbones, whose
screenshot is docs/screenshots/compare.png."""
from __future__ import annotations

import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.classify.evaluation import evaluate
from core.compare import indices as I
from core.models.extract import extract_features
from tests.conftest import ROOT, SCREENSHOTS, STAMPS, wait_idle
from tests.test_compare import TINY_CNN, TINY_HEADLESS, TINY_VIT, tiny_backbone, tiny_registered

PAGE = str(ROOT / "pages" / "compare" / "page.py")


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_compare_page_apptest_every_section(stamps):
    names = [TINY_VIT, TINY_CNN, TINY_HEADLESS]
    with tiny_registered():
        at = AppTest.from_file(PAGE, default_timeout=300)
        at.query_params["compare"] = ",".join(names)  # the link chooses the backbones
        _run(at)
        assert at.title[0].value == "Compare backbones"
        assert [h.value for h in at.header][:5] == ["Metrics", "Representational similarity (CKA)",
                                                     "Similarity indices", "Side by side",
                                                     "Agreement of the NMC predictions"]
        assert [s.value for s in at.subheader] == ["Agreement map", *names]  # then one column per backbone

        table = at.dataframe[0].value  # the metrics table, the numbers of core.classify.evaluation.evaluate
        assert list(table["backbone"]) == names
        for n, (_, row) in zip(names, table.iterrows()):
            fs = extract_features(tiny_backbone(n), stamps.records)
            for col, m in (("NMC acc.", "nmc"), ("k-NN acc.", "knn"), ("linear acc.", "linear")):
                assert row[col] == evaluate(fs["embedding"], fs.labels, m).accuracy
            assert row["dim"] == fs["embedding"].shape[1]
        ci = at.dataframe[1].value  # each accuracy with its 95 % interval, and a paired verdict per classifier
        assert list(ci.columns) == ["backbone", "NMC", "k-NN", "linear probe"] and len(ci) == 3
        assert sum(("cannot be told apart" in c.value or "is more accurate than" in c.value) for c in at.caption) == 3
        idx = at.dataframe[2].value  # the similarity indices: every index for every pair, equal to core's
        assert len(idx) == 4 * 3 and set(idx["index"]) == {i.label for i in I.INDICES.values()}
        fsets = [extract_features(tiny_backbone(n), stamps.records) for n in names]
        row = idx[(idx["index"] == "mutual k-NN") & (idx["A"] == TINY_VIT) & (idx["B"] == TINY_CNN)].iloc[0]
        assert row["value"] == pytest.approx(I.mutual_knn(fsets[0]["embedding"], fsets[1]["embedding"], I.DEFAULT_K))
        assert row["CI low"] <= row["value"] <= row["CI high"] and row["k"] == I.DEFAULT_K
        agree = at.dataframe[3].value
        assert len(agree) == 3 and agree["agree"].between(0, 1).all()
        caps = _captions(at)
        assert "(0.50, 0.50)" in caps  # no click yet: the centre of the picture
        assert caps.count("Mask: patches of the last block") == 3
        assert len(at.image) >= 3 * 3  # per column: saliency, mask, neighbours

        # shared controls: another image, a fixed threshold, RBF CKA, the layer-by-layer CKA
        at.selectbox(key="cmp_image").set_value(7)
        at.toggle(key="cmp_otsu").set_value(False)
        _run(at)
        at.slider(key="cmp_thr").set_value(0.2)  # enabled once Otsu is off
        at.radio(key="cmp_cka_kind").set_value("rbf")
        _run(at)
        assert stamps.records[7].name in _captions(at)
        assert "at least 0.20" in _captions(at)
        at.selectbox(key="cmp_lay_b").set_value(TINY_CNN)
        at.radio(key="cmp_lay_pool").set_value("mean")
        at.toggle(key="cmp_lay_on").set_value(True)
        _run(at)
        assert not at.error

        at.multiselect(key="cmp_sources").set_value([TINY_VIT])
        _run(at)
        assert any("at least two sources" in i.value for i in at.info)


def test_compare_page_without_labels(tmp_path):
    """A flat folder: no metrics or agreement (said so), but CKA, the similarity indices and the side-by-side views."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(STAMPS.glob("*/*.png"))[::6]:
        (flat / p.name).write_bytes(p.read_bytes())
    with tiny_registered():
        at = AppTest.from_file(PAGE, default_timeout=300)
        at.query_params["compare"] = f"{TINY_VIT},{TINY_HEADLESS}"
        at.session_state["ds_source"] = "Folder on server"
        at.session_state["ds_path"] = str(flat)
        _run(at)
        assert any("need class labels" in i.value for i in at.info)  # metrics, agreement
        assert any("neither attention nor a classifier head" in i.value for i in at.info)  # no prototype target
        assert len(at.dataframe) == 1 and at.caption  # only the similarity indices, which need no labels
        assert [s.value for s in at.subheader] == ["Agreement map", TINY_VIT, TINY_HEADLESS]


def test_figures_share_class_colours_and_label_their_axes():
    from core.render import class_colours
    from pages.compare.figures import agreement_scatter, cka_heatmap, embedding_scatter

    colours = class_colours(["birds", "fish", "tools"])
    rng = np.random.default_rng(0)
    labels = ["birds", "fish", "tools", "fish"]
    figs = [embedding_scatter(rng.normal(size=(4, 2)), labels, list("abcd"), colours, title=n, method="umap", chosen=1,
                              neighbours=[0, 3]) for n in ("A", "B")]
    for f in figs:
        assert (f.layout.xaxis.title.text, f.layout.yaxis.title.text) == ("UMAP 1", "UMAP 2")
        assert [t.name for t in f.data] == ["birds", "fish", "tools", "neighbours", "chosen image"]
        assert {t.name: t.marker.color for t in f.data[:3]} == colours  # the same colour per class everywhere
        assert list(f.data[1].customdata) == [1, 3]  # row indices, for click-to-choose
    ag = agreement_scatter(rng.normal(size=(4, 2)), np.array([0.0, 0.5, 1.0, 0.2]), labels, list("abcd"), k=10,
                           title="t", method="pca", other="B", chosen=2)
    assert (ag.layout.xaxis.title.text, list(ag.data[0].customdata), list(ag.data[1].customdata)) == ("PC 1", [0, 1, 2, 3], [2])
    assert list(ag.data[0].marker.color) == [0.0, 0.5, 1.0, 0.2] and "5 of 10 neighbours shared with B" in ag.data[0].text[1]
    hm = cka_heatmap(np.eye(2), ["a", "b"], ["a", "b"], title="t", colorbar="CKA", x_title="B block", y_title="A block")
    assert hm.layout.xaxis.title.text == "B block" and hm.data[0].zmin == 0 and hm.data[0].zmax == 1
    with pytest.raises(ValueError, match="labels"):
        cka_heatmap(np.eye(2), ["a"], ["a", "b"], title="t", colorbar="CKA")


# ---- the real app in headless Chromium -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_compare_in_browser(page, app_url):
    page.set_viewport_size({"width": 1600, "height": 1000})  # the 14-column table fits from 1600 px
    page.goto(app_url)
    nav = page.get_by_test_id("stSidebarNav")
    nav.get_by_text("Compare", exact=True).wait_for(timeout=120_000)
    wait_idle(page)
    nav.get_by_text("Compare", exact=True).click()
    page.get_by_role("heading", name="Compare backbones").wait_for(timeout=120_000)
    page.get_by_text("Side by side", exact=True).wait_for(timeout=240_000)
    wait_idle(page, 240_000)

    assert page.get_by_test_id("stDataFrame").first.is_visible()  # the metrics table
    assert page.get_by_text(re.compile(r"^Accuracy with its 95 % interval \(16 test images\)")).is_visible()
    assert page.get_by_text(re.compile(r"^NMC: .*McNemar p = ")).is_visible()  # the paired verdict under it
    assert page.get_by_role("heading", name="Similarity indices").is_visible()
    assert page.get_by_role("heading", name="Agreement map").is_visible()
    assert page.get_by_text(re.compile(r"^Mean overlap \d+% \(the mutual k-NN index\)")).is_visible()
    for name in ("mobilenetv2", "vits14_saliency"):  # one column per backbone
        assert page.get_by_role("heading", name=name, exact=True).is_visible()

    # click on the picture: both columns segment from the patch under the same point
    img = page.frame_locator("iframe[title^='streamlit_image_coordinates']").locator("#image")
    img.wait_for(timeout=60_000)
    box = img.bounding_box()
    img.click(position={"x": 0.45 * box["width"], "y": 0.4 * box["height"]})
    page.get_by_text(re.compile(r"same point \(0\.4\d, 0\.[34]\d\)")).wait_for(timeout=120_000)
    wait_idle(page)
    masks = page.get_by_text(re.compile(r"^Mask: patches of the last block")).all()
    assert len(masks) == 2

    page.get_by_text("Compute the layer-by-layer CKA").click()
    page.get_by_text("between blocks").wait_for(timeout=180_000)
    wait_idle(page)

    # the whole page in one picture: the app scrolls inside its main section, so grow the window to it
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stAppViewContainer], section')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1600, "height": int(height) + 40})
    page.wait_for_timeout(2000)
    wait_idle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
