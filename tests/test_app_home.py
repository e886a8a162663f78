"""The shell: AppTest smoke test of the home page, and the app in a real browser."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, SCREENSHOTS, wait_idle


def test_home_page_apptest():
    at = AppTest.from_file(str(ROOT / "pages" / "home.py"), default_timeout=120).run()
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
