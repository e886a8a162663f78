"""Bring-your-own embeddings in every view (issue 20): an imported set's memory map through the Prototypes
views and `evaluate --imported`, embedding sources aligned by sha256 or path for Compare and `compare
--sources`, the agreement map from sources, file sha256 and precision in imports, and which recorded
paths the server may show.

The slow test checks the issue's contract on real weights: an imported set of the stamps' MobileNetV2
embeddings (made with `export` and `import`) gives the folder's NMC accuracy and linear CKA against
vits14_saliency, within 1e-6."""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from core.classify.classifiers import classifier_names
from core.classify.evaluation import evaluate, few_shot_curve
from core.classify.incremental import class_incremental, class_order
from core.classify.margins import misclassified, prototype_distances
from core.classify.ood import unknown_class_ood
from core.classify.tables import evaluate_methods, teen_alpha_sweep, teen_repeated
from core.compare import agreement as CA
from core.compare import indices as CI
from core.compare.cka import cka_matrix
from core.compare.comparison import compare_backbones, compare_sources
from core.compare.sources import (
    EmbeddingSource,
    align_sources,
    imported_source,
    source_kind,
    split_source_names,
)
from core.io import imports
from core.io.imports import ImportFormatError, import_table, open_imported
from core.io.policy import Limits, ServerPolicy
from tests.conftest import STAMPS
from tests.test_compare import TINY_CNN, TINY_VIT, tiny_registered


def _cli(*argv: str) -> tuple[int, str, str]:
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _clustered(n: int, dim: int, classes: int, seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    X = (rng.normal(size=(classes, dim))[y] * 1.5 + rng.normal(size=(n, dim))) * scale
    return X.astype(np.float32), np.array([f"c{c}" for c in y])


def _npz(path: Path, X, paths, labels=None, sha=None) -> Path:
    arrays = {"embeddings": X, "paths": np.asarray(paths)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    if sha is not None:
        arrays["sha256"] = np.asarray(sha)
    np.savez(path, **arrays)
    return path


def _hex(i: int) -> str:
    return f"{i:064x}"


# ---- imports: file sha256, precision ---------------------------------------------------------------------
def test_sha256_column_from_npz_parquet_and_csv(tmp_path):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, y = _clustered(30, 6, 3)
    paths = [f"/d/{i}.png" for i in range(30)]
    sha = [_hex(i).upper() if i % 2 else _hex(i) for i in range(30)]  # any case in, lower case out
    a = import_table(_npz(tmp_path / "a.npz", X, paths, y, sha), cache=tmp_path)
    pq.write_table(pa.table({"path": paths, "label": list(y), "vector": [list(r) for r in X], "sha256": sha}),
                   tmp_path / "b.parquet")
    b = import_table(tmp_path / "b.parquet", cache=tmp_path)
    pd.DataFrame({"path": paths, "label": y, "sha256": sha,
                  **{f"vector_{j}": X[:, j] for j in range(6)}}).to_csv(tmp_path / "c.csv", index=False)
    c = import_table(tmp_path / "c.csv", cache=tmp_path)
    for s in (a, b, c):
        assert s.has_sha256 and s.sha256s() == [_hex(i) for i in range(30)]
    plain = import_table(_npz(tmp_path / "d.npz", X, paths, y), cache=tmp_path)  # the old format still imports
    assert not plain.has_sha256 and plain.sha256s() is None


@pytest.mark.parametrize("bad", ["abc", "", "g" * 64, _hex(1) + "0"])
def test_a_bad_sha256_is_refused_with_its_row_and_leaves_nothing(tmp_path, bad):
    X, y = _clustered(5, 4, 2)
    sha = [_hex(i) for i in range(5)]
    sha[3] = bad
    with pytest.raises(ImportFormatError, match="row 3 has sha256"):
        import_table(_npz(tmp_path / "x.npz", X, [f"{i}.png" for i in range(5)], y, sha), cache=tmp_path)
    assert list((tmp_path / "imported").iterdir()) == []


def test_precision_auto_keeps_float32_for_small_sets_and_float16_above(tmp_path, monkeypatch):
    X, y = _clustered(40, 8, 2)
    f = _npz(tmp_path / "p.npz", X, [f"{i}.png" for i in range(40)], y)
    small = import_table(f, "small", cache=tmp_path)
    assert small.dtype == "float32" and (small.root / "vectors.f32").is_file()
    np.testing.assert_array_equal(small.vectors, X)  # exact: the numbers of the file
    monkeypatch.setattr(imports, "AUTO_FLOAT32_MAX_VALUES", 40 * 8 - 1)
    big = import_table(f, "big", cache=tmp_path)
    assert big.dtype == "float16" and big.vectors.dtype == np.float16 and (big.root / "vectors.f16").is_file()
    np.testing.assert_array_equal(big.vectors, X.astype(np.float16))
    assert import_table(f, "forced16", cache=tmp_path, precision="float16").dtype == "float16"
    assert import_table(f, "forced32", cache=tmp_path, precision="float32").dtype == "float32"
    with pytest.raises(ImportFormatError, match="precision"):
        import_table(f, "bad", cache=tmp_path, precision="float64")
    # a CSV's row count (for the choice and the progress) comes from its line breaks
    import pandas as pd

    pd.DataFrame({"path": [f"{i}.png" for i in range(40)], "label": y,
                  **{f"vector_{j}": X[:, j] for j in range(8)}}).to_csv(tmp_path / "p.csv", index=False)
    assert imports._count_rows(tmp_path / "p.csv") == 40
    assert import_table(tmp_path / "p.csv", "csv16", cache=tmp_path).dtype == "float16"


def test_a_set_written_before_precision_and_sha256_reads_as_float16(tmp_path):
    X, y = _clustered(12, 4, 2)
    s = import_table(_npz(tmp_path / "old.npz", X, [f"{i}.png" for i in range(12)], y), cache=tmp_path,
                     precision="float16")
    meta = json.loads((s.root / "meta.json").read_text())
    for k in ("dtype", "has_sha256"):
        del meta[k]
    meta["format"] = 1
    (s.root / "meta.json").write_text(json.dumps(meta))
    old = open_imported("old", tmp_path)
    assert old.dtype == "float16" and not old.has_sha256
    np.testing.assert_array_equal(old.vectors, X.astype(np.float16))


# ---- which recorded paths the server may show ------------------------------------------------------------
def test_readable_file_only_under_the_data_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.png").write_bytes(b"x")
    (outside / "secret.png").write_bytes(b"s")
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "inner.png").symlink_to(root / "sub" / "a.png")
    pol = ServerPolicy(data_roots=(root.resolve(),))
    assert pol.readable_file(root / "sub" / "a.png") == (root / "sub" / "a.png").resolve()
    assert pol.readable_file(str(root / "sub" / ".." / "sub" / "a.png")) == (root / "sub" / "a.png").resolve()
    assert pol.readable_file(root / "inner.png") == (root / "sub" / "a.png").resolve()  # a link that stays inside
    for p in (outside / "secret.png", root / "link.png", root / "missing.png", root / "sub", "/etc/passwd", "a\0b"):
        assert pol.readable_file(p) is None, p


def test_imported_image_bytes_follow_the_policy(tmp_path):
    stamp = sorted(STAMPS.rglob("*.png"))[0]
    X, _ = _clustered(3, 4, 1)
    s = import_table(_npz(tmp_path / "t.npz", X, [str(stamp), str(tmp_path / "nope.png"), "/etc/hostname"]),
                     cache=tmp_path)
    pol = ServerPolicy(data_roots=(STAMPS.resolve(),))
    assert s.image_bytes(0, pol) == stamp.read_bytes()
    assert s.image_bytes(1, pol) is None and s.image_bytes(2, pol) is None  # missing; outside the roots
    tight = ServerPolicy(data_roots=(STAMPS.resolve(),), limits=Limits(max_file_bytes=10))
    assert s.image_bytes(0, tight) is None  # over the file-size limit
    assert set(imports.MODEL_ONLY_VIEWS) >= {"upload", "saliency"}


# ---- every Prototypes view on the memory map -----------------------------------------------------------------
def test_prototypes_views_on_a_float16_memory_map_equal_its_values_in_ram(tmp_path):
    """The views read the imported memory map as they read a float32 array: the same numbers (float16
    values are exact in float32, and products over them run in float32 as for float32 features)."""
    X, y = _clustered(600, 24, 5, scale=3.0)
    s = import_table(_npz(tmp_path / "v.npz", X, [f"{i}.png" for i in range(600)], y), cache=tmp_path,
                     precision="float16")
    M, Y = s.vectors, np.asarray(s.labels(), dtype=str)
    R = np.asarray(M, dtype=np.float32)  # the same values, in RAM
    assert isinstance(M, np.memmap) and np.array_equal(Y, y)

    res_m, skip_m = evaluate_methods(M, Y)
    res_r, skip_r = evaluate_methods(R, Y)
    assert skip_m == skip_r == {} and [r.method for r in res_m] == list(classifier_names())
    for a, b in zip(res_m, res_r):
        assert a.accuracy == b.accuracy and np.array_equal(a.y_pred, b.y_pred), a.method
    nmc = res_m[0]
    mm, mr = misclassified(M, Y, nmc), misclassified(R, Y, res_r[0])
    assert np.array_equal(mm.rows, mr.rows) and np.array_equal(mm.exemplar, mr.exemplar)
    np.testing.assert_allclose(mm.d_wrong, mr.d_wrong, rtol=1e-12)
    pm, pr = prototype_distances(M, Y), prototype_distances(R, Y)
    np.testing.assert_allclose(pm.D_ip, pr.D_ip, rtol=1e-12)
    fm = few_shot_curve(M, Y, shots=(1, 5), methods=("nb", "linear", "nmc"), draws=3)
    fr = few_shot_curve(R, Y, shots=(1, 5), methods=("nb", "linear", "nmc"), draws=3)
    assert [(r.method, r.shots, r.mean_acc) for r in fm] == [(r.method, r.shots, r.mean_acc) for r in fr]
    order = class_order(sorted(set(y)), "sorted", 0)
    for kw in ({"metric": "cosine"}, {"method": "fecam"}, {"method": "ranpac"}):
        a, b = class_incremental(M, Y, 2, order, 0.3, 0, **kw), class_incremental(R, Y, 2, order, 0.3, 0, **kw)
        np.testing.assert_array_equal(a.step_accuracies, b.step_accuracies)
    base = sorted(set(y))[:3]
    assert teen_repeated(M, Y, base, 1, draws=3).equals(teen_repeated(R, Y, base, 1, draws=3))
    assert teen_alpha_sweep(M, Y, base, 1, draws=2).equals(teen_alpha_sweep(R, Y, base, 1, draws=2))
    om, orr = unknown_class_ood(M, Y, ["c4"]), unknown_class_ood(R, Y, ["c4"])
    assert om.auroc == orr.auroc


# ---- sources and their alignment ------------------------------------------------------------------------------
def _source(name: str, X, labels, paths, sha=None) -> EmbeddingSource:
    return EmbeddingSource(name=name, kind="imported", X=np.asarray(X), labels=np.asarray(labels, dtype=str),
                           paths=list(paths), sha256=None if sha is None else list(sha), names=list(paths),
                           made_by=name)


def test_align_by_path_in_the_first_sources_order_and_by_sha256_when_all_carry_it(tmp_path):
    X, y = _clustered(40, 6, 4)
    paths = [str(tmp_path / f"{i}.png") for i in range(40)]
    a = _source("a", X, y, paths)
    perm = np.random.default_rng(1).permutation(40)[:30]  # b: 30 of them, shuffled, written differently
    b_paths = [os.path.join(str(tmp_path), ".", f"{i}.png") for i in perm] + [str(tmp_path / "extra.png")]
    b = _source("b", np.vstack([X[perm] * 2, X[:1]]), np.r_[["" for _ in perm], [""]], b_paths)
    al = align_sources([a, b])
    assert al.key == "path" and al.n_shared == 30 and al.label_source == "a"
    assert list(al.rows[0]) == sorted(perm)  # the first source's order
    np.testing.assert_array_equal(al.features[1], al.features[0] * 2)  # row i is the same image in both
    assert list(al.labels) == list(y[al.rows[0]])  # the unlabelled source takes the labelled one's labels
    assert "30 images shared by the 2 sources" in al.summary() and "image path" in al.summary()
    # content hashes win when every source has them, whatever the paths say
    sha = [_hex(i) for i in range(40)]
    a2 = _source("a", X, y, [f"/one/{i}" for i in range(40)], sha)
    b2 = _source("b", X[::-1], y[::-1], [f"/two/{i}" for i in range(40)], sha[::-1])
    al2 = align_sources([a2, b2])
    assert al2.key == "sha256" and al2.n_shared == 40 and list(al2.rows[1]) == list(range(39, -1, -1))
    assert al2.features[0] is a2.X  # the whole set in its own order: no copy (a memory map stays one)


def test_alignment_refuses_few_shared_images_and_disagreeing_labels_in_one_line():
    X, y = _clustered(30, 4, 3)
    a = _source("a", X, y, [f"/p/{i}" for i in range(30)])
    b = _source("b", X[:9], y[:9], [f"/p/{i}" for i in range(9)])
    with pytest.raises(ValueError, match=r"share only 9 images.*at least 10 shared") as e:
        align_sources([a, b])
    assert "\n" not in str(e.value) and "sha256 column" in str(e.value)
    c = _source("c", X, np.where(np.arange(30) == 4, "other", y), [f"/p/{i}" for i in range(30)])
    with pytest.raises(ValueError, match="label 1 of the 30 shared images differently"):
        align_sources([a, c])
    dup = _source("d", np.vstack([X, X[:5]]), np.r_[y, y[:5]], [f"/p/{i}" for i in range(30)] + [f"/p/{i}" for i in range(5)])
    al = align_sources([a, dup])
    assert al.n_shared == 30 and al.duplicates == [0, 5]
    with pytest.raises(ValueError, match="2 to 4 sources"):
        align_sources([a])
    with pytest.raises(ValueError, match="2 to 4 different names"):
        split_source_names("a,b,c,d,e")


def test_source_names_mean_a_backbone_or_an_imported_set():
    assert source_kind("mobilenetv2") == ("backbone", "mobilenetv2")
    assert source_kind("timm/vit_small_patch14_dinov2.lvd142m") == ("backbone", "timm/vit_small_patch14_dinov2.lvd142m")
    assert source_kind("my_vectors") == ("imported", "my_vectors")
    assert source_kind("imported:mobilenetv2") == ("imported", "mobilenetv2")


def test_compare_sources_equals_the_maths_on_the_aligned_arrays():
    X, y = _clustered(120, 16, 4)
    rng = np.random.default_rng(3)
    Y = (X @ rng.normal(size=(16, 8)) + 0.3 * rng.normal(size=(120, 8))).astype(np.float32)
    perm = rng.permutation(120)
    a = _source("mine", X, y, [f"/i/{i}" for i in range(120)])
    b = _source("theirs", Y[perm], y[perm], [f"/i/{i}" for i in perm])
    cmp = compare_sources([a, b], index_kw=dict(n_boot=5, n_perm=5))
    Yal = Y  # b's rows put back in a's order
    for row, F in zip(cmp.rows, (X, Yal)):
        assert row.family == "imported" and np.isnan(row.params) and np.isnan(row.images_per_s)
        assert row.nmc_accuracy == evaluate(F, y, "nmc").accuracy and row.n_images == 120
        assert row.linear_accuracy == evaluate(F, y, "linear").accuracy
    # linear CKA written out: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
    Xc, Yc = X - X.mean(0), Yal - Yal.mean(0)
    ref = np.sum((Yc.T.astype(np.float64) @ Xc) ** 2) / (np.linalg.norm(Xc.T.astype(np.float64) @ Xc)
                                                          * np.linalg.norm(Yc.T.astype(np.float64) @ Yc))
    assert cmp.cka[0, 1] == pytest.approx(ref, rel=1e-6)
    assert cmp.indices["mutual_knn"].value[0, 1] == pytest.approx(CI.mutual_knn(X, Yal))
    data = cmp.to_json()
    assert data[0]["params"] is None and data[0]["images_per_s"] is None and data[0]["speed_source"] == "n/a"
    assert data[0]["aligned_by"] == "path" and data[0]["n_shared"] == 120
    assert data[1]["n_images_per_source"] == {"mine": 120, "theirs": 120}
    assert cmp.agreement[0].n_test == cmp.rows[0].n_images - evaluate(X, y, "nmc").n_train


def test_agreement_map_equals_the_overlap_and_samples_as_the_index_does(monkeypatch):
    X, _ = _clustered(300, 12, 5)
    Y = X[:, :6] + 0.5 * np.random.default_rng(2).normal(size=(300, 6)).astype(np.float32)
    m = CA.agreement_map(X, Y, k=5)
    assert not m.sampled and np.array_equal(m.overlap, CI.mutual_knn_overlap(X, Y, 5))
    sh = m.neighbours(X, Y, 7)
    assert sh.overlap == pytest.approx(m.overlap[7])
    monkeypatch.setattr(CI, "MAX_KNN_IMAGES", 120)  # the index and the map share the limit and the sample
    s = CA.agreement_map(X, Y, k=5)
    assert s.sampled and len(s.rows) == 120 and s.n_total == 300
    assert s.overlap.mean() == pytest.approx(CI.estimate("mutual_knn", X, Y, k=5, n_boot=0, n_perm=0).value)


# ---- the command line --------------------------------------------------------------------------------------
def _imported_pair(tmp_path, n=60):
    X, y = _clustered(n, 10, 3)
    paths = [str(tmp_path / f"img{i}.png") for i in range(n)]
    Y = (X[:, ::-1] * 0.5 + 0.2).astype(np.float32)
    cache = tmp_path / "c"
    import_table(_npz(tmp_path / "one.npz", X, paths, y), "one", cache=cache)
    import_table(_npz(tmp_path / "two.npz", Y[::-1], paths[::-1], y[::-1]), "two", cache=cache)
    return cache, X, Y, y


def test_cli_evaluate_imported_equals_evaluate_on_its_vectors(tmp_path):
    cache, X, _, y = _imported_pair(tmp_path)
    for method in ("nmc", "knn", "lda"):
        rc, out, err = _cli("--cache", str(cache), "evaluate", "--imported", "one", "--method", method, "--json")
        assert rc == 0, err
        d = json.loads(out)
        ref = evaluate(X, y, method)
        assert (d["method"], d["imported"], d["backbone"], d["protocol"]) == (method, "one", "imported", ref.protocol)
        assert d["accuracy"] == ref.accuracy and (d["n_train"], d["n_test"]) == (ref.n_train, ref.n_test)
    rc, out, _ = _cli("--cache", str(cache), "evaluate", "--imported", "one", "--shots", "2", "--draws", "3")
    assert rc == 0 and "imported set one (imported)" in out and "2 training images per class" in out


def test_cli_evaluate_imported_bad_input_is_one_line(tmp_path):
    cache, X, _, _ = _imported_pair(tmp_path)
    import_table(_npz(tmp_path / "u.npz", X, [f"{i}" for i in range(len(X))]), "unlabelled", cache=cache)
    for argv, msg in ((["--imported", "nope"], "no imported set named 'nope'"),
                      (["--imported", "unlabelled"], "needs a label for every point"),
                      (["--imported", "one", "--backbone", "mobilenetv2"], "leave out --backbone"),
                      (["--imported", "one", "--size", "224"], "--layer and --size apply to a backbone"),
                      ([], "--imported NAME")):
        rc, _, err = _cli("--cache", str(cache), "evaluate", *argv)
        assert rc == 2 and msg in err and err.count("\n") == 1, (argv, err)


def test_cli_compare_sources_of_two_imported_sets(tmp_path):
    cache, X, Y, y = _imported_pair(tmp_path)
    rc, out, err = _cli("--cache", str(cache), "compare", "--sources", "one,two", "--bootstrap", "5",
                        "--permutations", "5", "--json")
    assert rc == 0, err
    assert "60 images shared by the 2 sources" in err
    data = json.loads(out)
    assert [d["backbone"] for d in data] == ["one", "two"] and data[0]["cka_order"] == ["one", "two"]
    assert data[0]["params"] is None and data[1]["images_per_s"] is None and data[0]["family"] == "imported"
    assert data[0]["cka"][1] == pytest.approx(cka_matrix([X, Y])[0, 1], rel=1e-9)  # two's rows put back in order
    assert data[1]["nmc_accuracy"] == evaluate(Y, y, "nmc").accuracy
    assert {"cka_unbiased", "mutual_knn", "cknna", "procrustes", "index_details"} <= set(data[0])
    rc, out, err = _cli("--cache", str(cache), "compare", "--sources", "one,two", "--bootstrap", "3",
                        "--permutations", "3")
    assert rc == 0 and "n/a" in out and "linear CKA of the global embeddings" in out


def test_cli_compare_sources_refusals_are_one_line(tmp_path):
    cache, X, _, y = _imported_pair(tmp_path)
    import_table(_npz(tmp_path / "few.npz", X[:9], [str(tmp_path / f"img{i}.png") for i in range(9)], y[:9]), "few",
                 cache=cache)
    for argv, msg in ((["--sources", "one,few"], "share only 9 images"),
                      (["--sources", "one"], "2 to 4 different names"),
                      (["--sources", "one,missing_set"], "no imported set named 'missing_set'"),
                      (["--sources", "one,mobilenetv2"], "needs --images DIR"),
                      (["--sources", "one,two", "--backbones", "mobilenetv2,efficientnet_lite0"], "not both")):
        rc, _, err = _cli("--cache", str(cache), "compare", *argv)
        assert rc == 2 and msg in err and err.count("\n") == 1, (argv, err)


def test_cli_exported_set_compared_with_a_backbone_equals_the_folder(tmp_path):
    """`export` + `import` of a tiny backbone's stamps embeddings, then `compare --sources SET,B --images stamps`
    gives the numbers of `compare --backbones A,B` (float32 kept: bit for bit the same arithmetic)."""
    cache = str(tmp_path / "c")
    with tiny_registered():
        rc, _, err = _cli("--cache", cache, "export", "--backbone", TINY_VIT, "--images", str(STAMPS), "--out",
                          str(tmp_path / "vit.npz"))
        assert rc == 0, err
        z = np.load(tmp_path / "vit.npz")
        assert z["sha256"].shape == (48,) and all(os.path.isabs(p) for p in z["paths"])
        rc, _, err = _cli("--cache", cache, "import", str(tmp_path / "vit.npz"), "--name", "vitset")
        assert rc == 0, err
        args = ("--bootstrap", "10", "--permutations", "10", "--json")
        rc, out_b, err = _cli("--cache", cache, "compare", "--backbones", f"{TINY_VIT},{TINY_CNN}", "--images",
                              str(STAMPS), *args)
        assert rc == 0, err
        rc, out_s, err = _cli("--cache", cache, "compare", "--sources", f"vitset,{TINY_CNN}", "--images", str(STAMPS),
                              *args)
        assert rc == 0, err
    ref, got = json.loads(out_b), json.loads(out_s)
    assert "48 images shared" in err and "file content (sha256)" in err
    assert got[0]["backbone"] == "vitset" and got[0]["params"] is None and got[1]["params"] == ref[1]["params"]
    for key in ("nmc_accuracy", "knn_accuracy", "linear_accuracy", "nmc_1shot_mean", "silhouette"):
        assert [d[key] for d in got] == [d[key] for d in ref], key
    for name in ("cka", "cka_unbiased", "mutual_knn", "cknna", "procrustes"):
        np.testing.assert_allclose(got[0][name], ref[0][name], rtol=0, atol=1e-9, err_msg=name)
    assert got[0]["index_details"]["procrustes"]["ci_low"] == ref[0]["index_details"]["procrustes"]["ci_low"]


# ---- real weights: the contract ---------------------------------------------------------------------
@pytest.mark.slow
def test_stamps_mobilenetv2_imported_equals_the_folder(tmp_path, get_backbone, stamps):
    """An imported set made with `export` and `import` of the stamps' MobileNetV2 embeddings: the folder's NMC
    accuracy (same split) and linear CKA against vits14_saliency within 1e-6. Stored float16 it would not
    be: the CKA moves by about 1.6e-6 (why small sets keep float32)."""
    cache = os.environ["BACKBONE_LENS_CACHE"]
    rc, _, err = _cli("export", "--backbone", "mobilenetv2", "--images", str(STAMPS), "--out", str(tmp_path / "m.npz"))
    assert rc == 0, err
    rc, _, err = _cli("import", str(tmp_path / "m.npz"), "--name", "stamps_mnv2", "--backbone", "mobilenetv2")
    assert rc == 0, err
    rc, out, err = _cli("evaluate", "--imported", "stamps_mnv2", "--json")
    assert rc == 0, err
    rc, out_f, err = _cli("evaluate", "--backbone", "mobilenetv2", "--train", str(STAMPS), "--json")
    assert rc == 0, err
    imp, folder = json.loads(out), json.loads(out_f)
    assert imp["protocol"] == folder["protocol"] == "split" and abs(imp["accuracy"] - folder["accuracy"]) <= 1e-6
    assert imp["confusion"] == folder["confusion"]

    ref, _ = compare_backbones([get_backbone("mobilenetv2"), get_backbone("vits14_saliency")], stamps.records,
                               index_kw=dict(n_boot=10, n_perm=10))
    vit = imported_source("stamps_mnv2", cache)
    from core.compare.sources import backbone_source

    vit_src = backbone_source(get_backbone("vits14_saliency"), stamps.records)
    cmp = compare_sources([vit, vit_src], index_kw=dict(n_boot=10, n_perm=10))
    assert cmp.alignment == {"aligned_by": "sha256", "n_shared": 48,
                             "n_images_per_source": {"stamps_mnv2": 48, "vits14_saliency": 48}}
    assert abs(cmp.cka[0, 1] - ref.cka[0, 1]) <= 1e-6
    assert abs(cmp.rows[0].nmc_accuracy - ref.rows[0].nmc_accuracy) <= 1e-6
    # the same set stored as float16 moves the CKA beyond 1e-6 (but not beyond 1e-5)
    s16 = import_table(tmp_path / "m.npz", "stamps_mnv2_f16", precision="float16")
    c16 = compare_sources([imported_source(s16), vit_src], indices=())
    assert 1e-6 < abs(c16.cka[0, 1] - ref.cka[0, 1]) < 1e-5
