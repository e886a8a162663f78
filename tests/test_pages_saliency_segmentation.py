"""The Saliency and Segmentation pages: AppTest smoke tests of every tab, and the app in a real browser
(upload a picture, click on it, see the mask; screenshots in docs/screenshots)."""
from __future__ import annotations

import re
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from core.io.images import decode_alpha
from core.segment.similarity import pixel_to_patch
from tests.conftest import ROOT, SCENES, SCREENSHOTS, STAMPS, wait_idle

SALIENCY = str(ROOT / "pages" / "saliency" / "page.py")
SEGMENTATION = str(ROOT / "pages" / "segmentation" / "page.py")


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _open(at: AppTest, key: str, tab: str) -> AppTest:
    at.session_state[key] = tab  # lazy tabs: only the open one runs
    return _run(at)


@pytest.fixture
def small_dataset(tmp_path):
    """Two classes of three stamps: class means without extracting all 48 sample images."""
    for cls in ("birds", "fruit"):
        (tmp_path / cls).mkdir()
        for f in sorted((STAMPS / cls).glob("*.png"))[:3]:
            shutil.copy(f, tmp_path / cls / f.name)
    return tmp_path


def _use_folder(at: AppTest, folder) -> AppTest:
    at.radio(key="ds_source").set_value("Folder on server")
    _run(at)
    at.text_input(key="ds_path").set_value(str(folder))
    return _run(at)


@pytest.mark.slow
def test_saliency_page_every_tab_on_the_vit(small_dataset):
    at = _use_folder(_run(AppTest.from_file(SALIENCY, default_timeout=300)), small_dataset)
    assert at.title[0].value == "Saliency"
    assert at.select_slider(key="sal_blk").value == 11  # the last block, from the spec
    assert any("16x16 grid" in c.value for c in at.caption)

    _open(at, "sal_tab", "Grad-CAM")
    assert at.radio(key="sal_tkind_vits14_saliency").value == "Dataset class prototype"  # no head
    assert list(at.dataframe[0].value.columns) == ["class prototype", "cosine"]
    assert any(c.value.startswith("Target: **prototype:") for c in at.caption)

    _open(at, "sal_tab", "Prototype maps")
    assert sorted(at.dataframe[0].value["class"]) == ["birds", "fruit"]  # the ranking of the classes

    _open(at, "sal_tab", "Faithfulness")
    at.multiselect(key="sal_faith_maps").set_value(["Grad-CAM", "Random map (baseline)"])
    at.slider(key="sal_faith_steps").set_value(5)
    at.toggle(key="sal_faith_on").set_value(True)
    _run(at)
    scores = at.dataframe[0].value
    assert list(scores["map"]) == ["Grad-CAM", "Random map (baseline)"]
    assert scores["deletion AUC (lower is better)"].between(0, 2).all()


@pytest.mark.slow
def test_saliency_page_on_a_cnn_with_a_head():
    at = _run(AppTest.from_file(SALIENCY, default_timeout=300))
    at.selectbox(key="_w_backbone_vits14_saliency").set_value("mobilenetv2")
    _run(at)
    _open(at, "sal_tab", "Attention")
    assert any("has no attention" in i.value for i in at.info)  # the Attention tab says why it is empty
    _open(at, "sal_tab", "Grad-CAM")
    assert at.radio(key="sal_tkind_mobilenetv2").value == "ImageNet class"
    top = at.dataframe[0].value
    assert list(top.columns) == ["class", "probability"] and len(top) == 5
    assert top["probability"].is_monotonic_decreasing


@pytest.mark.slow
def test_segmentation_page_every_tab():
    at = _run(AppTest.from_file(SEGMENTATION, default_timeout=300))
    assert at.title[0].value == "Segmentation"
    text = " ".join(m.value for m in at.markdown)
    # no click yet: the most object-like patch (top first-PC score), which lies on the bird
    i, j = (int(v) for v in re.search(r"patch \((\d+), (\d+)\)", text).groups())
    first = sorted((STAMPS / "birds").glob("*.png"))[0]
    alpha = decode_alpha(first.read_bytes(), first.name)  # [H, W] bool
    h, w = alpha.shape
    assert alpha[int((i + 0.5) * h / 16), int((j + 0.5) * w / 16)], (i, j)
    at.toggle(key="seg_border").set_value(True)
    _run(at)
    assert "closer to the clicked object than to the border" in " ".join(m.value for m in at.markdown)
    at.toggle(key="seg_border").set_value(False)
    at.toggle(key="seg_auto").set_value(False)
    _run(at)
    at.slider(key="seg_thr").set_value(0.3)
    _run(at)
    assert "threshold 0.30" in " ".join(m.value for m in at.markdown)
    for tab in ["Parts (k-means)", "Foreground", "Co-segmentation"]:
        _open(at, "seg_tab", tab)
    assert any("One k-means over the patches of all 4 pictures" in c.value for c in at.caption)
    at.toggle(key="seg_sharp").set_value(True)  # every mask refined to the picture's edges
    for tab in ["Foreground", "Parts (k-means)", "Click to segment"]:
        _open(at, "seg_tab", tab)
        if tab == "Foreground":
            assert any("Normalized cut" in m.value for m in at.markdown)
            assert any("Boundary prior" in m.value for m in at.markdown)
    assert "(pixel-sharp edges)" in " ".join(m.value for m in at.markdown)


# ---- the real app in headless Chromium -------------------------------------------------------------
def _goto(page, app_url: str, nav: str) -> None:
    page.goto(app_url)
    page.get_by_test_id("stSidebarNav").get_by_text(nav, exact=True).wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text(nav, exact=True).click()
    page.get_by_role("heading", name=nav).wait_for(timeout=120_000)
    wait_idle(page)


def _upload(page, path) -> None:
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(str(path))
    wait_idle(page)


@pytest.mark.slow
@pytest.mark.browser
def test_segmentation_upload_click_mask_in_browser(page, app_url, tmp_path):
    page.set_viewport_size({"width": 1400, "height": 1300})
    _goto(page, app_url, "Segmentation")
    _upload(page, SCENES / "cat.jpg")
    page.get_by_text("Showing the upload").wait_for(timeout=60_000)
    iframes = "iframe[title^='streamlit_image_coordinates']"
    page.wait_for_function(  # one clickable picture, and it is the upload (451 x 300), loaded and sized
        """([sel, ratio]) => {
            const f = document.querySelectorAll(sel);
            if (f.length !== 1 || !f[0].contentDocument) return false;
            const i = f[0].contentDocument.getElementById('image');
            return !!i && i.complete && i.naturalWidth > 0 && Math.abs(i.width / i.height - ratio) < 0.02;
        }""", arg=[iframes, 451 / 300], timeout=60_000)
    img = page.frame_locator(iframes).locator("#image")
    box = img.bounding_box()
    before = img.get_attribute("src")  # the picture with the mask of the default patch drawn on it
    x, y = 0.32 * box["width"], 0.42 * box["height"]  # on the cat's left eye
    want = pixel_to_patch((x, y), (box["width"], box["height"]), (16, 16))
    img.click(position={"x": x, "y": y})
    label = page.get_by_text(re.compile(rf"patch \({want[0]}, {want[1]}\)"))
    label.wait_for(timeout=60_000)
    page.wait_for_function(  # the click view (a fragment) redrew the clickable picture with the new mask
        """([sel, old]) => {
            const i = document.querySelector(sel).contentDocument.getElementById('image');
            return !!i && i.src !== old && i.complete && i.naturalWidth > 0;
        }""", arg=[iframes, before], timeout=60_000)
    wait_idle(page)
    share = int(re.search(r"mask (\d+)% of the picture", label.inner_text()).group(1))
    assert 0 < share < 100  # a real mask, neither empty nor everything
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "segmentation.png"), full_page=True)

    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    _upload(page, bad)
    page.get_by_text("Cannot use the uploaded file").wait_for(timeout=60_000)
    assert "notes.png" in page.get_by_test_id("stAlert").first.inner_text()


@pytest.mark.slow
@pytest.mark.browser
def test_saliency_in_browser(page, app_url):
    page.set_viewport_size({"width": 1400, "height": 2300})
    _goto(page, app_url, "Saliency")
    _upload(page, SCENES / "cat.jpg")
    page.get_by_text("Showing the upload").wait_for(timeout=60_000)
    page.get_by_text("Enlarge one").wait_for(timeout=60_000)
    wait_idle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "saliency.png"), full_page=True)

    page.get_by_test_id("stSidebar").get_by_role("combobox", name="Backbone").click()  # the backbone picker
    page.get_by_role("option", name="mobilenetv2").click()
    wait_idle(page)
    page.get_by_role("tab", name="Grad-CAM").click()
    page.set_viewport_size({"width": 1400, "height": 1300})
    page.get_by_text("Target: ").first.wait_for(timeout=120_000)
    wait_idle(page)
    assert "Egyptian cat" in page.get_by_text("Target: ").first.inner_text()  # the head's top-1 on the upload
    page.screenshot(path=str(SCREENSHOTS / "saliency_gradcam.png"), full_page=True)
