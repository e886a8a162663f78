"""The Saliency page's report card tab: the cascade plot and the report card, with Streamlit's AppTest and
in headless Chromium (screenshot under artifacts/screenshots)."""
from __future__ import annotations

import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, SCREENSHOTS, STAMPS, wait_idle

SALIENCY = str(ROOT / "pages" / "saliency" / "page.py")


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.fixture
def two_classes(tmp_path):
    """Two classes of two stamps (alpha channels kept)."""
    for cls in ("birds", "fruit"):
        (tmp_path / cls).mkdir()
        for f in sorted((STAMPS / cls).glob("*.png"))[:2]:
            shutil.copy(f, tmp_path / cls / f.name)
    return tmp_path


@pytest.mark.slow
def test_report_card_tab_on_mobilenetv2(two_classes):
    at = _run(AppTest.from_file(SALIENCY, default_timeout=900))
    at.radio(key="ds_source").set_value("Folder on server")
    _run(at)
    at.text_input(key="ds_path").set_value(str(two_classes))
    _run(at)
    at.selectbox(key="_w_backbone_vits14_saliency").set_value("mobilenetv2")
    _run(at)
    at.session_state["sal_tab"] = "Report card"
    _run(at)
    at.multiselect(key="sal_sanity_methods").set_value(["Grad-CAM", "Random map (baseline)"])
    _run(at)
    at.button(key="sal_sanity_go").click()
    _run(at)
    assert len(at.get("plotly_chart")) == 2  # Spearman and SSIM against depth
    at.select_slider(key="sal_card_n").set_value(4)  # the whole folder
    _run(at)
    at.button(key="sal_card_go").click()
    _run(at)
    for _ in range(600):  # the card runs on the worker thread; the page shows its progress meanwhile
        if any(c.value.startswith("4 image(s)") for c in at.caption):
            break
        assert at.get("progress") or at.get("button"), "neither the card nor its progress"
        time.sleep(1)
        _run(at)
    table = at.dataframe[0].value
    assert list(table.columns)[:3] == ["method", "mprt_spearman", "mprt_ssim"]
    assert {"Grad-CAM", "Random map (baseline)", "Prototype map A"} <= set(table["method"])
    random_row = table[table["method"] == "Random map (baseline)"].iloc[0]
    assert random_row["mprt_spearman"].startswith("1.00 [1.00, 1.00]")  # the control ignores the model
    assert any("with an object mask" in c.value for c in at.caption)
    assert any(c.value.startswith("**") and "explaining" in c.value for c in at.caption)  # the example map
    # a second visit: the finished card at once (kept by the pool), every picture's scores cached
    at2 = _run(AppTest.from_file(SALIENCY, default_timeout=900))
    at2.radio(key="ds_source").set_value("Folder on server")
    _run(at2)
    at2.text_input(key="ds_path").set_value(str(two_classes))
    _run(at2)
    at2.selectbox(key="_w_backbone_vits14_saliency").set_value("mobilenetv2")
    _run(at2)
    at2.session_state["sal_tab"] = "Report card"
    _run(at2)
    at2.select_slider(key="sal_card_n").set_value(4)
    _run(at2)
    assert at2.dataframe and any(c.value.startswith("4 image(s)") for c in at2.caption)


@pytest.mark.slow
@pytest.mark.browser
def test_report_card_in_browser(page, app_url):
    page.set_viewport_size({"width": 1400, "height": 2600})
    page.goto(app_url)
    nav = page.get_by_test_id("stSidebarNav").get_by_text("Saliency", exact=True)
    nav.wait_for(timeout=120_000)
    wait_idle(page)
    nav.click()
    page.get_by_role("heading", name="Saliency").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_test_id("stSidebar").get_by_role("combobox", name="Backbone").click()
    page.get_by_role("option", name="mobilenetv2").click()
    wait_idle(page)
    page.get_by_role("tab", name="Report card").click()
    wait_idle(page)
    page.get_by_role("button", name="Run the cascade on this picture").click()
    page.get_by_text("Spearman rank correlation with the").first.wait_for(timeout=600_000)
    wait_idle(page, timeout=600_000)
    page.get_by_role("button", name="Compute the report card on 8 image(s)").click()
    page.get_by_text("images:").first.wait_for(timeout=120_000)  # the progress bar, from the worker
    page.get_by_text("with an object mask").first.wait_for(timeout=900_000)
    page.get_by_text("Can the best method be told apart?").wait_for(timeout=60_000)
    page.get_by_text("explaining").first.wait_for(timeout=120_000)  # the example map of the best method
    wait_idle(page, timeout=600_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "saliency_report.png"), full_page=True)
