"""A newcomer's journey with their own photo, in headless Chromium, asserting what a person sees at each step:
the cat uploaded once on Saliency is explained against the ImageNet head with the warning that it is far from
every class of the stamps; it is kept on Segmentation and Prototypes without a new upload, and by a reload of
the link; Prototypes classifies it as none of the stamps' classes; Compare runs three backbones on the labelled
stamps (the photo, without a class, is left out and the page says so) and its link, opened in another browser,
shows the same choice and the same table."""
from __future__ import annotations

import re

import pytest

from tests.conftest import SCENES, SCREENSHOTS, wait_idle

CAT_RATIO = 451 / 300  # sample_data/scenes/cat.jpg
CLICKABLE = "iframe[title^='streamlit_image_coordinates']"
THREE = ("mobilenetv2", "vits14_saliency", "efficientnet_lite0")


def _nav(page, name: str, heading: str | None = None) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(name, exact=True).click()
    page.get_by_role("heading", name=heading or name).first.wait_for(timeout=120_000)
    wait_idle(page)


def _photos_kept(page, n: int = 1) -> None:
    page.get_by_test_id("stSidebar").get_by_text(f"Your photos ({n})").wait_for(timeout=60_000)


@pytest.mark.slow
@pytest.mark.browser
def test_own_photo_journey_in_browser(browser, app_url):
    ctx = browser.new_context(viewport={"width": 1600, "height": 1300})
    page = ctx.new_page()
    page.goto(app_url)
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)

    # 1. Saliency: the photo, once; a headed backbone explains it against its ImageNet class, after the warning
    _nav(page, "Saliency")
    page.get_by_test_id("stMain").locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(
        str(SCENES / "cat.jpg"))
    _photos_kept(page)
    page.get_by_text("Far from every class of this dataset").wait_for(timeout=180_000)
    page.get_by_text("Target: ").first.wait_for(timeout=180_000)
    wait_idle(page)
    assert "Egyptian cat" in page.get_by_text("Target: ").first.inner_text()
    assert "s=" in page.url  # the link names the session's photos

    # 2. another page: the same photo, no new upload (the clickable picture has the cat's shape)
    _nav(page, "Segmentation")
    page.wait_for_function(
        """([sel, ratio]) => [...document.querySelectorAll(sel)].some(f => {
            const i = f.contentDocument && f.contentDocument.getElementById('image');
            return !!i && i.complete && i.naturalWidth > 0 && Math.abs(i.width / i.height - ratio) < 0.02;
        })""", arg=[CLICKABLE, CAT_RATIO], timeout=180_000)
    _photos_kept(page)

    # 3. Prototypes, then a reload of the link: still there, and classified as none of the stamps' classes
    _nav(page, "Prototypes")
    page.reload()
    page.get_by_role("heading", name="Prototypes").first.wait_for(timeout=120_000)
    wait_idle(page)
    _photos_kept(page)
    page.get_by_role("tab", name="Classify an upload").click()
    page.get_by_text("None of these classes").wait_for(timeout=180_000)
    wait_idle(page)
    assert page.get_by_text("cat.jpg", exact=True).first.is_visible()
    assert not page.get_by_text("Predicted class:").is_visible()  # no green box for a cat among stamps
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "journey_classify.png"))

    # 4. Compare with three backbones; the link carries the choice to another browser
    _nav(page, "Compare", "Compare backbones")
    choice = page.get_by_test_id("stMultiSelect").first
    choice.click()
    page.keyboard.type(THREE[2])
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    # the two-source page stays on screen while the three-source run extracts: wait for the new run's own text
    page.get_by_text(re.compile(r"^48 images shared by the 3 sources")).wait_for(timeout=600_000)
    page.get_by_role("heading", name=THREE[2], exact=True).wait_for(timeout=600_000)
    wait_idle(page, 600_000)
    chips = choice.inner_text()
    assert all(n in chips for n in THREE), chips
    assert re.search(r"compare=([^&]*)", page.url) and all(n in page.url for n in THREE)
    page.screenshot(path=str(SCREENSHOTS / "journey_compare.png"))
    # the photo has no class: left out of the comparison, which measures the 48 labelled stamps (with accuracies)
    assert page.get_by_text(re.compile(r"^1 unlabelled image is left out")).is_visible()
    assert page.get_by_text(re.compile(r"^48 images shared by the 3 sources")).is_visible()
    for n in THREE:
        assert page.get_by_role("heading", name=n, exact=True).is_visible()  # a side-by-side column each
    assert page.get_by_text(re.compile(r"^Accuracy with its 95 % interval")).is_visible()
    table = page.get_by_test_id("stDataFrame").first.inner_text()
    url = page.url
    ctx.close()

    other = browser.new_context(viewport={"width": 1600, "height": 1300})
    p2 = other.new_page()
    p2.goto(url)
    p2.get_by_text("Side by side", exact=True).wait_for(timeout=600_000)
    wait_idle(p2, 600_000)
    assert all(n in p2.get_by_test_id("stMultiSelect").first.inner_text() for n in THREE)
    assert p2.get_by_test_id("stDataFrame").first.inner_text() == table
    other.close()
