"""pages.shared state: bounded model cache (LRU), bounded feature memo, folder listing
keyed on the tree's signature, and the team policy as the app applies it (AppTest)."""
from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from core.io.images import folder_signature
from tests.conftest import ROOT, STAMPS


def test_model_cache_evicts_the_least_recently_used(monkeypatch):
    import pages.shared.resources as common

    built = []
    monkeypatch.setattr(common, "create_backbone", lambda name: built.append(name) or f"model:{name}")
    cache = common._ModelCache()
    for name in ("a", "b", "a", "c"):  # a is used again, so b is the least recently used
        assert cache.get(name, max_models=2) == f"model:{name}"
    assert list(cache.models) == ["a", "c"] and built == ["a", "b", "c"]
    cache.get("b", max_models=2)
    assert built == ["a", "b", "c", "b"] and list(cache.models) == ["c", "b"]


def test_feature_memo_is_bounded():
    from pages.shared.resources import BoundedMemo

    m = BoundedMemo()
    for i in range(BoundedMemo.limit + 5):
        m[i] = i
    assert len(m) == BoundedMemo.limit and 0 not in m and BoundedMemo.limit + 4 in m


def test_folder_signature_sees_new_classes_and_files(tmp_path):
    (tmp_path / "a").mkdir()
    src = sorted(STAMPS.glob("birds/*.png"))
    shutil.copy(src[0], tmp_path / "a" / "x.png")
    s0 = folder_signature(tmp_path)
    (tmp_path / "b").mkdir()
    s1 = folder_signature(tmp_path)
    shutil.copy(src[1], tmp_path / "a" / "y.png")  # a file in an existing class folder
    import os
    import time
    t = time.time() + 5  # file systems with coarse mtimes: make the change visible
    os.utime(tmp_path / "a", (t, t))
    s2 = folder_signature(tmp_path)
    assert len({s0, s1, s2}) == 3


def _home(monkeypatch, **env) -> AppTest:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return AppTest.from_file(str(ROOT / "pages" / "home" / "page.py"), default_timeout=120)


def test_team_server_refuses_random_models_in_one_line(monkeypatch):
    at = _home(monkeypatch, BACKBONE_LENS_TEAM="1")
    at.session_state["chosen_backbone"] = "open_clip/ViT-B-32/random"
    at.run()
    assert not at.exception
    errs = [e.value for e in at.error]
    assert errs and "BACKBONE_LENS_ALLOW_ANY_MODEL" in errs[0] and "\n" not in errs[0]


def test_team_server_picker_offers_only_the_roots(monkeypatch, tmp_path):
    (tmp_path / "team_data" / "cats").mkdir(parents=True)
    at = _home(monkeypatch, BACKBONE_LENS_TEAM="1", BACKBONE_LENS_DATA_ROOTS=str(tmp_path / "team_data"))
    at.session_state["ds_source"] = "Folder on server"
    at.run()
    opts = at.selectbox(key="ds_pick").options
    assert "team_data/cats" in opts and all(o.startswith(("sample_data", "team_data")) for o in opts), opts
    at.text_input(key="ds_path").set_value("/etc").run()
    assert any("not under the data roots" in e.value for e in at.sidebar.error)
    assert not at.exception


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_server_setting_is_one_line(monkeypatch, value):
    at = _home(monkeypatch, BACKBONE_LENS_MAX_FILES=value)
    at.run()
    assert not at.exception and any("BACKBONE_LENS_MAX_FILES" in e.value for e in at.error)


def test_a_backbone_that_cannot_load_keeps_the_page_with_the_previous_one(monkeypatch):
    """An unreachable hub name: one line in the sidebar, the page (title, link) stays with the backbone
    that loaded before, and the name is dropped so later reruns do not try the network again."""
    import pages.shared.resources as resources

    tried = []
    real = resources.create_backbone
    monkeypatch.setattr(resources, "create_backbone", lambda name: tried.append(name) or real(name))
    at = _home(monkeypatch, BACKBONE_LENS_ALLOW_ANY_MODEL="1")
    at.run()
    assert at.sidebar.selectbox[0].value == "mobilenetv2"
    at.session_state["custom_name"] = "timm/vit_small_patch16_224.augreg_in21k"
    next(b for b in at.sidebar.button if b.label == "Use it").click()
    at.run()
    assert not at.exception
    assert at.title[0].value == "Backbone Lens"  # the page kept its content
    errs = [e.value for e in at.sidebar.error]
    assert errs and "vit_small_patch16_224" in errs[0] and "Showing **mobilenetv2** instead" in errs[0] and "\n" not in errs[0]
    assert at.sidebar.selectbox[0].value == "mobilenetv2" and at.query_params["backbone"] == "mobilenetv2"
    assert "timm/vit_small_patch16_224.augreg_in21k" not in at.sidebar.selectbox[0].options
    n = tried.count("timm/vit_small_patch16_224.augreg_in21k")
    at.run()
    assert tried.count("timm/vit_small_patch16_224.augreg_in21k") == n == 1  # not probed again
