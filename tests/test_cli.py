"""The backbone-lens command, run as a user would (a subprocess of the installed entry point)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import STAMPS

EXE = shutil.which("backbone-lens", path=str(Path(sys.executable).parent)) or "backbone-lens"


def run(*args, cache: Path):
    env = {**os.environ, "BACKBONE_LENS_CACHE": str(cache)}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=600)


def test_backbones_lists_offline_availability(tmp_path):
    r = run("backbones", "--json", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {d["name"]: d for d in json.loads(r.stdout)}
    assert rows["mobilenetv2"]["offline"] and rows["vits14_saliency"]["offline"]


def test_online_backbone_fails_with_a_clear_message(tmp_path):
    r = run("extract", "--backbone", "timm/resnet50.a1_in1k", "--images", str(STAMPS), cache=tmp_path)
    assert r.returncode == 2 and "network" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_extract_then_export(tmp_path):
    cache = tmp_path / "cache"
    r = run("extract", "--backbone", "mobilenetv2", "--images", str(STAMPS), cache=cache)
    assert r.returncode == 0, r.stderr
    assert "48 images (0 cached, 48 extracted), 0 failed" in r.stdout
    out = tmp_path / "emb.npz"
    r = run("export", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--out", str(out), cache=cache)
    assert r.returncode == 0, r.stderr
    z = np.load(out)
    assert z["embeddings"].shape == (48, 1280) and z["embeddings"].dtype == np.float32
    assert len(z["paths"]) == 48 and sorted(set(z["labels"])) == sorted(p.name for p in STAMPS.iterdir())
