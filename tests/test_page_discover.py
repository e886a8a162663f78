"""The Discover page: AppTest of both tabs with a tiny random-init backbone (its numbers are core.discover's),
accepting a name (the label override of pages.shared.labels) seen by the Prototypes page's classifiers and the
Embeddings map, bad input in one line; the real stamps with three classes hidden through MobileNetV2; and the
journey in a real browser (discover, accept a name, see the class on Prototypes), whose screenshot is
docs/screenshots/discover.png."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.discover import discover, evaluate_discovery
from core.io.images import load_folder
from core.models.extract import extract_features
from core.render import discovery_colours
from tests.conftest import ROOT, SCREENSHOTS, STAMPS, wait_idle
from tests.test_compare import TINY_CNN, tiny_backbone, tiny_registered

PAGE = str(ROOT / "pages" / "discover" / "page.py")
PROTOTYPES = str(ROOT / "pages" / "prototypes" / "page.py")
EMBEDDINGS = str(ROOT / "pages" / "embeddings" / "page.py")
HIDDEN = ("fish", "insects", "tools")


def stamps_with_unlabelled(root: Path, hidden=HIDDEN) -> Path:
    """The stamps as a class tree whose ``hidden`` classes lie under ``_unlabelled/<class>/`` (unlabelled)."""
    for p in sorted(STAMPS.glob("*/*.png")):
        cls = p.parent.name
        dst = root / "_unlabelled" / cls if cls in hidden else root / cls
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst / p.name)
    return root


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _app(path: str, folder: Path | None, backbone: str = TINY_CNN, **state) -> AppTest:
    at = AppTest.from_file(path, default_timeout=300)
    at.session_state["chosen_backbone"] = backbone
    if folder is not None:
        at.session_state["ds_source"] = "Folder on server"
        at.session_state["ds_path"] = str(folder)
    for k, v in state.items():
        at.session_state[k] = v
    return at


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def _by_prefix(widgets, prefix: str) -> list:
    return [w for w in widgets if w.key and w.key.startswith(prefix)]


def test_discover_tab_shows_core_result_and_an_accepted_name_reaches_every_page(tmp_path):
    folder = stamps_with_unlabelled(tmp_path / "partly")
    fs = extract_features(tiny_backbone(TINY_CNN), load_folder(folder).records)
    X, labels = fs["embedding"], np.asarray(fs.labels)
    ref = discover(X, labels, 3)
    with tiny_registered():
        at = _run(_app(PAGE, folder, disc_k_mode="fixed"))
        assert at.title[0].value == "Discover"
        assert "subfolder named `_unlabelled`" in _captions(at)  # how to bring unlabelled images, on the page
        at.button(key="disc_run").click()
        _run(at)
        md = _markdown(at)
        assert "**5 known classes**, 30 labelled and 18 unlabelled images → **3 new clusters**" in md
        for c in ref.clusters:  # every new cluster: its size, nearest known class and margin, as core has them
            assert f"**{c.name}** · {c.size:,} image" in md
            assert f"nearest known class: **{c.nearest_known}**  \n(cosine distance {c.distance:.3f})" in md
            assert f"{c.margin:+.3f}" in md
        growth = "Into known classes: " + " · ".join(f"{c} +{n}" for c, n in ref.known_counts.items())
        assert growth in _captions(at)
        assert "k fixed at 3" in _captions(at) and "**Margin**: the median" in _captions(at)
        assert len(at.image) == sum(1 for c in ref.clusters if c.size)  # one strip per non-empty cluster

        # an empty name is one line under its field; then "crabs" for the largest cluster
        _by_prefix(at.button, "disc_accept_")[0].click()
        _run(at)
        assert [e.value for e in at.error] == ["the name for cluster 'new 1' must be a non-empty string, got ''"]
        _by_prefix(at.text_input, "disc_name_")[0].set_value("crabs")
        _by_prefix(at.button, "disc_accept_")[0].click()
        _run(at)
        big = ref.clusters[0]
        assert "Accepted as **crabs**" in [s.value for s in at.success][0]
        assert any(f"**crabs** ({big.size} images" in c.value for c in at.sidebar.caption)
        assert f"**crabs**: {big.size} images (new 1 of {TINY_CNN}, k=3)" in _markdown(at)
        state = {k: at.session_state[k] for k in ("_accepted_names", "_discovery_maps")}

        # the Prototypes page: crabs is a class (a new prototype) of its tables and classifiers
        pt = _run(_app(PROTOTYPES, folder, **state))
        caps = _captions(pt)
        assert f"{18 - big.size} unlabelled images are left out" in caps
        assert f"6 prototypes from all {30 + big.size} images" in caps
        per_class = pt.dataframe[0].value
        assert "crabs" in per_class.index and per_class.loc["crabs", "images"] == big.size
        pt.session_state["proto_tab"] = "Classifiers"
        _run(pt)
        cm = next(json.loads(c.proto.spec) for c in pt.get("plotly_chart") if "Confusion" in c.proto.spec)
        assert "crabs" in cm["data"][0]["x"] and "crabs" in cm["data"][0]["y"]

        # the Embeddings map: new clusters in colours of their own, apart from the known classes
        em = _run(_app(EMBEDDINGS, folder, **state))
        fig = json.loads(em.get("plotly_chart")[0].proto.spec)
        colour = {t["name"]: t["marker"]["color"] for t in fig["data"] if t.get("marker", {}).get("color")}
        known = sorted(set(labels) - {""})
        expected = discovery_colours(known, [c.name for c in ref.clusters])
        assert {n: colour[n] for n in known} == {n: expected[n] for n in known}  # as on every other page
        assert colour["crabs"] == expected["new 1"]  # the accepted name keeps its cluster's colour
        for c in ref.clusters[1:]:
            if c.size:
                assert colour[c.name] == expected[c.name]
        assert len(set(colour.values())) == len(colour)  # new clusters apart from the known classes
        assert fig["layout"]["legend"]["title"]["text"] == "class / new cluster"

        # "Forget accepted names": the labels as read again, everywhere
        at.button(key="forget_names_page").click()
        _run(at)
        assert not at.success and not any("crabs" in c.value for c in at.sidebar.caption)
        assert not at.session_state["_accepted_names"]


def test_bad_input_is_one_line(tmp_path):
    folder = stamps_with_unlabelled(tmp_path / "partly")
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(STAMPS.glob("*/*.png"))[:4]:
        shutil.copy(p, flat / p.name)
    one = tmp_path / "one" / "_unlabelled"
    one.mkdir(parents=True)
    shutil.copy(next(STAMPS.glob("birds/*.png")), one / "x.png")
    with tiny_registered():
        at = _run(_app(PAGE, folder, disc_k_mode="fixed", disc_k=19))  # 18 unlabelled images
        at.button(key="disc_run").click()
        _run(at)
        assert [e.value for e in at.error] == ["k=19 new clusters but only 18 unlabelled images: k can be at most 18"]
        at = _run(_app(PAGE, flat))  # nothing labelled
        at.button(key="disc_run").click()
        _run(at)
        assert [e.value for e in at.error] == ["no labelled class: discovery needs at least one class with labelled images"]
        at = _run(_app(PAGE, one.parent))  # one image
        at.button(key="disc_run").click()
        _run(at)
        assert [e.value for e in at.error] == ["discovery needs at least two images, got 1"]
        at = _run(_app(PAGE, None, disc_tab="Discover new classes"))  # the stamps: every image labelled
        assert any("Every image of this dataset has a label" in i.value for i in at.info)
        at = _run(_app(PAGE, None, disc_hidden=list(sorted({p.parent.name for p in STAMPS.glob("*/*.png")}))))
        at.button(key="disc_eval_run").click()
        _run(at)
        assert [e.value for e in at.error] == [
            "no labelled class left: every class was treated as unknown; keep at least one"]


def test_evaluate_tab_equals_core(stamps):
    fs = extract_features(tiny_backbone(TINY_CNN), stamps.records)
    ref = evaluate_discovery(fs["embedding"], fs.labels, list(HIDDEN))
    with tiny_registered():
        at = _run(_app(PAGE, None))
        assert [t.label for t in at.tabs] == ["Discover new classes", "Evaluate: hide classes"]
        assert any("Pick at least one class" in i.value for i in at.info)  # a labelled set opens on Evaluate
        at.multiselect(key="disc_hidden").set_value(list(HIDDEN))
        _run(at)
        at.button(key="disc_eval_run").click()
        _run(at)
        table = at.dataframe[0].value
        assert list(table["method"]) == ["SS-k-means (the known classes' labels used)",
                                         "k-means on all images (kmeans_all, labels unused)"]
        for row, acc in zip(table.itertuples(), (ref.ss_kmeans, ref.kmeans_all)):
            assert (row.All, row.Old, row.New) == (round(acc.all, 3), round(acc.old, 3), round(acc.new, 3))
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["New clusters found"] == str(ref.k_new) == "3" and metrics["Classes hidden"] == "3"
        assert metrics["Scored images"] == "33"  # 18 hidden + half of the 30 others
        assert "Hidden: fish, insects, tools" in _captions(at) and "ONE Hungarian matching" in _captions(at)


# ---- the real stamps -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_stamps_three_classes_hidden(tmp_path, get_backbone):
    """MobileNetV2 on the stamps: Evaluate with fish, insects and tools hidden gives the README's figures;
    Discover on the same classes as an _unlabelled folder with k=auto finds them as new clusters."""
    at = _run(_app(PAGE, None, backbone="mobilenetv2"))
    at.multiselect(key="disc_hidden").set_value(list(HIDDEN))
    _run(at)
    at.button(key="disc_eval_run").click()
    _run(at)
    table = at.dataframe[0].value
    assert list(table.iloc[0, 1:]) == [0.758, 0.8, 0.722] and list(table.iloc[1, 1:]) == [0.788, 0.733, 0.833]

    folder = stamps_with_unlabelled(tmp_path / "partly")
    at = _run(_app(PAGE, folder, backbone="mobilenetv2"))
    at.button(key="disc_run").click()
    _run(at)
    fs = extract_features(get_backbone("mobilenetv2"), load_folder(folder).records)
    ref = discover(fs["embedding"], fs.labels, "auto")
    assert f"→ **{ref.k_new} new clusters**" in _markdown(at) and ref.k_curve is not None
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert curve["data"][0]["x"] == [int(k) for k in ref.k_curve.k_new]
    assert np.allclose(curve["data"][0]["y"], ref.k_curve.score) and curve["data"][1]["x"] == [ref.k_curve.best]
    # the largest new clusters are mostly hidden-class images
    names = [r.name for r in fs.records]
    for c in ref.clusters[:2]:
        top = [names[i].split("/")[1] for i in c.central]
        assert max(top.count(h) for h in HIDDEN) >= len(top) / 2, top


# ---- the journey in a real browser ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_discover_accept_and_see_the_class_on_prototypes_in_browser(page, app_url, tmp_path):
    folder = stamps_with_unlabelled(tmp_path / "stamps_partly_labelled")
    page.set_viewport_size({"width": 1500, "height": 1900})
    page.goto(f"{app_url}/?dataset={folder}")  # a shared link chooses the folder
    page.get_by_text("See what pretrained vision backbones see").wait_for(timeout=120_000)
    wait_idle(page)
    page.locator("[data-testid='stSidebarNav'] a", has_text="Discover").click()
    page.get_by_role("button", name="Discover").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_role("button", name="Discover").click()
    page.get_by_text("New clusters (").wait_for(timeout=300_000)
    wait_idle(page)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=60_000)
    page.get_by_placeholder("a class name for new 1").fill("fish")
    page.get_by_placeholder("a class name for new 1").press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Accept").first.click()
    page.get_by_text("Accepted as").wait_for(timeout=60_000)
    wait_idle(page)
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop > 0) e.scrollTop = 0; })")  # to the title
    page.wait_for_timeout(1500)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "discover.png"))

    page.locator("[data-testid='stSidebarNav'] a", has_text="Prototypes").click()
    page.get_by_text("Per-class margin").wait_for(timeout=120_000)
    wait_idle(page)
    assert page.get_by_text("6 prototypes from all").is_visible()  # 5 known classes + the accepted one
    page.get_by_role("tab", name="Classifiers").click()
    page.get_by_text("Misclassified by").first.wait_for(timeout=300_000)
    wait_idle(page, timeout=300_000)
    ticks = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .ytick text')].map(t => t.textContent)")
    assert "fish" in ticks, ticks  # the confusion matrix has the accepted class

    page.locator("[data-testid='stSidebarNav'] a", has_text="Embeddings").click()
    page.get_by_text("Colour by discovery (mobilenetv2, k=auto)").wait_for(timeout=120_000)
    wait_idle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    legend = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .legendtext')].map(t => t.textContent)")
    assert legend[:5] == ["birds", "bovines", "flowers", "fruit", "vegetables"] and "new 2" in legend and "fish" in legend
    page.set_viewport_size({"width": 1500, "height": 1100})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SCREENSHOTS / "discover_map.png"))
