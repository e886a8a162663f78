"""Sanity checks and localisation (core.explain.sanity / localisation / report): Spearman against scipy,
SSIM against scikit-image, pointing game and relevance mass on synthetic masks, the cascade on a copy
(never the shared model), the report card on tiny models; and on the real ViT and MobileNetV2 (slow)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from core.explain.inputs import SaliencyInput
from core.explain.localisation import mask_at, pointing_game, relevance_mass
from core.explain.methods import RANDOM, ROLLOUT, compute_saliency
from core.explain.report import METRICS, ReportSettings, saliency_report, sample_records
from core.explain.sanity import (
    cascade,
    cascade_units,
    copy_backbone,
    mprt,
    spearman,
    ssim,
)
from core.explain.targets import CamTarget, default_target
from core.io.images import ImageRecord, decode_alpha
from core.models.timm_backbone import TimmBackbone
from tests.conftest import tiny_timm_backbone


def _tiny(arch: str, **kw) -> TimmBackbone:
    return tiny_timm_backbone(arch, f"sanity_{arch}", **kw)


def _picture(seed: int, size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def _checksum(model: torch.nn.Module) -> tuple:
    return (float(sum(p.detach().double().sum() for p in model.parameters())),
            float(sum(b.detach().double().sum() for b in model.buffers())), model.training)


# ---- map similarity against the libraries that define it ------------------------------------------
def test_spearman_equals_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 11))
    b = a + rng.normal(scale=0.8, size=a.shape)
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    t = np.round(a * 2) / 2  # many ties: average ranks, as scipy
    assert spearman(t, b) == pytest.approx(spearmanr(t.ravel(), b.ravel()).statistic, abs=1e-12)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.zeros((4, 4)), a[:4, :4]))  # a constant map has no ranks
    with pytest.raises(ValueError, match="differ in shape"):
        spearman(a, b[:3])


@pytest.mark.parametrize("shape", [(16, 16), (7, 7), (40, 33)])
def test_ssim_equals_scikit_image(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    a = rng.random(shape)
    b = 0.6 * a + 0.4 * rng.random(shape)
    an = (a - a.min()) / (a.max() - a.min())
    bn = (b - b.min()) / (b.max() - b.min())
    want = structural_similarity(an, bn, data_range=1.0, win_size=7)
    assert ssim(a, b) == pytest.approx(want, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)


# ---- localisation on synthetic masks ------------------------------------------------------------------
def test_pointing_game_and_relevance_mass() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 5:25] = True  # the object: 400 of 1600 pixels
    sal = np.zeros((40, 40))
    sal[15, 10] = 1.0  # the peak on the object
    sal[35, 35] = 0.5
    assert pointing_game(sal, mask) == 1.0
    sal[35, 35] = 2.0  # the peak off the object
    assert pointing_game(sal, mask) == 0.0
    # relevance mass, written out: min-max scale, share of the sum inside the mask
    s = (sal - sal.min()) / (sal.max() - sal.min())
    assert relevance_mass(sal, mask) == pytest.approx(s[mask].sum() / s.sum())
    assert relevance_mass(mask.astype(float), mask) == pytest.approx(1.0)
    assert relevance_mass(np.ones((40, 40)), mask) == pytest.approx(0.25)  # a constant map: the object's area
    assert pointing_game(np.ones((40, 40)), mask) == 0.0  # points nowhere
    # a patch-level map is stretched onto the mask: a 4x4 grid whose hot cell covers the object's centre
    grid = np.zeros((4, 4))
    grid[2, 1] = 1.0
    assert pointing_game(grid, mask) == 1.0
    with pytest.raises(ValueError, match="empty"):
        pointing_game(sal, np.zeros((40, 40), dtype=bool))


def test_mask_at_the_model_input() -> None:
    m = np.zeros((30, 60), dtype=bool)
    m[:, :30] = True  # the left half of a wide picture
    s = mask_at(m, 16)
    assert s.shape == (16, 16) and s[:, :8].all() and not s[:, 8:].any()  # the whole picture is resized, no crop


# ---- the cascade works on a copy ----------------------------------------------------------------------
def test_cascade_units_and_copy_leave_the_model_alone() -> None:
    vit = _tiny("test_vit", num_classes=0)
    units = cascade_units(vit)
    assert [u.name for u in units][:2] == ["head", f"blocks.{len(vit.model.blocks) - 1}"]
    assert units[-1].name == "stem" and [u.name for u in units].count("blocks.0") == 1
    before = _checksum(vit.model)
    steps = []
    for name, rand in cascade(vit, seed=0):
        assert rand is not vit and rand.model is not vit.model and rand.lock is not vit.lock
        steps.append((name, _checksum(rand.model)))
    assert _checksum(vit.model) == before  # the shared backbone is untouched
    assert len({c for _, c in steps}) == len(steps)  # every step changed the copy again
    cnn = _tiny("test_efficientnet")
    assert cascade_units(cnn)[0].modules[-1] == "classifier"
    c = copy_backbone(cnn)
    x = cnn.preprocess([_picture(0)])
    torch.testing.assert_close(c.logits(x), cnn.logits(x))  # an exact copy until randomised


def test_a_channels_last_cnn_is_randomised_as_a_contiguous_one() -> None:
    """CNN backbones keep their convolution weights channels-last (faster oneDNN kernels). A seeded random
    fill of a tensor follows its memory order, but torch's convolutions re-initialise through a contiguous
    buffer: the cascade gives the same randomised model for a seed whichever layout, and keeps the layout."""
    cnn = _tiny("test_efficientnet")
    stem = cnn.model.conv_stem.weight  # [C_out, 3, 3, 3]
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    plain = copy_backbone(cnn)
    plain.model.to(memory_format=torch.contiguous_format)
    for (name, a), (_, b) in zip(cascade(cnn, seed=3), cascade(plain, seed=3)):
        for (k, p), q in zip(a.model.named_parameters(), b.model.parameters()):
            assert torch.equal(p, q), f"{name}: {k} differs"
        assert a.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
        assert not a.model.conv_stem.weight.is_contiguous()


def test_mprt_random_control_ignores_the_model_and_cams_do_not() -> None:
    cnn = _tiny("test_efficientnet")
    inputs = [SaliencyInput.from_image(cnn, _picture(s)) for s in (1, 2)]
    targets: list[CamTarget | None] = [default_target(i) for i in inputs]
    curves = mprt(inputs, [RANDOM, "Grad-CAM"], targets, seed=0)
    r, g = curves[RANDOM], curves["Grad-CAM"]
    assert r.depths == g.depths and r.depths[0] == "original" and len(r.depths) == len(cascade_units(cnn)) + 1
    np.testing.assert_allclose(r.spearman, 1.0)  # the control does not depend on the weights at all
    np.testing.assert_allclose(r.ssim, 1.0, atol=1e-9)
    assert g.spearman[0] == 1.0 and np.nanmin(g.spearman[1:]) < 0.9
    # the numbers are the formula on the maps themselves
    o = compute_saliency("Grad-CAM", inputs[0], targets[0])
    rand = None
    for _, model in cascade(cnn, seed=0, units=cascade_units(cnn)[:1]):
        rand = model
    m = compute_saliency("Grad-CAM", SaliencyInput(rand, inputs[0].x), targets[0])
    want = spearmanr(o.ravel(), m.ravel()).statistic if np.ptp(m) > 0 else np.nan
    np.testing.assert_allclose(g.spearman_all[1, 0], want, atol=1e-9)


# ---- the report card on tiny models -------------------------------------------------------------------
def _records(tmp_path, n_per_class: int = 2) -> list[ImageRecord]:
    """Labelled pictures with an alpha channel: an opaque square on a transparent ground."""
    from core.io.images import load_folder

    for k, cls in enumerate(("a", "b")):
        (tmp_path / cls).mkdir()
        for i in range(n_per_class):
            rgba = np.zeros((64, 64, 4), dtype=np.uint8)
            rgba[..., :3] = np.random.default_rng(10 * k + i).integers(0, 256, (64, 64, 3))
            rgba[16:48, 8 + 8 * k:40 + 8 * k, 3] = 255
            Image.fromarray(rgba, "RGBA").save(tmp_path / cls / f"{i}.png")
    return load_folder(tmp_path).records


def test_sample_records_round_robin(tmp_path) -> None:
    recs = _records(tmp_path, 3)
    assert [r.label for r in sample_records(recs, 4)] == ["a", "b", "a", "b"]
    assert len(sample_records(recs, 100)) == 6


def test_report_card_on_a_tiny_vit(tmp_path) -> None:
    recs = _records(tmp_path)
    vit = _tiny("test_vit", num_classes=0)
    before = _checksum(vit.model)
    card = saliency_report(vit, recs, methods=[ROLLOUT, "Grad-CAM", RANDOM, "Prototype map A"],
                           settings=ReportSettings(limit=2, deletion_steps=4, road_percentiles=(50,)))
    assert _checksum(vit.model) == before
    assert card.n_masks == 2 and len(card.images) == 2
    rows = {r["method"]: r for r in card.rows()}
    assert set(rows) == {ROLLOUT, "Grad-CAM", RANDOM, "Prototype map A"}
    for r in rows.values():
        for m in ("road", "deletion_auc", "insertion_auc", "pointing_game", "relevance_mass", "mprt_ssim"):
            assert math.isfinite(r[f"{m}_mean"]) and r[f"{m}_std"] >= 0, (r["method"], m)
        assert 0 <= r["pointing_game_mean"] <= 1 and 0 <= r["relevance_mass_mean"] <= 1
    assert rows[RANDOM]["mprt_spearman_mean"] == pytest.approx(1.0)  # the control fails the sanity check
    # the pointing game of one image, recomputed from its map and its alpha channel
    first = next(r for r in recs if r.name == card.images[0])
    inp = SaliencyInput.from_image(vit, first.decode())
    want = pointing_game(compute_saliency(ROLLOUT, inp), mask_at(decode_alpha(first.read_bytes(), first.name), inp.size))
    assert card.scores[ROLLOUT]["pointing_game"][0] == want
    assert set(METRICS) <= {k.rsplit("_", 1)[0] for k in rows[ROLLOUT] if k.endswith(("_mean", "_std"))}
    assert '"method": "Attention rollout"' in card.to_json() and "] " in card.text() and "best per score" in card.text()


def test_report_card_without_labels_on_a_head_less_model_says_why(tmp_path) -> None:
    from core.io.images import load_folder

    for i in range(2):
        _picture(i).save(tmp_path / f"{i}.png")
    with pytest.raises(ValueError, match="class labels"):
        saliency_report(_tiny("test_vit", num_classes=0), load_folder(tmp_path).records, settings=ReportSettings(limit=2))


# ---- real weights ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_random_control_points_worse_than_rollout_on_the_stamps(get_backbone, stamps) -> None:
    """On every stamp with an alpha channel, the ViT's attention rollout hits the object more often than chance."""
    b = get_backbone("vits14_saliency")
    hits = {ROLLOUT: [], RANDOM: []}
    for r in stamps.records:
        mask = decode_alpha(r.read_bytes(), r.name)
        if mask is None or not 0 < mask.mean() < 0.99:
            continue
        inp = SaliencyInput.from_image(b, r.decode())
        m = mask_at(mask, inp.size)
        for k in hits:
            hits[k].append(pointing_game(compute_saliency(k, inp), m))
    assert len(hits[ROLLOUT]) >= 30
    assert np.mean(hits[ROLLOUT]) > np.mean(hits[RANDOM]) + 0.2, {k: np.mean(v) for k, v in hits.items()}


@pytest.mark.slow
def test_grad_cam_mprt_drops_with_depth_on_the_vit(get_backbone, stamps) -> None:
    b = get_backbone("vits14_saliency")
    recs = sample_records(stamps.records, 3)
    inputs = [SaliencyInput.from_image(b, r.decode()) for r in recs]
    E = np.stack([i.tokens(-1)[1] for i in inputs])  # explain each picture's own final embedding
    targets: list[CamTarget | None] = [CamTarget.similarity("self", e) for e in E]
    units = cascade_units(b)
    curve = mprt(inputs, ["Grad-CAM", RANDOM], targets, seed=0, units=units[:7])["Grad-CAM"]
    s = curve.spearman
    # randomising the blocks takes the map away from the trained model's (the deepest steps can climb back
    # part of the way: a ViT left with random blocks still carries its patch embedding's layout)
    assert s[0] == 1.0 and s[-1] < s[1] and min(s[2:]) < 0.5, dict(zip(curve.depths, np.round(s, 3)))
    assert curve.ssim[-1] < curve.ssim[0]


def test_saliency_report_command(tmp_path, capsys) -> None:
    import json

    from core.cli import main
    from tests.test_compare import TINY_CNN, tiny_registered

    (tmp_path / "imgs").mkdir()
    _records(tmp_path / "imgs")
    with tiny_registered():
        rc = main(["--cache", str(tmp_path / "cache"), "saliency-report", "--backbone", TINY_CNN, "--images",
                   str(tmp_path / "imgs"), "--limit", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backbone"] == TINY_CNN and len(out["images"]) == 1 and out["n_masks"] == 1
    rows = {r["method"]: r for r in out["rows"]}
    assert {"Grad-CAM", "Random map (baseline)", "Prototype map A-B"} <= set(rows)
    assert "Attention rollout" not in rows  # a CNN: only the methods that run on it
    assert rows["Random map (baseline)"]["mprt_spearman_mean"] == pytest.approx(1.0)
    assert rows["Grad-CAM"]["mprt_spearman_std"] == 0.0  # one image: no spread
