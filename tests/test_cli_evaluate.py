"""`backbone-lens evaluate`: the accuracies of the Prototypes page from a shell, computed by the same
core.classify.evaluation functions (checked against them here on the real offline backbone)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.classify.classifiers import classifier_names
from core.classify.evaluation import evaluate, few_shot_curve
from core.cli import main
from tests.conftest import SCENES, STAMPS

EXE = shutil.which("backbone-lens", path=str(Path(sys.executable).parent)) or "backbone-lens"


@pytest.fixture(scope="module")
def stamp_features(get_backbone):
    from core.io.images import load_folder
    from core.io.store import FeatureStore
    from core.models.extract import extract_features

    fs = extract_features(get_backbone("mobilenetv2"), load_folder(STAMPS).records, store=FeatureStore())
    return fs["embedding"], np.asarray(fs.labels)


@pytest.fixture(scope="module")
def train_test(tmp_path_factory):
    """The stamps cut into a train and a test folder (alternate files of each class)."""
    root = tmp_path_factory.mktemp("split")
    for d in sorted(STAMPS.iterdir()):
        for i, f in enumerate(sorted(d.iterdir())):
            dst = root / ("train" if i % 2 == 0 else "test") / d.name
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst / f.name)
    return root / "train", root / "test"


def _json(capsys, *args) -> dict:
    assert main(["evaluate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_evaluate_json_from_the_installed_command(stamp_features):
    r = subprocess.run([EXE, "evaluate", "--backbone", "mobilenetv2", "--train", str(STAMPS), "--json"],
                       capture_output=True, text=True, env={**os.environ}, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # one JSON object on stdout, progress on stderr
    assert {"method", "backbone", "accuracy", "n_train", "n_test"} <= out.keys()
    X, y = stamp_features
    ref = evaluate(X, y, "nmc", metric="cosine")
    assert (out["method"], out["backbone"], out["protocol"]) == ("nmc", "mobilenetv2", "split")
    assert out["accuracy"] == ref.accuracy and (out["n_train"], out["n_test"]) == (ref.n_train, ref.n_test) == (32, 16)
    assert out["confusion"] == ref.confusion.tolist()


@pytest.mark.slow
def test_every_method_matches_core_prototypes(capsys, stamp_features):
    X, y = stamp_features
    for method in [m for m in classifier_names() if m != "nmc"]:  # every registered classifier, same JSON keys
        out = _json(capsys, "--backbone", "mobilenetv2", "--train", str(STAMPS), "--method", method)
        assert out["accuracy"] == evaluate(X, y, method).accuracy, method
        assert {"method", "backbone", "accuracy", "n_correct", "n_train", "n_test", "protocol", "classes",
                "confusion"} <= out.keys() and out["method"] == method
    out = _json(capsys, "--backbone", "mobilenetv2", "--train", str(STAMPS), "--metric", "euclidean", "--seed", "3")
    assert out["accuracy"] == evaluate(X, y, "nmc", metric="euclidean", seed=3).accuracy and out["metric"] == "euclidean"


@pytest.mark.slow
def test_shots_and_a_test_folder(capsys, stamp_features, train_test):
    X, y = stamp_features
    out = _json(capsys, "--backbone", "mobilenetv2", "--train", str(STAMPS), "--shots", "2", "--draws", "5")
    row = few_shot_curve(X, y, shots=[2], methods=["nmc"], draws=5)[0]  # the page's few-shot curve
    assert (out["accuracy"], out["accuracy_std"]) == (row.mean_acc, row.std_acc)
    assert (out["protocol"], out["n_train"], out["n_test"], out["shots"]) == ("few-shot", 16, 32, 2)

    train, test = train_test
    out = _json(capsys, "--backbone", "mobilenetv2", "--train", str(train), "--test", str(test), "--method", "linear")
    assert (out["protocol"], out["n_train"], out["n_test"]) == ("given", 24, 24)
    out = _json(capsys, "--backbone", "mobilenetv2", "--train", str(train), "--test", str(test), "--shots", "1")
    assert (out["protocol"], out["n_train"], out["n_test"], out["draws"]) == ("few-shot/given", 8, 24, 10)

    assert main(["evaluate", "--backbone", "mobilenetv2", "--train", str(STAMPS)]) == 0  # the human-readable form
    text = capsys.readouterr().out
    ref = evaluate(X, y, "nmc")
    assert f"accuracy {100 * ref.accuracy:.1f}% ({round(ref.accuracy * 16)}/16)" in text
    assert "stratified hold-out of 0.3 per class (seed 0); n_train 32, n_test 16, 8 classes" in text


@pytest.mark.slow
def test_clear_errors(capsys, tmp_path):
    assert main(["evaluate", "--backbone", "mobilenetv2", "--train", str(STAMPS), "--shots", "6"]) == 2
    assert "smallest class (6)" in capsys.readouterr().err  # every class would lose its test images
    assert main(["evaluate", "--backbone", "mobilenetv2", "--train", str(SCENES)]) == 2
    assert "one subfolder per class" in capsys.readouterr().err  # a flat, unlabelled folder
    assert main(["evaluate", "--backbone", "mobilenetv2", "--train", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_evaluate_rejects_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--backbone", "mobilenetv2", "--train", str(STAMPS), "--method", "svm"])
    assert "invalid choice: 'svm'" in capsys.readouterr().err
