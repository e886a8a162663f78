"""Identity in core: Dataset.key (the images: content, label, name, order) and FeatureSet.key / features_key
(the features: weights, preprocessing, kinds and blocks, the images), which every cache keys on."""
from __future__ import annotations

import dataclasses
import hashlib
import pickle
import shutil

import numpy as np
import pytest

from core.io import images
from core.io.images import Dataset, ImageRecord, load_folder, records_key
from core.io.store import FeatureStore
from core.models.extract import FeatureSet, extract_features, features_key
from core.models.spec import BackboneSpec
from tests.conftest import STAMPS

SPEC = BackboneSpec(name="toy", source="local", family="vit", architecture="toy", weights_name="toy.pth",
                    weights_sha256="ab" * 32, input_size=224, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                    patch_size=14, num_prefix_tokens=1, num_layers=12, embed_layer=-1, has_attention=True,
                    size_multiple=14)


def _records(n: int = 5) -> list[ImageRecord]:
    return [ImageRecord(hashlib.sha256(str(i).encode()).hexdigest(), f"c{i % 2}/img{i}.png", f"c{i % 2}", None)
            for i in range(n)]


def test_records_key_is_the_formula_written_out():
    recs = _records()
    h = hashlib.sha256()
    for r in recs:
        h.update(f"{r.sha256}|{r.label}|{r.name}\n".encode())
    assert records_key(recs) == h.hexdigest()[:16] == Dataset(recs).key


def test_dataset_key_follows_content_labels_names_and_order(tmp_path):
    a, b = load_folder(STAMPS), load_folder(STAMPS)
    assert a is not b and a.key == b.key and len(a.key) == 16
    copy = tmp_path / "elsewhere"
    shutil.copytree(STAMPS, copy)
    assert load_folder(copy).key == a.key  # the same files, labels and names anywhere on disk
    cls = sorted(p for p in copy.iterdir() if p.is_dir())[0]
    cls.rename(copy / "renamed_class")
    assert load_folder(copy).key != a.key  # a label changed
    recs = _records()
    base = Dataset(recs).key
    assert Dataset(recs[::-1]).key != base
    assert Dataset([dataclasses.replace(recs[0], name="other.png"), *recs[1:]]).key != base
    assert Dataset([dataclasses.replace(recs[0], label="c9"), *recs[1:]]).key != base
    assert Dataset([dataclasses.replace(recs[0], sha256="0" * 64), *recs[1:]]).key != base
    assert Dataset(recs, failures=[images.Failure("bad.png", "truncated")]).key == base  # failures are not features


def test_dataset_key_is_computed_once_and_travels_with_a_copy(monkeypatch):
    calls = []
    real = images.records_key
    monkeypatch.setattr(images, "records_key", lambda recs: calls.append(1) or real(recs))
    ds = Dataset(_records())
    for _ in range(3):
        assert ds.key == real(ds.records)
    copy = pickle.loads(pickle.dumps(ds))  # what st.cache_data hands each rerun
    assert copy.key == ds.key and len(calls) == 1


def test_features_key_changes_with_each_part_of_the_identity():
    ds = Dataset(_records())
    base = features_key(SPEC, ds.key)
    assert base == features_key(SPEC, Dataset(_records()).key)  # equal content, equal key
    assert base == features_key(SPEC, ds.key, layer=-1, size=224)  # the defaults spelt out
    other_weights = dataclasses.replace(SPEC, weights_sha256="cd" * 32)
    changed = {
        "weights": features_key(other_weights, ds.key),
        "backbone name": features_key(dataclasses.replace(SPEC, name="toy2"), ds.key),
        "size": features_key(SPEC, ds.key, size=448),
        "mean": features_key(dataclasses.replace(SPEC, mean=(0.4, 0.5, 0.5)), ds.key),
        "layer": features_key(SPEC, ds.key, layer=5),
        "kinds": features_key(SPEC, ds.key, kinds=("embedding", "patch_tokens")),
        "images": features_key(SPEC, Dataset(_records(4)).key),
        "a label": features_key(SPEC, Dataset([dataclasses.replace(_records()[0], label="x"), *_records()[1:]]).key),
    }
    assert len(set(changed.values()) | {base}) == len(changed) + 1, changed
    # kinds are a set; float16 tokens are other features, and matter only with tokens
    both = features_key(SPEC, ds.key, kinds=("patch_tokens", "embedding"))
    assert both == changed["kinds"]
    assert features_key(SPEC, ds.key, kinds=("patch_tokens",), half_tokens=True) != \
        features_key(SPEC, ds.key, kinds=("patch_tokens",))
    assert features_key(SPEC, ds.key, half_tokens=True) == base
    with pytest.raises(ValueError):
        features_key(SPEC, ds.key, size=225)  # not a multiple of the patch


def test_a_feature_set_made_by_hand_has_a_key_from_what_it_holds():
    recs = _records()
    fs = FeatureSet("toy", 224, {"embedding": 11}, recs, {"embedding": np.zeros((5, 3))})
    same = FeatureSet("toy", 224, {"embedding": 11}, list(recs), {"embedding": np.ones((5, 3))})
    assert fs.key == same.key and len(fs.key) == 16
    assert FeatureSet("toy", 224, {"embedding": 10}, recs, {}).key != fs.key
    assert FeatureSet("toy", 448, {"embedding": 11}, recs, {}).key != fs.key
    assert FeatureSet("toy", 224, {"embedding": 11}, recs[:4], {}).key != fs.key


@pytest.mark.slow
def test_extracted_features_carry_the_key_known_before_extracting(get_backbone, tmp_path):
    """The page's memo looks a feature set up by features_key before extracting: the set then made has
    that key, whether it came from the model or the store, and whatever files failed to decode."""
    b = get_backbone("mobilenetv2")
    folder = tmp_path / "imgs"
    shutil.copytree(STAMPS / sorted(p.name for p in STAMPS.iterdir() if p.is_dir())[0], folder / "a")
    ds = load_folder(folder)
    bad = ImageRecord(hashlib.sha256(b"x").hexdigest(), "a/broken.png", "a", None, data=b"not an image")
    records = [*ds.records[:3], bad]
    store = FeatureStore(tmp_path / "features.sqlite")
    want = features_key(b.spec, records_key(records), kinds=("embedding",))
    fresh = extract_features(b, records, store=store)
    cached = extract_features(b, records, store=store)
    assert fresh.stats.n_computed == 3 and cached.stats.n_cached == 3 and len(fresh.failures) == 1
    assert fresh.key == cached.key == want
    assert extract_features(b, records, store=store, layer=b.spec.embed_layer).key == want  # the default block
    assert extract_features(b, records, store=store, size=256).key == features_key(b.spec, records_key(records),
                                                                                 size=256) != want
    assert extract_features(b, ds.records[:3], store=store).key == features_key(b.spec, Dataset(ds.records[:3]).key)
