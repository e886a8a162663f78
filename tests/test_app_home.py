"""The shell: AppTest smoke test of the home page, and the app in a real browser."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, SCREENSHOTS, wait_idle


def test_home_page_apptest():
    at = AppTest.from_file(str(ROOT / "pages" / "home" / "page.py"), default_timeout=120).run()
    assert not at.exception
    assert "Backbone Lens" in at.title[0].value
    assert any(m.label == "Images" and m.value == "48" for m in at.metric)


@pytest.mark.slow
@pytest.mark.browser
def test_home_in_browser(page, app_url):
    page.goto(app_url)
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)
    assert page.get_by_text("Skipped files").is_visible()


@pytest.mark.slow
@pytest.mark.browser
def test_sidebar_photos_join_the_dataset_as_a_new_class(page, app_url, tmp_path):
    """Photos added in the sidebar as a new class join the chosen dataset (48 stamps + 2 = 50 images,
    9 classes) with a count per batch and a remove button; a file that is not an image is refused by
    name and the rest are kept; a reload of the link keeps them."""
    from tests.conftest import STAMPS

    files = [sorted((STAMPS / c).glob("*.png"))[0] for c in ("birds", "fish")]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.goto(app_url)
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Add your photos").click()
    sidebar.locator("input[type='file']").set_input_files([str(p) for p in files] + [str(bad)])
    sidebar.get_by_text("a new class", exact=True).click()
    sidebar.get_by_label("Class name (for a new class)").fill("mine")
    page.wait_for_timeout(500)
    sidebar.get_by_role("button", name="Add", exact=True).click()
    wait_idle(page)
    sidebar.get_by_text("Cannot use the uploaded file notes.png").wait_for(timeout=60_000)
    metrics = page.get_by_test_id("stMetric")
    metrics.filter(has_text="Images").get_by_test_id("stMetricValue").filter(has_text="50").wait_for(timeout=60_000)
    assert metrics.filter(has_text="Classes").get_by_test_id("stMetricValue").inner_text() == "9"
    assert "s=" in page.url  # the link names the session's photos
    page.reload()
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)
    metrics = page.get_by_test_id("stMetric")
    metrics.filter(has_text="Images").get_by_test_id("stMetricValue").filter(has_text="50").wait_for(timeout=60_000)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Your photos (2)").click()
    sidebar.get_by_text("new class mine").wait_for(timeout=10_000)


def test_add_without_photos_says_what_to_do():
    """Pressing Add in the sidebar's photos box before any photo is listed says so (it used to do nothing)."""
    at = AppTest.from_file(str(ROOT / "pages" / "home" / "page.py"), default_timeout=120).run()
    at.button(key="FormSubmitter:upload_form-Add").click().run()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [
        "No photos to add: choose them above (wait until each is listed), then press Add."]
