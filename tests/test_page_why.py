"""The Why page: AppTest of the "Why neighbours" tab with tiny seeded backbones (fast: the default pair, the
links, the top-k slider, "B: A's nearest", a link's ?a=&b=, a hand-off, a backbone no method covers) and with
the real offline weights on two stamps (exact on MobileNetV2, attributed on vits14_saliency), the Embeddings
page's "Why?" button handing its pair over, and the journey in headless Chromium, whose screenshot is
docs/screenshots/why_neighbours.png."""
from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.models.extract import extract_features
from core.relate import why_neighbours
from pages.shared.why import WhyPair
from tests.conftest import ROOT, SCREENSHOTS, tiny_timm_backbone, wait_idle
from tests.test_compare import TINY_CNN, TINY_VIT, tiny_backbone, tiny_registered

PAGE = str(ROOT / "pages" / "why" / "page.py")
APP = str(ROOT / "app.py")
BIRDS = ("birds/crow.png", "birds/blackbird.png")
HANDOFF = "_why_pair"  # pages.shared.why's session key


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def _nearest(X: np.ndarray, i: int) -> int:
    """Brute force: the row of X most cosine-similar to row i, i left out."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    s = Xn @ Xn[i]
    s[i] = -np.inf
    return int(np.argmax(s))


def _cosine(X: np.ndarray, i: int, j: int) -> float:
    return float(X[i] @ X[j] / np.linalg.norm(X[i]) / np.linalg.norm(X[j]))


def _page(backbone: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=600)
    at.session_state["chosen_backbone"] = backbone
    return at


def _shown_pair(at: AppTest) -> tuple[int, int]:
    return at.selectbox(key="why_a").value, at.selectbox(key="why_b").value


def _check_explanation(at: AppTest, backbone, records, a: int, b: int, X: np.ndarray, *, exact: bool, top_k: int = 10):
    """What the tab shows for the pair (a, b) is core's: the badge, the cosine, the links, the check."""
    r = why_neighbours(backbone, records[a].decode(), records[b].decode(), top_k=top_k)
    badge = next(m.value for m in at.markdown if "-badge[" in m.value)
    assert ("Exact" in badge and ":green-badge" in badge) if exact else ("Attributed" in badge and ":orange-badge" in badge)
    assert f"**{r.label}** · {r.reference}" in _markdown(at)
    assert f"cosine {r.cosine:.4f}" in _captions(at)
    assert r.cosine == pytest.approx(_cosine(X, a, b), abs=1e-5)  # the backbone's own embeddings of the dataset
    assert r.caption() in _captions(at)
    table = at.dataframe[0].value
    assert list(table["contribution"]) == pytest.approx([lk.contribution for lk in r.links])
    assert list(table.iloc[:, 1]) == [f"{lk.a[0]}, {lk.a[1]}" for lk in r.links]
    assert list(table.iloc[:, 2]) == [f"{lk.b[0]}, {lk.b[1]}" for lk in r.links]
    check = [s.value for s in at.success] + [w.value for w in at.warning]
    assert len(check) == 1 and check[0].startswith("Deletion check: Blurring the")
    assert len(at.image) == 1  # the figure
    return r


# ---- fast: tiny seeded backbones -------------------------------------------------------------------
def test_why_tab_on_tiny_backbones(stamps):
    with tiny_registered():
        at = _run(_page(TINY_CNN))
        assert at.title[0].value == "Why"
        X = extract_features(tiny_backbone(TINY_CNN), stamps.records)["embedding"]
        a, b = _shown_pair(at)
        assert (a, b) == (0, _nearest(X, 0))  # the first image and its nearest neighbour
        assert (at.query_params["a"], at.query_params["b"]) == (str(a), str(b))  # the shareable link
        _check_explanation(at, tiny_backbone(TINY_CNN), stamps.records, a, b, X, exact=True)
        assert len(at.get("download_button")) == 2  # PNG and JSON

        at.slider(key="why_k").set_value(3)
        _run(at)
        assert len(at.dataframe[0].value) == 3
        _check_explanation(at, tiny_backbone(TINY_CNN), stamps.records, a, b, X, exact=True, top_k=3)

        at.selectbox(key="why_a").set_value(17)
        _run(at)
        at.button(key="why_nearest").click()
        _run(at)
        assert _shown_pair(at) == (17, _nearest(X, 17))

        at.selectbox(key="why_b").set_value(17)
        _run(at)
        assert any("same picture" in i.value for i in at.info)

        at.selectbox(key="_w_backbone_mobilenetv2").set_value(TINY_VIT)  # the backbone: a CLS-token ViT, attributed
        at.selectbox(key="why_b").set_value(30)
        _run(at)
        Xv = extract_features(tiny_backbone(TINY_VIT), stamps.records)["embedding"]
        r = _check_explanation(at, tiny_backbone(TINY_VIT), stamps.records, 17, 30, Xv, exact=False, top_k=3)
        assert "Eberle" in r.reference


def test_a_link_and_a_hand_off_open_their_pair(stamps):
    with tiny_registered():
        at = _page(TINY_CNN)
        at.query_params["a"], at.query_params["b"] = "3", "40"
        _run(at)
        assert _shown_pair(at) == (3, 40)

        recs = stamps.records
        at.session_state[HANDOFF] = WhyPair(recs[10].sha256, recs[20].sha256, None, "Embeddings")
        _run(at)
        assert _shown_pair(at) == (10, 20)
        assert "Opened from Embeddings" in _captions(at)
        _run(at)  # the hand-off is taken once; the widgets keep the pair
        assert _shown_pair(at) == (10, 20) and "Opened from" not in _captions(at)

        at.session_state[HANDOFF] = WhyPair("0" * 64, recs[20].sha256, None, "Compare's agreement map")
        _run(at)
        assert any("not in the sidebar's dataset" in w.value for w in at.warning)

        bad = _page(TINY_CNN)
        bad.query_params["a"], bad.query_params["b"] = "3", "4800"
        _run(bad)
        assert any("not two rows of this dataset's 48 images" in w.value for w in bad.warning)
        assert _shown_pair(bad)[0] == 0


def test_compare_agreement_map_hands_its_pair_and_backbone_over(stamps):
    """Compare's agreement-map panel: "Why is one of these next to X?" opens the Why page on the pair, with
    the chosen neighbour's backbone in the sidebar."""
    with tiny_registered():
        at = AppTest.from_file(APP, default_timeout=600)
        _run(at)
        at.switch_page("pages/compare/page.py")
        at.session_state["_kept_cmp_sources"] = [TINY_VIT, TINY_CNN]  # the map of A = the ViT, coloured by B = the CNN
        at.session_state["cmp_ag_pick"] = j = 3  # the image opened on the agreement map
        _run(at)
        picker = at.selectbox(key="cmp_why")
        first_cnn = next(i for i, o in enumerate(picker.options) if o.endswith(f" in {TINY_CNN}"))
        b = [r.name for r in stamps.records].index(picker.options[first_cnn].rsplit(" in ", 1)[0])
        picker.set_value(first_cnn)
        _run(at)
        at.button(key="cmp_why_go").click()
        _run(at)
        assert at.title[0].value == "Why" and "Opened from Compare's agreement map" in _captions(at)
        assert at.selectbox(key="_w_backbone_mobilenetv2").value == TINY_CNN
        X = extract_features(tiny_backbone(TINY_CNN), stamps.records)["embedding"]
        assert _shown_pair(at) == (j, b) and b == _nearest(X, j)  # the CNN's nearest neighbour of the opened image
        _check_explanation(at, tiny_backbone(TINY_CNN), stamps.records, j, b, X, exact=True)


@contextmanager
def _fc_norm_vit_registered():
    """A tiny mean-pooled ViT with a LayerNorm after the pool: no method decomposes its embedding."""
    from core.models import registry

    registry._ensure_builtins()
    name = "tiny_fcnorm_vit_test"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._REGISTRY, name, registry.RegistryEntry(
            name, lambda: tiny_timm_backbone("vit_tiny_patch16_224", name, depth=1, img_size=32, global_pool="avg"),
            "tiny test model", True, lambda: True))
        yield name


def test_a_backbone_no_method_covers_says_so_in_one_line():
    with _fc_norm_vit_registered() as name:
        at = _run(_page(name))
        info = [i.value for i in at.info]
        assert len(info) == 1 and info[0].startswith("No patch decomposition for this backbone:") and "\n" not in info[0]
        assert "not the mean" in info[0] and not at.image


# ---- slow: the real offline weights ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name, exact", [("mobilenetv2", True), ("vits14_saliency", False)])
def test_why_tab_real_weights_on_two_stamps(get_backbone, stamps, name, exact):
    rows = {r.name: i for i, r in enumerate(stamps.records)}
    a, b = rows[BIRDS[0]], rows[BIRDS[1]]
    at = _page(name)
    at.session_state[HANDOFF] = WhyPair(stamps.records[a].sha256, stamps.records[b].sha256, name, "a test")
    _run(at)
    assert _shown_pair(at) == (a, b)
    X = extract_features(get_backbone(name), stamps.records)["embedding"]
    r = _check_explanation(at, get_backbone(name), stamps.records, a, b, X, exact=exact)
    if exact:
        assert r.terms.matrix.sum() == pytest.approx(r.cosine, abs=1e-5)
    else:
        assert "Eberle" in r.reference and "TPAMI" in r.reference


@pytest.mark.slow
def test_embeddings_why_button_hands_the_pair_over(get_backbone, stamps):
    """The Embeddings page's opened image: "Why?" beside a neighbour opens the Why page on that pair."""
    at = AppTest.from_file(APP, default_timeout=600)
    _run(at)
    at.switch_page("pages/embeddings/page.py")
    _run(at)
    at.selectbox(key="emb_pick").set_value(5)
    _run(at)
    X = extract_features(get_backbone("mobilenetv2"), stamps.records)["embedding"]
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = Xn @ Xn[5]
    sims[5] = -np.inf
    second = int(np.argsort(-sims)[1])  # the button beside the second neighbour
    at.button(key="emb_why_1").click()
    _run(at)
    assert at.title[0].value == "Why"
    assert _shown_pair(at) == (5, second)
    assert "Opened from Embeddings" in _captions(at)
    assert any(m.value.startswith(":green-badge[:material/check: Exact]") for m in at.markdown)


# ---- the journey in a real browser ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_why_neighbours_from_embeddings_in_browser(page, app_url, stamps):
    """Embeddings: open the crow, "Why?" beside its first neighbour; the Why page shows the pair (exact on
    MobileNetV2), then the same pair through the ViT (attributed), whose view is the README's screenshot."""
    crow = [r.name for r in stamps.records].index(BIRDS[0])
    page.set_viewport_size({"width": 1400, "height": 1750})
    page.goto(app_url)
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)
    page.locator("[data-testid='stSidebarNav'] a", has_text="Embeddings").click()
    page.get_by_text("Open an image").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Open an image").click()
    page.get_by_role("option", name=re.compile(r"^birds.crow\.png")).click()
    page.get_by_text("nearest neighbours share its class").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("button", name=re.compile("Why\\?")).first.click()

    page.get_by_role("heading", name="Why", exact=True).wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"cosine \d\.\d{4}\.$")).wait_for(timeout=240_000)  # the figure is drawn
    wait_idle(page, 240_000)
    assert re.search(rf"/why\?.*\ba={crow}&b=\d+", page.url), page.url  # the shareable link
    assert page.get_by_text("Opened from Embeddings").is_visible()
    assert page.get_by_text(re.compile(r"Exact$")).first.is_visible()  # the badge (after its icon)
    assert page.get_by_text(re.compile(r"^Deletion check: Blurring the")).is_visible()
    assert page.get_by_text(re.compile(r"mobilenetv2 at 224 px, block \d+; cosine \d\.\d{4}\.$")).is_visible()

    # the same pair through the ViT: its CLS token is attributed (BiLRP), with the paper on the page
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(has_text="Backbone").click()
    page.get_by_role("option", name="vits14_saliency", exact=True).click()
    page.get_by_text(re.compile(r"vits14_saliency at 224 px, block \d+; cosine \d\.\d{4}\.$")).wait_for(timeout=400_000)
    wait_idle(page, 240_000)
    assert re.search(rf"/why\?.*\ba={crow}&b=\d+", page.url), page.url  # the pair stays
    assert page.get_by_text(re.compile(r"Attributed$")).first.is_visible()
    assert page.get_by_text(re.compile(r"Eberle et al")).first.is_visible()
    fig = page.get_by_test_id("stImage").first
    assert fig.is_visible() and fig.bounding_box()["width"] > 800  # both pictures large enough to read
    page.get_by_test_id("stMain").evaluate("e => e.scrollTo(0, 0)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "why_neighbours.png"))
