"""Bring your own embeddings: `backbone-lens import` of .npz / Parquet / CSV tables into named sets,
and of a directory of feature shards into the FeatureStore (read back by extract_features with no forward)."""
from __future__ import annotations

import numpy as np
import pytest

from core.cli import main
from core.io import imports
from core.io.imports import (
    SHARD_SCHEMA,
    ImportFormatError,
    import_table,
    list_imported,
    merge_shards,
    open_imported,
)
from core.io.store import FeatureKey, FeatureStore


def _table(n=50, d=12, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(n, d)).astype(np.float32)
    paths = [f"/data/imgs/{i:04d} é.png" for i in range(n)]  # non-ASCII on purpose
    labels = [("cat", "dog", "")[i % 3] for i in range(n)]
    return paths, labels, V


def _check_set(s, paths, labels, V, dtype=np.float32):
    """A small set keeps float32 (precision "auto"); large sets and precision="float16" store float16."""
    assert s.n == len(paths) and s.dim == V.shape[1]
    assert s.dtype == np.dtype(dtype).name and s.vectors.dtype == dtype and isinstance(s.vectors, np.memmap)
    np.testing.assert_array_equal(s.vectors, V.astype(dtype))
    np.testing.assert_allclose(s.norms, np.linalg.norm(V.astype(dtype).astype(np.float32), axis=1), rtol=1e-6)
    assert list(s.labels()) == labels
    assert s.paths() == paths
    assert s.path(7) == paths[7] and s.path(len(paths) - 1) == paths[-1]
    assert list(s.classes) == sorted(set(labels))


def test_import_npz_written_by_export_via_cli(tmp_path, capsys):
    paths, labels, V = _table()
    f = tmp_path / "my_emb.npz"
    np.savez(f, embeddings=V, paths=np.array(paths), labels=np.array(labels))  # what `export` writes
    assert main(["--cache", str(tmp_path / "c"), "import", str(f)]) == 0
    assert "imported 50 points" in capsys.readouterr().out
    s = open_imported("my_emb", tmp_path / "c")  # default name: the file's stem
    _check_set(s, paths, labels, V)
    assert [x.name for x in list_imported(tmp_path / "c")] == ["my_emb"]


def test_import_parquet_streams_blocks_and_replaces_a_name(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    monkeypatch.setattr(imports, "_BATCH", 16)  # several blocks, a short last one
    paths, labels, V = _table(n=50)
    f = tmp_path / "tool_output.parquet"
    pq.write_table(pa.table({"path": paths, "label": labels, "vector": [list(r) for r in V]}), f, row_group_size=20)
    s = import_table(f, "set1", cache=tmp_path)
    _check_set(s, paths, labels, V)
    # re-import under the same name: replaced whole, nothing left behind
    p2, l2, V2 = _table(n=10, d=12, seed=1)
    pq.write_table(pa.table({"path": p2, "label": l2, "vector": [list(r) for r in V2]}), f)
    s2 = import_table(f, "set1", cache=tmp_path)
    _check_set(s2, p2, l2, V2)
    assert sorted(p.name for p in (tmp_path / "imported").iterdir()) == ["set1"]


def test_import_csv_vector_column_and_vector_i_columns(tmp_path):
    pd = pytest.importorskip("pandas")
    paths, labels, V = _table(n=20, d=5)
    a = tmp_path / "a.csv"
    vectors = ["[" + ", ".join(f"{x:.9g}" for x in r) + "]" for r in V]  # 9 digits: float32 round-trips
    pd.DataFrame({"path": paths, "label": labels, "vector": vectors}).to_csv(a, index=False)
    _check_set(import_table(a, cache=tmp_path), paths, labels, V.astype(np.float32))
    b = tmp_path / "b.csv"
    pd.DataFrame({"path": paths, "label": labels, **{f"vector_{j}": V[:, j] for j in range(5)}}).to_csv(b, index=False)
    _check_set(import_table(b, cache=tmp_path), paths, labels, V)


@pytest.mark.parametrize("content, match", [
    ("path,label\nx.png,a\n", "no vector"),
    ("path,label,vector\nx.png,a,\"1, 2\"\ny.png,b,\"1, 2, 3\"\n", "different lengths"),
    ("path,label,vector\nx.png,a,\"1, nan\"\n", "NaN or inf"),
    ("file,label,vector\nx.png,a,1\n", "needs a 'path' column"),
])
def test_import_rejects_bad_tables_with_a_reason_and_leaves_nothing(tmp_path, content, match):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(ImportFormatError, match=match):
        import_table(f, cache=tmp_path)
    assert list((tmp_path / "imported").iterdir()) == []  # no half set


def test_import_rejects_unknown_suffix_and_bad_name(tmp_path, capsys):
    f = tmp_path / "x.txt"
    f.write_text("hi")
    assert main(["--cache", str(tmp_path), "import", str(f)]) == 2
    assert "cannot import '.txt'" in capsys.readouterr().err
    g = tmp_path / "ok.npz"
    np.savez(g, embeddings=np.ones((3, 2), np.float32), paths=np.array(["a", "b", "c"]))
    with pytest.raises(ImportFormatError, match="set name"):
        import_table(g, "../evil", cache=tmp_path)
    with pytest.raises(imports.UnknownImportedSetError, match="imported: none yet"):
        open_imported("nope", tmp_path)


def _write_shards(d, rows_per_shard=(30, 20), dim=8, seed=0):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    d.mkdir()
    expected = {}
    k = 0
    for s, n in enumerate(rows_per_shard):
        V = rng.normal(size=(n, dim)).astype(np.float32)
        sha = [f"{k + i:064x}" for i in range(n)]
        k += n
        t = pa.table({
            "sha256": pa.array(sha, pa.string()), "path": pa.array([f"/x/{h[-4:]}.png" for h in sha], pa.string()),
            "label": pa.array(["a"] * n, pa.string()), "weights_id": pa.array(["mnv2@abc"] * n, pa.string()),
            "preprocessing_id": pa.array(["v1:resize224"] * n, pa.string()), "layer": pa.array([-1] * n, pa.int64()),
            "kind": pa.array(["embedding"] * n, pa.string()),
            "vector": pa.array([list(r) for r in V], pa.list_(pa.float32())),
        })
        assert {f.name for f in t.schema} == set(SHARD_SCHEMA)
        pq.write_table(t, d / f"part-{s:03d}.parquet")
        expected.update({FeatureKey("mnv2@abc", "v1:resize224", -1, "embedding", h): v for h, v in zip(sha, V)})
    return expected


def test_merge_shards_dir_into_the_feature_store(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    expected = _write_shards(tmp_path / "shards")
    assert main(["--cache", str(tmp_path / "c"), "import", str(tmp_path / "shards")]) == 0
    out = capsys.readouterr().out
    assert "merged 50 feature rows from 2 shards" in out and "mnv2@abc" in out
    got = FeatureStore(tmp_path / "c" / "features.sqlite").get_many(expected)
    assert len(got) == 50
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v)


def test_shard_with_a_wrong_schema_is_refused_before_anything_is_written(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    _write_shards(tmp_path / "s")
    pq.write_table(pa.table({"sha256": ["x"], "vector": pa.array([[1.0]], pa.list_(pa.float64()))}), tmp_path / "s" / "z.parquet")
    store = FeatureStore(tmp_path / "f.sqlite")
    with pytest.raises(ImportFormatError, match=r"vector: expected list<float32>, got list<item: double>|layer: expected int, got missing"):
        merge_shards(tmp_path / "s", store)
    assert len(store) == 0


@pytest.mark.slow
def test_extract_features_reads_merged_shards_without_a_forward(tmp_path, stamps, get_backbone):
    """The shard key is the FeatureStore's key: extract_features finds every image and runs no model."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from core.models.extract import extract_features, feature_layers, preprocessing_id

    b = get_backbone("mobilenetv2")
    recs = stamps.records[:6]
    lay = feature_layers(b, ["embedding"], None)["embedding"]
    prep = preprocessing_id(b.spec, b.spec.input_size)
    V = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    d = tmp_path / "sh"
    d.mkdir()
    pq.write_table(pa.table({
        "sha256": [r.sha256 for r in recs], "path": [str(r.path) for r in recs], "label": [r.label for r in recs],
        "weights_id": [b.spec.weights_id] * 6, "preprocessing_id": [prep] * 6, "layer": pa.array([lay] * 6, pa.int32()),
        "kind": ["embedding"] * 6, "vector": pa.array([list(r) for r in V], pa.list_(pa.float32())),
    }), d / "p.parquet")
    store = FeatureStore(tmp_path / "f.sqlite")
    merge_shards(d, store)
    fs = extract_features(b, recs, store=store)
    assert fs.stats.forwards == 0 and fs.stats.n_cached == 6
    np.testing.assert_array_equal(fs["embedding"], V)
