"""The report card at dataset speed (core.explain.report / scoring / cam.compute_cams / faithfulness solvers):
the faster paths pinned to the one-map-at-a-time code they replace, the per-picture cache, cancellation,
bootstrap intervals and paired verdicts, bad input on the CLI; on the real backbones (slow)."""
from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from core.errors import Cancelled
from core.explain.cam import CAM_METHODS, compute_cams
from core.explain.faithfulness import (
    _NEIGHBOURS,
    CPU_BATCH,
    GPU_BATCH,
    faithfulness,
    impute_many,
    model_view,
    noisy_linear_impute,
    road_score,
    scoring_batch,
)
from core.explain.inputs import SaliencyInput
from core.explain.localisation import mask_at, pointing_game, relevance_mass
from core.explain.methods import RANDOM, ROLLOUT, available_methods, compute_saliency
from core.explain.prototype_maps import PrototypeSet
from core.explain.report import (
    METRICS,
    ReportSettings,
    _Card,
    _object_mask,
    _picture_seed,
    example_map,
    saliency_report,
    sample_records,
)
from core.explain.report_stats import MIN_PAIRED, bootstrap_mean_ci, paired_comparison, resampled_means
from core.explain.sanity import CascadeUnit, cascade_units, mprt
from core.explain.scoring import FaithfulnessSettings, faithfulness_many
from core.explain.targets import CamTarget, default_target, model_output
from core.io.images import ImageRecord, load_folder
from core.io.store import FeatureStore
from core.models.timm_backbone import TimmBackbone
from tests.conftest import tiny_timm_backbone

# batching several pictures into one forward changes the order of float sums (oneDNN / BLAS blocking)
BATCH_TOL = 1e-5


def _tiny(arch: str, **kw) -> TimmBackbone:
    return tiny_timm_backbone(arch, f"card_{arch}", **kw)


@pytest.fixture(scope="module")
def vit() -> TimmBackbone:
    return _tiny("test_vit", num_classes=0)


@pytest.fixture(scope="module")
def cnn() -> TimmBackbone:
    return _tiny("test_efficientnet")


def _records(root, n_per_class: int = 2, classes=("a", "b")) -> list[ImageRecord]:
    """Labelled pictures with an alpha channel: an opaque square on a transparent ground."""
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            rgba = np.zeros((64, 64, 4), dtype=np.uint8)
            rgba[..., :3] = np.random.default_rng(10 * k + i).integers(0, 256, (64, 64, 3))
            rgba[16:48, 8 + 8 * k:40 + 8 * k, 3] = 255
            Image.fromarray(rgba, "RGBA").save(root / cls / f"{i}.png")
    return load_folder(root).records


# ---- the Grad-CAM family from one pass equals one grad-cam call per method -----------------------------------
@pytest.mark.parametrize("arch", ["test_vit", "test_efficientnet"])
def test_compute_cams_equals_one_gradcam_call_each(arch, vit, cnn) -> None:
    b = vit if arch == "test_vit" else cnn
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 3, b.spec.input_size, b.spec.input_size)).astype(np.float32))
    ref_vec = np.random.default_rng(4).normal(size=b.model.num_features).astype(np.float32)
    target = CamTarget.similarity("ref", ref_vec) if arch == "test_vit" else CamTarget.imagenet_class(b, 3)
    got = compute_cams(b, x, list(CAM_METHODS), target)
    for name, m in CAM_METHODS.items():  # the reference: grad-cam's own class, one full pass each
        cam = m.cam_class(model=model_output(b, target), target_layers=b.cam_target_layers(),
                          reshape_transform=b.cam_reshape_transform(b.spec.input_size))
        with torch.enable_grad():
            want = cam(input_tensor=x.clone().requires_grad_(True), targets=[target.gradcam_target()])[0]
        cam.activations_and_grads.release()
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert compute_cams(b, x, ["EigenCAM"], target)["EigenCAM"].shape == (b.spec.input_size,) * 2  # no backward needed


# ---- ROAD's imputation: the nested-dissection and CG solvers against the plain sparse solve ------------------
def _plain_impute(image: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """The system written out and solved by scipy's spsolve in its default ordering (the code it replaced)."""
    C, H, W = image.shape
    flat = image.reshape(C, -1).numpy().astype(np.float64)
    kf = keep.reshape(-1)
    missing = np.flatnonzero(~kf)
    var = np.full(H * W, -1)
    var[missing] = np.arange(missing.size)
    A = np.zeros((missing.size, missing.size))
    rhs = np.zeros((missing.size, C))
    for e, p in enumerate(missing):
        r, c = divmod(p, W)
        for (dr, dc), w in _NEIGHBOURS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W:
                A[e, e] -= w
                q = rr * W + cc
                if kf[q]:
                    rhs[e] -= w * flat[:, q]
                else:
                    A[e, var[q]] += w
    sol = spsolve(coo_matrix(A).tocsc(), rhs)
    out = flat.copy()
    out[:, missing] = sol.T
    return torch.from_numpy(out).float().reshape(C, H, W)


def test_imputation_solvers_agree_with_the_plain_solve() -> None:
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.normal(size=(3, 30, 34)).astype(np.float32))
    sal = rng.random((30, 34))
    keeps = [sal < np.percentile(sal, p) for p in (20, 50, 80)] + [sal > 0.95]  # 5% kept: a large removed region
    for k in keeps:
        torch.testing.assert_close(noisy_linear_impute(img, k, noise=0.0), _plain_impute(img, k), atol=1e-6, rtol=0)
    # the CG path (the GPU's) on the CPU: same values to 1e-6, the same noise draws
    direct = impute_many(img, keeps, 0.01, torch.Generator().manual_seed(5), solver="direct")
    cg = impute_many(img, keeps, 0.01, torch.Generator().manual_seed(5), solver="cg")
    torch.testing.assert_close(cg, direct, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="nothing is kept"):
        impute_many(img, [np.zeros((30, 34), bool)])


# ---- faithfulness of many maps in one stream equals one map at a time -------------------------------------------
@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_faithfulness_many_equals_the_one_map_functions(cnn, solver) -> None:
    img = Image.fromarray(np.random.default_rng(7).integers(0, 256, (80, 70, 3), dtype=np.uint8))
    size = cnn.spec.input_size
    inp = SaliencyInput.from_image(cnn, img, size)
    target = default_target(inp)
    maps = {m: compute_saliency(m, inp, target) for m in ("Grad-CAM", "HiResCAM", "EigenCAM", RANDOM)}
    maps["copy"] = maps[RANDOM].copy()  # identical maps are scored once
    maps["constant"] = np.zeros((4, 4), np.float32)  # ROAD undefined: no threshold keeps a pixel
    s = FaithfulnessSettings(steps=5, baseline="blur", percentiles=(30, 70), seed=11, solver=solver, batch_size=7)
    got = faithfulness_many(cnn, model_view(img, size), inp.x, maps, target, s)
    for name, m in maps.items():
        fa = faithfulness(cnn, img, m, target, size, steps=5, baseline="blur")
        assert got[name]["deletion_auc"] == pytest.approx(fa["deletion_auc"], abs=BATCH_TOL), name
        assert got[name]["insertion_auc"] == pytest.approx(fa["insertion_auc"], abs=BATCH_TOL), name
        ro = road_score(cnn, inp.x, m, target, (30, 70), seed=11)["road"]
        if name == "constant":
            assert math.isnan(got[name]["road"]) and math.isnan(ro)
        else:
            assert got[name]["road"] == pytest.approx(ro, abs=BATCH_TOL), name
    assert got["copy"] == got[RANDOM]


# ---- the whole card pinned to the per-step path it replaced -------------------------------------------------
def _per_step_card(b, records, methods, settings: ReportSettings) -> dict[str, dict[str, list[float]]]:
    """The report card as it was computed before (one map, one deletion curve, one ROAD and one grad-cam pass at
    a time; the randomisation test after all pictures), with ROAD's noise seeded by each picture's hash."""
    size = b.spec.check_size(settings.size or b.spec.input_size)
    sample = sample_records(records, settings.limit or len(records))
    labels = [q.label for q in records]
    from core.models.extract import extract_features

    E_final = extract_features(b, records, layer=-1, size=size)["embedding"]
    E_map = extract_features(b, records, layer=None, size=size)["embedding"]
    scores = {n: {k: [] for k in METRICS} for n in methods}
    inputs, targets, params_all = [], [], []
    for r in sample:
        img = r.decode()
        inp = SaliencyInput.from_image(b, img, size)
        same = [j for j, q in enumerate(records) if q.sha256 == r.sha256]
        target = default_target(inp, PrototypeSet.from_embeddings(E_final, labels, same))
        params = {n: {"prototypes": PrototypeSet.from_embeddings(E_map, labels, same), "layer": b.spec.embed_layer}
                  for n in methods if n.startswith("Prototype")}
        mask = _object_mask(r)
        mask_s = mask_at(mask, size) if mask is not None else None
        for n in methods:
            sal = compute_saliency(n, inp, target, **params.get(n, {}))
            fa = faithfulness(b, img, sal, target, size, steps=settings.deletion_steps, baseline=settings.baseline)
            ro = road_score(b, inp.x, sal, target, settings.road_percentiles, seed=_picture_seed(settings.seed, r))
            scores[n]["deletion_auc"].append(fa["deletion_auc"])
            scores[n]["insertion_auc"].append(fa["insertion_auc"])
            scores[n]["road"].append(ro["road"])
            scores[n]["pointing_game"].append(pointing_game(sal, mask_s) if mask_s is not None else math.nan)
            scores[n]["relevance_mass"].append(relevance_mass(sal, mask_s) if mask_s is not None else math.nan)
        inputs.append(inp)
        targets.append(target)
        params_all.append(params)
    everything = CascadeUnit("all", tuple(p for u in cascade_units(b) for p in u.modules))
    curves = mprt(inputs, methods, targets, params=params_all, seed=settings.seed, units=[everything])
    for n in methods:
        scores[n]["mprt_spearman"] = list(curves[n].spearman_all[-1])
        scores[n]["mprt_ssim"] = list(curves[n].ssim_all[-1])
    return scores


def _assert_same_scores(got: dict, want: dict, tol: float) -> None:
    for n in want:
        for m in METRICS:
            np.testing.assert_allclose(got[n][m], want[n][m], atol=tol, rtol=0, err_msg=f"{n} {m}")


def test_card_equals_the_per_step_path_on_a_tiny_vit_and_cnn(tmp_path, vit, cnn) -> None:
    recs = _records(tmp_path)
    settings = ReportSettings(limit=3, deletion_steps=4, road_percentiles=(40, 60), seed=2)
    for b, methods in ((vit, [ROLLOUT, "Attention", "Grad-CAM", "EigenCAM", RANDOM, "Prototype map A-B"]),
                       (cnn, ["Grad-CAM", "Grad-CAM++", "HiResCAM", RANDOM, "Prototype map A"])):
        card = saliency_report(b, recs, methods=methods, settings=settings)
        _assert_same_scores(card.scores, _per_step_card(b, recs, methods, settings), BATCH_TOL)


# ---- the per-picture cache ------------------------------------------------------------------------------------
def test_second_run_computes_nothing_and_a_larger_limit_only_the_new(tmp_path, cnn, monkeypatch) -> None:
    recs = _records(tmp_path / "d", n_per_class=3)
    store = FeatureStore(tmp_path / "cache.sqlite")
    calls: list[str] = []
    real = _Card.score
    monkeypatch.setattr(_Card, "score", lambda self, r: (calls.append(r.name), real(self, r))[1])
    methods = ["Grad-CAM", RANDOM, "Prototype map B"]
    s = ReportSettings(limit=2, deletion_steps=3, road_percentiles=(50,))
    first = saliency_report(cnn, recs, methods=methods, settings=s, store=store)
    assert len(calls) == 2 and first.n_computed == 2 and first.n_cached == 0
    again = saliency_report(cnn, recs, methods=methods, settings=s, store=store)
    assert len(calls) == 2 and again.n_computed == 0 and again.n_cached == 2  # nothing computed the second time
    assert json.dumps(again.scores) == json.dumps(first.scores)
    more = saliency_report(cnn, recs, methods=methods, settings=ReportSettings(limit=4, deletion_steps=3,
                                                                              road_percentiles=(50,)), store=store)
    assert len(calls) == 4 and more.n_cached == 2 and more.images[:2] == first.images  # only the two new pictures
    saliency_report(cnn, recs, methods=methods, settings=ReportSettings(limit=2, deletion_steps=4,
                                                                        road_percentiles=(50,)), store=store)
    assert len(calls) == 6  # other settings: another key


def test_cancel_between_pictures_keeps_the_finished_ones(tmp_path, cnn) -> None:
    recs = _records(tmp_path / "d", n_per_class=2)
    store = FeatureStore(tmp_path / "cache.sqlite")
    s = ReportSettings(limit=3, deletion_steps=2, road_percentiles=(50,))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="after 0 of 3"):
        saliency_report(cnn, recs, methods=[RANDOM], settings=s, store=store, cancel=stop)
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, msg: str) -> None:
        seen.append((done, total, msg))

    with pytest.raises(Cancelled, match="after 1 of 3 images; the scored images are cached"):
        saliency_report(cnn, recs, methods=[RANDOM], settings=s, store=store, progress=progress,
                        cancel=lambda: len(seen) >= 2)  # stop after the first picture
    assert seen[0] == (0, 3, "0 of 3 images from the cache") and seen[1][:2] == (1, 3)
    card = saliency_report(cnn, recs, methods=[RANDOM], settings=s, store=store)
    assert card.n_cached == 1 and card.n_computed == 2


# ---- statistics: bootstrap intervals and paired verdicts --------------------------------------------------------
def test_bootstrap_interval_is_the_percentile_interval_of_resampled_means() -> None:
    v = np.array([0.1, 0.4, np.nan, 0.35, 0.2, 0.9, 0.5])
    mean, lo, hi = bootstrap_mean_ci(v, n_boot=500, seed=3)
    ok = v[np.isfinite(v)]
    rng = np.random.default_rng(3)  # written out: resample the finite values, take the 2.5th / 97.5th percentiles
    means = ok[rng.integers(0, ok.size, size=(500, ok.size))].mean(1)
    assert mean == pytest.approx(ok.mean()) and (lo, hi) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert lo < mean < hi
    assert bootstrap_mean_ci(np.array([0.3])) == (0.3, 0.3, 0.3)
    assert all(math.isnan(x) for x in bootstrap_mean_ci(np.array([np.nan])))


def test_bootstrap_of_a_whole_dataset_draws_in_blocks_and_matches_the_standard_error() -> None:
    # 100,000 images x 2,000 resamples would be a 1.6 GB index array in one draw; the blocks hold 4 M indices
    v = np.random.default_rng(5).exponential(0.2, size=100_000)
    means = resampled_means(v, 2000, seed=1)  # [2000]
    assert means.shape == (2000,) and means.mean() == pytest.approx(v.mean(), abs=1e-4)
    assert means.std() == pytest.approx(v.std() / np.sqrt(v.size), rel=0.1)  # the standard error of a mean
    mean, lo, hi = bootstrap_mean_ci(v, seed=1)
    assert (lo, hi) == pytest.approx((v.mean() - 1.96 * v.std() / 316.2, v.mean() + 1.96 * v.std() / 316.2), abs=2e-4)
    small = np.array([0.2, 0.5, 0.1])  # a small set is one block: the draws of one call of the generator
    g = np.random.default_rng(9)
    np.testing.assert_array_equal(resampled_means(small, 50, seed=9), small[g.integers(0, 3, size=(50, 3))].mean(1))


def test_paired_comparison_names_the_winner_only_when_the_interval_excludes_zero() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(12)
    better = base + 0.1 + 0.01 * rng.random(12)  # a clear, consistent lead
    c = paired_comparison(better, base, a="A", b="B", metric="road", higher_is_better=True)
    assert c.winner == "A" and c.low > 0 and "A beats B on road" in c.statement() and "excludes 0" in c.statement()
    c = paired_comparison(better, base, a="A", b="B", metric="deletion_auc", higher_is_better=False)
    assert c.winner == "B"  # lower is better there
    noise = base + rng.normal(0, 0.1, 12)
    c = paired_comparison(noise - noise.mean() + base.mean(), base, a="A", b="B", metric="road", higher_is_better=True)
    assert c.winner is None and "cannot be told apart" in c.statement()
    few = paired_comparison(better[:MIN_PAIRED - 1], base[:MIN_PAIRED - 1], a="A", b="B", metric="road",
                            higher_is_better=True)
    assert few.winner is None and "too few images" in few.statement()


def test_pictures_with_an_object_mask_are_counted_from_the_scores(tmp_path, cnn) -> None:
    """Half the pictures carry an alpha mask: the card counts them (without decoding every picture again),
    the same on a second run read from the cache."""
    root = tmp_path / "mixed"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            rgba = np.zeros((48, 48, 4), dtype=np.uint8)
            rgba[..., :3] = np.random.default_rng(i + 7 * len(cls)).integers(0, 256, (48, 48, 3))
            rgba[..., 3] = 255
            if i == 0:  # an object in the middle, transparent around it
                rgba[:, :, 3] = 0
                rgba[12:36, 12:36, 3] = 255
            Image.fromarray(rgba, "RGBA").save(root / cls / f"{cls}{i}.png")
    recs = load_folder(root).records
    settings = ReportSettings(limit=None, deletion_steps=2, road_percentiles=(50,))
    store = FeatureStore(tmp_path / "cache.sqlite")
    first = saliency_report(cnn, recs, methods=["Grad-CAM"], settings=settings, store=store)
    again = saliency_report(cnn, recs, methods=["Grad-CAM"], settings=settings, store=store)
    assert first.n_masks == again.n_masks == 2 and again.n_computed == 0
    assert sorted(np.isnan(first.scores["Grad-CAM"]["pointing_game"])) == [False, False, True, True]


def test_card_summaries_reasons_and_example_map(tmp_path, cnn) -> None:
    root = tmp_path / "flat"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):  # opaque RGB pictures: no object mask anywhere
            Image.fromarray(np.random.default_rng(i + 5 * len(cls)).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(
                root / cls / f"{cls}{i}.png")
    recs = load_folder(root).records
    card = saliency_report(cnn, recs, methods=["Grad-CAM", RANDOM], settings=ReportSettings(
        limit=None, deletion_steps=2, road_percentiles=(50,)))
    assert len(card.images) == 4 and card.labels == ["a", "b", "a", "b"] and card.n_masks == 0
    rows = {r["method"]: r for r in card.rows()}
    assert "alpha channel" in rows["Grad-CAM"]["reasons"]["pointing_game"]  # n/a says why
    assert rows["Grad-CAM"]["pointing_game_n"] == 0 and rows["Grad-CAM"]["road_n"] == 4
    assert rows[RANDOM]["mprt_spearman_mean"] == pytest.approx(1.0)
    assert card.best()["mprt_spearman"] == "Grad-CAM"  # the control keeps its map: worst on the sanity check
    pc = card.per_class()
    assert {(r["class"], r["method"]) for r in pc} == {(c, m) for c in "ab" for m in ("Grad-CAM", RANDOM)}
    want = np.mean([card.scores[RANDOM]["road"][i] for i, lab in enumerate(card.labels) if lab == "a"])
    assert next(r for r in pc if r["class"] == "a" and r["method"] == RANDOM)["road_mean"] == pytest.approx(want)
    text = card.text(per_class=True)
    assert "n/a for Grad-CAM, pointing_game: no sampled image has an object mask" in text and "per class" in text
    out = json.loads(card.to_json())
    assert out["best"]["mprt_spearman"] == "Grad-CAM" and out["comparisons"] and out["per_class"]
    ex = example_map(cnn, recs, card, "Grad-CAM", card.images[1])
    inp = SaliencyInput.from_image(cnn, ex.picture)
    np.testing.assert_array_equal(ex.map, compute_saliency("Grad-CAM", inp, default_target(inp)))
    assert ex.scores["road"] == card.scores["Grad-CAM"]["road"][1]


# ---- bad input --------------------------------------------------------------------------------------------------
def test_bad_input_raises_one_clear_error(tmp_path, vit, cnn) -> None:
    recs = _records(tmp_path / "d")
    with pytest.raises(ValueError, match="limit 9 is more than the 4 images"):
        saliency_report(cnn, recs, settings=ReportSettings(limit=9))
    with pytest.raises(ValueError, match="unknown saliency method 'Nope'"):
        saliency_report(cnn, recs, methods=["Nope"], settings=ReportSettings(limit=1))
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / f"flat{i}.png")
    flat = [r for r in load_folder(tmp_path, labelled=False).records if r.name.startswith("flat")]
    with pytest.raises(ValueError, match="no classifier head: the report needs class labels"):
        saliency_report(vit, flat, settings=ReportSettings(limit=1))
    card = saliency_report(cnn, recs, methods=["Attention", RANDOM], settings=ReportSettings(
        limit=1, deletion_steps=2, road_percentiles=(50,)))
    assert "needs attention maps" in card.skipped["Attention"] and list(card.scores) == [RANDOM]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    from core.cli import main
    from tests.test_compare import TINY_CNN, tiny_registered

    _records(tmp_path / "imgs")
    cache = str(tmp_path / "cache")
    cases = {("--limit", "5"): "--limit 5: the dataset has 4 images",
             ("--methods", "Grad-CAM,Nope"): "unknown method(s) 'Nope'",
             ("--device", "cuda"): "no CUDA device"}
    with tiny_registered():
        for extra, msg in cases.items():
            if extra[0] == "--device" and torch.cuda.is_available():
                continue
            rc = main(["--cache", cache, "saliency-report", "--backbone", TINY_CNN, "--images", str(tmp_path / "imgs"),
                       *extra])
            err = capsys.readouterr().err.strip().splitlines()
            assert rc == 2 and msg in err[-1] and err[-1].startswith("error: "), (extra, err)
        rc = main(["--cache", cache, "saliency-report", "--backbone", TINY_CNN, "--images", str(tmp_path / "imgs"),
                   "--limit", "all", "--methods", f"Grad-CAM,{RANDOM}", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["images"]) == 4 and [r["method"] for r in out["rows"]] == ["Grad-CAM", RANDOM]
    assert out["device"] == "cpu" and out["n_computed"] == 4


def test_cli_headless_backbone_without_labels_exits_2(tmp_path, capsys) -> None:
    from core.cli import main
    from tests.test_compare import TINY_HEADLESS, tiny_registered

    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    with tiny_registered():
        rc = main(["--cache", str(tmp_path / "c"), "saliency-report", "--backbone", TINY_HEADLESS, "--images",
                   str(tmp_path), "--limit", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "needs class labels" in err[-1], err


# ---- the device path: everything lives where the model lives ----------------------------------------------------
def test_card_with_the_gpu_solver_on_the_cpu_matches_the_direct_one(tmp_path, cnn) -> None:
    recs = _records(tmp_path / "d")
    s = ReportSettings(limit=2, deletion_steps=3, road_percentiles=(30, 70))
    direct = saliency_report(cnn, recs, methods=["Grad-CAM", RANDOM], settings=s)
    cg = saliency_report(cnn, recs, methods=["Grad-CAM", RANDOM], settings=ReportSettings(**{**s.__dict__, "solver": "cg"}))
    _assert_same_scores(cg.scores, direct.scores, 1e-5)
    inp = SaliencyInput(cnn, cnn.preprocess([recs[0].decode()]))
    assert inp.x.device == cnn.device  # inputs follow the model


def test_default_batch_is_the_cpu_one_and_the_batch_size_does_not_change_scores(tmp_path, cnn) -> None:
    recs = _records(tmp_path / "d")
    s = ReportSettings(limit=2, deletion_steps=3, road_percentiles=(30, 70))
    assert s.batch_size is None and _Card(cnn, recs, ["Grad-CAM"], s, None).batch_size == CPU_BATCH
    assert _Card(cnn, recs, ["Grad-CAM"], ReportSettings(batch_size=5), None).batch_size == 5
    assert (scoring_batch(torch.device("cpu")), scoring_batch(torch.device("cuda"))) == (CPU_BATCH, GPU_BATCH) == (8, 32)
    small = saliency_report(cnn, recs, methods=["Grad-CAM", RANDOM], settings=s)
    large = saliency_report(cnn, recs, methods=["Grad-CAM", RANDOM], settings=ReportSettings(**{**s.__dict__, "batch_size": 32}))
    _assert_same_scores(small.scores, large.scores, BATCH_TOL)


# ---- real weights ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenetv2", "vits14_saliency"])
def test_card_equals_the_per_step_path_on_real_weights(get_backbone, stamps, name) -> None:
    b = get_backbone(name)
    methods = ["Grad-CAM", "HiResCAM", "EigenCAM", RANDOM, "Prototype map A"] + ([ROLLOUT] if b.spec.has_attention else [])
    settings = ReportSettings(limit=1, deletion_steps=4, road_percentiles=(50,))
    card = saliency_report(b, stamps.records, methods=methods, settings=settings)
    _assert_same_scores(card.scores, _per_step_card(b, stamps.records, methods, settings), BATCH_TOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vits14_saliency", "mobilenetv2", "efficientnet_lite0"])
def test_every_method_gets_every_score_on_the_builtin_backbones(get_backbone, stamps, name) -> None:
    b = get_backbone(name)
    card = saliency_report(b, stamps.records, settings=ReportSettings(limit=1, deletion_steps=4, road_percentiles=(50,)))
    assert set(card.scores) == {m.name for m in available_methods(b.spec)} and not card.skipped
    for row in card.rows():
        for m in METRICS:  # a value, or the reason why not: never a silent blank
            assert math.isfinite(row[f"{m}_mean"]) or m in row["reasons"], (row["method"], m)
        if row["family"] == "cam":  # the ViT explains its nearest class prototype: every CAM row is filled
            # (ROAD is undefined where a map ties more than a percentile's share of its pixels: then a reason)
            filled = [m for m in METRICS if m not in ("mprt_spearman", "road")]
            assert all(math.isfinite(row[f"{m}_mean"]) for m in filled), {m: row[f"{m}_mean"] for m in METRICS}
            assert math.isfinite(row["road_mean"]) or "keeps no pixel" in row["reasons"]["road"]
