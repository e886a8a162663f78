"""Shared fixtures. The feature cache lives in a per-session temp dir; backbones load once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAMPS = ROOT / "sample_data" / "stamps"
SCENES = ROOT / "sample_data" / "scenes"


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Isolate the feature cache, but keep converted weights between runs (they are derived
    from the installed package file and keyed by its sha256)."""
    cache = tmp_path_factory.mktemp("blcache")
    old = os.environ.get("BACKBONE_LENS_CACHE")
    os.environ["BACKBONE_LENS_CACHE"] = str(cache)
    weights = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backbone-lens" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    (cache / "weights").symlink_to(weights, target_is_directory=True)
    yield cache
    if old is None:
        os.environ.pop("BACKBONE_LENS_CACHE", None)
    else:
        os.environ["BACKBONE_LENS_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def _data_roots(tmp_path_factory):
    """Tests build datasets under pytest's temp folder: make it a data root of the app's policy
    (core.io.policy), as an operator would with BACKBONE_LENS_DATA_ROOTS."""
    base = str(tmp_path_factory.getbasetemp())
    old = os.environ.get("BACKBONE_LENS_DATA_ROOTS")
    os.environ["BACKBONE_LENS_DATA_ROOTS"] = base if not old else os.pathsep.join([old, base])
    yield base
    if old is None:
        os.environ.pop("BACKBONE_LENS_DATA_ROOTS", None)
    else:
        os.environ["BACKBONE_LENS_DATA_ROOTS"] = old


_BACKBONES: dict = {}


@pytest.fixture(scope="session")
def get_backbone():
    """``get_backbone(name)``: each backbone is built once per test session."""
    from core.models.registry import create_backbone

    def get(name: str):
        if name not in _BACKBONES:
            _BACKBONES[name] = create_backbone(name)
        return _BACKBONES[name]

    return get


def tiny_timm_backbone(arch: str, name: str, **kw):
    """A seeded random-init timm model as a backbone; its weights identity is the hash of its tensors."""
    import hashlib

    import timm
    import torch

    from core.models.spec import BackboneSpec
    from core.models.timm_backbone import TimmBackbone, timm_spec_fields

    torch.manual_seed(0)
    m = timm.create_model(arch, pretrained=False, **kw)
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in m.state_dict().values())).hexdigest()
    spec = BackboneSpec(name=name, source="local", architecture=arch, weights_name="random-init",
                        weights_sha256=digest, **timm_spec_fields(m))
    return TimmBackbone(m, spec)


@pytest.fixture(scope="session")
def stamps():
    from core.io.images import load_folder

    return load_folder(STAMPS)


def scene(name: str):
    from core.io.images import decode_image

    return decode_image((SCENES / name).read_bytes(), name)


# ---- the app in a real browser ------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def app_url(_session_cache, _data_roots):
    """A Streamlit server running app.py on a free loopback port, for the whole session."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(_session_cache / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start: " + (_session_cache / "streamlit.log").read_text()[-2000:])
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh --test (installs Debian's chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


# Browser tests save what they saw here (ignored by git); set BACKBONE_LENS_UPDATE_SCREENSHOTS=1 to
# refresh the ones README.md shows.
SCREENSHOTS = ROOT / ("docs/screenshots" if os.environ.get("BACKBONE_LENS_UPDATE_SCREENSHOTS") else "artifacts/screenshots")


def wait_idle(page, timeout=120_000):
    """Wait until Streamlit has finished running the script (no 'Running…' status widget)."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
