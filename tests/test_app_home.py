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
def test_sidebar_uploads_become_the_dataset(page, app_url, tmp_path):
    """Uploads in the sidebar, with a class name per batch, become the dataset every page uses;
    a file that is not an image is reported by name and the rest are kept."""
    from tests.conftest import STAMPS

    files = [sorted((STAMPS / c).glob("*.png"))[0] for c in ("birds", "fish")]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.goto(app_url)
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_test_id("stSidebar").get_by_text("Uploads", exact=True).click()
    wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.locator("input[type='file']").set_input_files([str(p) for p in files] + [str(bad)])
    sidebar.get_by_label("Class name for this batch (optional)").fill("mine")
    page.wait_for_timeout(500)
    sidebar.get_by_role("button", name="Add to dataset").click()
    wait_idle(page)
    sidebar.get_by_text("3 uploaded images").wait_for(timeout=60_000)
    sidebar.get_by_text("1 file skipped").wait_for(timeout=60_000)
    metrics = page.get_by_test_id("stMetric")
    assert metrics.filter(has_text="Images").get_by_test_id("stMetricValue").inner_text() == "2"
    assert metrics.filter(has_text="Skipped files").get_by_test_id("stMetricValue").inner_text() == "1"
    sidebar.get_by_text("1 file skipped").click()
    sidebar.get_by_text("notes.png").wait_for(timeout=10_000)
