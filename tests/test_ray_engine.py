"""The Ray Data engine on the sample stamps, on a local Ray started here (loopback only): same
embeddings as the local path, resumable, and a worker killed mid-run (SIGKILL after its first
batch) is restarted with every image written exactly once."""
from __future__ import annotations

import os

import numpy as np
import pytest

from core.io.images import load_folder
from core.io.shards import SHARD_FIELDS, read_shards, shard_files
from core.io.store import FeatureStore
from core.models import ray_engine
from core.models.extract import extract_features
from core.models.ray_engine import RayExtractConfig, extract_with_ray
from tests.conftest import STAMPS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A private local Ray whose workers SIGKILL themselves once (after their first batch), and a
    feature cache of this module's own (the session's already holds the stamps' features)."""
    ray = pytest.importorskip("ray")
    from core.io.paths import ENV_VAR

    marker = tmp_path_factory.mktemp("ray") / "killed"
    saved = {k: os.environ.get(k) for k in (ENV_VAR, ray_engine._KILL_AFTER_ENV, ray_engine._KILL_MARKER_ENV)}
    os.environ[ENV_VAR] = str(tmp_path_factory.mktemp("ray-cache"))
    os.environ[ray_engine._KILL_AFTER_ENV] = "1"
    os.environ[ray_engine._KILL_MARKER_ENV] = str(marker)
    assert ray_engine._init_ray(None)  # a private local Ray, stopped below
    yield marker
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def local_embeddings(get_backbone, stamps):
    fs = extract_features(get_backbone("mobilenetv2"), stamps.records, store=None)
    return {r.sha256: v for r, v in zip(fs.records, fs["embedding"])}


def _cfg(out, **kw):
    return RayExtractConfig(backbone="mobilenetv2", images=STAMPS, out=out, batch_size=8, workers=1, **kw)


def test_killed_worker_is_restarted_and_every_image_is_written_once(local_ray, local_embeddings, tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "shards"
    res = extract_with_ray(_cfg(out))
    assert local_ray.exists(), "the fault was not injected: the actor was never killed"
    killed_pid = int(local_ray.read_text())
    assert killed_pid > 0
    shas, paths, V = read_shards(out)
    assert res.n_written == 48 and not res.failures
    assert sorted(shas) == sorted(local_embeddings) and len(set(paths)) == len(paths) == 48  # exactly once
    ref = np.stack([local_embeddings[s] for s in shas])
    cos = (ref * V).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(V, axis=1)
    assert cos.min() >= 0.9999
    import pyarrow as pa
    import pyarrow.parquet as pq

    def kind(t) -> str:
        return "list<float32>" if pa.types.is_list(t) and t.value_type == pa.float32() else str(t)

    schema = pq.ParquetFile(shard_files(out)[0]).schema_arrow
    assert [(f.name, kind(f.type)) for f in schema] == [(n, t) for n, t in SHARD_FIELDS]


def test_rerun_skips_images_already_in_the_shards(local_ray, tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "shards"
    before = shard_files(out)
    res = extract_with_ray(_cfg(out))
    assert res.n_skipped == 48 and res.n_written == 0 and shard_files(out) == before


def test_images_in_the_feature_store_are_skipped(local_ray, get_backbone, tmp_path):
    # as the local path leaves it: the folder listed (file index) and 10 images' features in the store
    records = load_folder(STAMPS).records[:10]
    extract_features(get_backbone("mobilenetv2"), records, store=FeatureStore())
    res = extract_with_ray(_cfg(tmp_path / "shards"))
    assert res.n_skipped == 10 and res.n_written == 38


def test_patch_tokens_are_refused_with_a_hint(tmp_path):
    with pytest.raises(ValueError, match="local engine"):
        extract_with_ray(_cfg(tmp_path, kinds=("patch_tokens",)))
