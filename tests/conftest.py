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


_BACKBONES: dict = {}


@pytest.fixture(scope="session")
def get_backbone():
    """``get_backbone(name)``: each backbone is built once per test session."""
    from core.backbones.registry import create_backbone

    def get(name: str):
        if name not in _BACKBONES:
            _BACKBONES[name] = create_backbone(name)
        return _BACKBONES[name]

    return get


@pytest.fixture(scope="session")
def stamps():
    from core.images import load_folder

    return load_folder(STAMPS)


def scene(name: str):
    from core.images import decode_image

    return decode_image((SCENES / name).read_bytes(), name)
