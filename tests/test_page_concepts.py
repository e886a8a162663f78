"""The Concepts page and the Saliency page's concept-map tab with the real MobileNetV2 on the stamps: the atlas
computed on the worker with its progress bar, the page's numbers equal to core's atlas, names saved and shown,
the tab's button and map (a dataset picture and an upload); and the Concepts page in headless Chromium, whose
screenshot is docs/screenshots/concepts.png."""
from __future__ import annotations

import re
import shutil
import threading
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.concepts import atlas as atlas_mod
from core.concepts.atlas import cached_atlas
from core.io.images import load_folder
from tests.conftest import ROOT, SCENES, SCREENSHOTS, STAMPS, wait_idle

CONCEPTS = str(ROOT / "pages" / "concepts" / "page.py")
SALIENCY = str(ROOT / "pages" / "saliency" / "page.py")
DONE_S = 300  # the atlas of the 48 stamps takes seconds to a minute (longer on a busy machine)


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _until(at: AppTest, ready, what: str) -> AppTest:
    """Rerun (as the page's polling fragment would) until ``ready(at)``; the job runs on its worker meanwhile."""
    deadline = time.time() + DONE_S
    while not ready(at):
        assert not at.error, [e.value for e in at.error]
        assert time.time() < deadline, f"no {what} after {DONE_S} s"
        time.sleep(1.0)
        _run(at)
    return at


def _fidelity(at: AppTest) -> str:
    return next((m.value for m in at.markdown if m.value.startswith("**Fidelity.**")), "")


@pytest.mark.slow
def test_concepts_page_computes_the_atlas_and_keeps_names(get_backbone, stamps, monkeypatch):
    at = _run(AppTest.from_file(CONCEPTS, default_timeout=300))
    assert at.title[0].value == "Concepts"
    if not _fidelity(at):  # not cached by an earlier test: the job runs with its progress bar
        assert re.search(r"step [1-4] of 4", at.get("progress")[0].proto.text)
    _until(at, _fidelity, "fidelity line")

    a = cached_atlas(get_backbone("mobilenetv2"), stamps.records)  # what the page made, read back by core
    assert a is not None and a.k == 12 and a.basis.method == "nmf"
    d = a.deletion.summary()
    line = _fidelity(at)
    assert f"**{a.variance_explained:.0%}** of the variance" in line
    assert f"from {d['nmc_accuracy']:.0%} to **{d['nmc_accuracy'] - d['mean_drop_top']:.0%}**" in line
    assert f"larger in {d['classes_top_drops_more']} of 8 classes" in line
    assert "embedding's own" not in line  # exact on a CNN: no proxy to state
    assert any(c.value.startswith("Exact: the embedding is the mean of the patch vectors") for c in at.caption)
    assert len(at.image) == 1 and at.image[0].value  # the atlas figure

    table = at.dataframe[0].value  # the class table in numbers: core's, and it sums to the score
    assert list(table["class"]) == sorted(p.name for p in STAMPS.iterdir())
    concepts = table[[f"C{j}" for j in range(12)]].to_numpy()
    np.testing.assert_allclose(concepts, a.table.contributions, rtol=1e-6)
    np.testing.assert_allclose(concepts.sum(1) + table["offset"] + table["residual"], table["score"], atol=1e-5)

    key = a.path.name
    at.text_input(key=f"cc_name_{key}_2").set_value("brown hide")
    at.text_input(key=f"cc_name_{key}_5").set_value("  petals ")
    at.button(key=f"FormSubmitter:cc_names_{key}-Save names").click()
    _run(at)
    names = cached_atlas(get_backbone("mobilenetv2"), stamps.records).names  # stored beside the atlas
    assert names[2] == "brown hide" and names[5] == "petals" and names[1] == ""
    assert {"C2 brown hide", "C5 petals", "C1"} <= set(at.dataframe[0].value.columns)
    assert at.text_input(key=f"cc_name_{key}_2").value == "brown hide"
    assert [b.label for b in at.download_button] == ["⬇ Atlas PNG", "⬇ JSON"]

    # other settings: another atlas (the features are cached), cancelled from its progress bar while it fits (held
    # there by the test), then computed from the button the page offers instead of starting again by itself
    release = threading.Event()
    real_fit = atlas_mod.fit_basis

    def held_fit(*args, **kwargs):
        release.wait(120)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(atlas_mod, "fit_basis", held_fit)
    at.slider(key="cc_k").set_value(3)
    at.button(key="FormSubmitter:cc_settings-Find the concepts").click()
    _run(at)
    _until(at, lambda t: bool(t.get("progress")) and "step 2 of 4, fitting" in t.get("progress")[0].proto.text, "fit")
    at.button(key="cc_cancel").click()
    _run(at)
    release.set()  # the abandoned job goes on to its next check and stops there, storing nothing
    button = next(b for b in at.button if b.label.startswith("Compute the concept atlas"))
    assert not _fidelity(at) and cached_atlas(get_backbone("mobilenetv2"), stamps.records, k=3) is None
    button.click()
    _run(at)
    _until(at, lambda t: any("3 concepts (nmf)" in c.value for c in t.caption), "atlas with k = 3")
    assert len(at.dataframe[0].value.columns) == 2 + 3 + 3


@pytest.fixture
def small_dataset(tmp_path):
    """Two classes of three stamps: an atlas no other test has made."""
    for cls in ("birds", "fruit"):
        (tmp_path / cls).mkdir()
        for f in sorted((STAMPS / cls).glob("*.png"))[:3]:
            shutil.copy(f, tmp_path / cls / f.name)
    return tmp_path


@pytest.mark.slow
def test_saliency_concept_map_tab(get_backbone, small_dataset):
    at = _run(AppTest.from_file(SALIENCY, default_timeout=300))
    at.radio(key="ds_source").set_value("Folder on server")
    _run(at)
    at.text_input(key="ds_path").set_value(str(small_dataset))
    _run(at)
    at.selectbox(key="_w_backbone_vits14_saliency").set_value("mobilenetv2")
    _run(at)
    at.session_state["sal_tab"] = "Concept map"  # lazy tabs: only the open one runs
    _run(at)
    ds = load_folder(small_dataset)
    assert cached_atlas(get_backbone("mobilenetv2"), ds.records) is None
    button = next(b for b in at.button if b.label.startswith("Compute the concept atlas"))
    assert re.fullmatch(r"Compute the concept atlas \(about \d+ s\)", button.label)
    assert not at.image  # nothing computed until asked
    button.click()
    _run(at)
    _until(at, lambda t: any(c.value.startswith("Each patch painted") for c in t.caption), "concept map")
    a = cached_atlas(get_backbone("mobilenetv2"), ds.records)
    assert a is not None and a.k == 12
    assert len(at.image) == 2  # the map, and the strips of the concepts that cover most of the picture
    caption = next(c.value for c in at.caption if c.value.startswith("Each patch painted"))
    assert "[class] = the class the concept carries" in caption and "encoded on the dataset's concepts" not in caption

    at.file_uploader(key="sal_upload_0").upload("cat.jpg", (SCENES / "cat.jpg").read_bytes(), "image/jpeg")
    _run(at)
    caption = next(c.value for c in at.caption if c.value.startswith("Each patch painted"))
    assert "its patch tokens were encoded on the dataset's concepts" in caption
    assert len(at.image) == 2


# ---- the real app in headless Chromium -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_concepts_page_in_browser(page, app_url):
    page.set_viewport_size({"width": 1600, "height": 3500})  # the whole page: settings, atlas, names, class table
    page.goto(f"{app_url}/concepts")
    page.get_by_role("heading", name="Concepts", exact=True).wait_for(timeout=120_000)
    page.get_by_text("Fidelity.").wait_for(timeout=DONE_S * 1000)  # the progress bar, then the atlas
    wait_idle(page)
    box = page.get_by_test_id("stMain").get_by_test_id("stForm").nth(1)  # the names form under the atlas
    box.get_by_label("C11", exact=True).fill("fruit skin")
    box.get_by_role("button", name="Save names").click()
    wait_idle(page)
    page.locator(".xtick", has_text="fruit skin").wait_for(timeout=60_000)  # the class table's column, with the name
    img = page.get_by_test_id("stImage").locator("img").first
    page.wait_for_function("(i) => i.complete && i.naturalWidth > 1000", arg=img.element_handle(), timeout=60_000)
    table = page.locator(".st-key-cc_table")
    table.wait_for(timeout=60_000)
    table.scroll_into_view_if_needed()  # drawn in view (the full suite once timed out here on a loaded machine)
    table.locator(".heatmaplayer").wait_for(timeout=120_000)  # the class table drawn
    page.get_by_role("heading", name="Concepts", exact=True).scroll_into_view_if_needed()
    page.get_by_test_id("stToast").wait_for(state="detached", timeout=30_000)  # "Names saved" goes by itself
    wait_idle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # the page's content without the sidebar (its caption names the backbone and the images): the crops and the
    # class table stay legible at the README's width
    page.get_by_test_id("stMainBlockContainer").screenshot(path=str(SCREENSHOTS / "concepts.png"))

    # the Saliency page's concept map of a stamp, from the atlas just made (a link opens it with the backbone)
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.goto(f"{app_url}/saliency?dataset=stamps&backbone=mobilenetv2")
    page.get_by_role("heading", name="Saliency", exact=True).wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_role("tab", name="Concept map").click()
    page.get_by_text("Each patch painted").wait_for(timeout=120_000)
    wait_idle(page)
    assert page.get_by_test_id("stImage").count() == 2  # the map and the strips of its main concepts
    page.screenshot(path=str(SCREENSHOTS / "saliency_concepts.png"), full_page=True)


@pytest.mark.slow
def test_fidelity_line_states_the_vits_proxy_and_a_missing_deletion_test(get_backbone, small_dataset, tmp_path):
    from core.concepts.atlas import concept_atlas
    from pages.concepts.section_atlas import fidelity

    ds = load_folder(small_dataset)
    vit = concept_atlas(get_backbone("vits14_saliency"), ds.records, k=4)
    assert not vit.exact and vit.deletion is not None
    line = fidelity(vit)
    assert f"**{vit.variance_explained:.0%}** of the variance" in line
    assert f"the embedding's own NMC accuracy is {vit.embedding_accuracy:.0%}" in line

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(small_dataset.rglob("*.png")):
        shutil.copy(f, flat / f"{f.parent.name}_{f.name}")
    cnn = concept_atlas(get_backbone("mobilenetv2"), load_folder(flat).records, k=3)
    assert cnn.deletion is None
    assert fidelity(cnn).endswith(f"Deletion test: {cnn.deletion_note}.") and "no class labels" in cnn.deletion_note
