"""Why neighbours (core.relate): a pair's cosine split into patch-pair terms.

Exact decompositions are checked against the backbone's own embeddings and the formula written out in
numpy; the CLS-stream attribution against an autograd reference (the same rules, computed by
differentiating a re-run instead of propagating rows); the deletion check on real ViT weights.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import main
from core.errors import UnsupportedOperationError
from core.relate import explain_pair, top_links, why_neighbours
from core.relate.figure import LINK, why_figure
from tests.conftest import STAMPS, tiny_timm_backbone

BIRDS = ("birds/crow.png", "birds/blackbird.png")
BIRD_MAMMAL = ("birds/crow.png", "bovines/bull.png")


def _images(pair):
    from core.io.images import decode_image

    return [decode_image((STAMPS / p).read_bytes(), p) for p in pair]


def _own_cosine(backbone, images, size=None, layer=None) -> float:
    with torch.inference_mode():
        e = backbone.embed(backbone.preprocess(images, size), layer).double()
    e = torch.nn.functional.normalize(e, dim=-1)
    return float(e[0] @ e[1])


def _reference_pair_matrix(backbone, images, block, size=None) -> np.ndarray:
    """sum_ij <f_i, g_j> / (N M |mean f| |mean g|), written out from the patch tokens."""
    with torch.inference_mode():
        t = backbone.patch_tokens(backbone.preprocess(images, size), block).double().numpy()  # [2, h, w, D]
    f, g = t[0].reshape(-1, t.shape[-1]), t[1].reshape(-1, t.shape[-1])
    return (f @ g.T) / (len(f) * len(g) * np.linalg.norm(f.mean(0)) * np.linalg.norm(g.mean(0)))


def _check_exact(backbone, images, size=None):
    r = why_neighbours(backbone, *images, size=size)
    assert r.exact and r.method == "mean_pool"
    cos = _own_cosine(backbone, images, size)
    assert abs(r.cosine - cos) < 1e-9
    assert abs(r.terms.matrix.sum() - cos) < 1e-5
    assert abs(r.terms.share_a.sum() - cos) < 1e-5 and abs(r.terms.share_b.sum() - cos) < 1e-5
    assert abs(r.terms.unattributed) < 1e-12
    np.testing.assert_allclose(r.terms.matrix, _reference_pair_matrix(backbone, images, r.block, size), rtol=1e-9, atol=1e-12)
    return r


# ---- fast: tiny random timm models -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_mean_vit():
    return tiny_timm_backbone("vit_tiny_patch16_224", "tiny_mean_vit", depth=2, img_size=64, global_pool="avg", fc_norm=False,
                              dynamic_img_size=True)


@pytest.fixture(scope="module")
def tiny_cls_vit():
    return tiny_timm_backbone("vit_tiny_patch16_224", "tiny_cls_vit", depth=3, img_size=64, embed_dim=48, num_heads=3)


def test_mean_pooled_tiny_vit_is_exact(tiny_mean_vit):
    r = _check_exact(tiny_mean_vit, _images(BIRDS))
    assert r.grids == ((4, 4), (4, 4))


def test_tiny_cnn_stage_embedding_is_exact():
    """A CNN block before the last: the embedding is the stage map's mean, decomposed exactly too."""
    bb = tiny_timm_backbone("resnet10t", "tiny_resnet")
    images = _images(BIRD_MAMMAL)
    r = why_neighbours(bb, *images, size=64, layer=2)
    assert r.exact and abs(r.terms.share_a.sum() - _own_cosine(bb, images, 64, 2)) < 1e-5


def test_links_are_the_top_of_the_pair_matrix(tiny_mean_vit):
    r = why_neighbours(tiny_mean_vit, *_images(BIRD_MAMMAL), top_k=7)
    m = r.terms.matrix
    order = np.argsort(-m.ravel(), kind="stable")[:7]
    w = r.terms.share_b.shape[1]
    want = [(divmod(int(k) // m.shape[1], r.terms.share_a.shape[1]), divmod(int(k) % m.shape[1], w)) for k in order]
    assert [(lk.a, lk.b) for lk in r.links] == want
    assert [lk.contribution for lk in r.links] == pytest.approx(m.ravel()[order].tolist())


def _autograd_reference(backbone, x, block) -> np.ndarray:
    """The CLS-stream contributions by autograd: every token t's value read by the CLS query at block l is
    scaled by s[l, t]; with attention weights, LayerNorm stds, MLP gates and the final norm held, the unit
    embedding is linear in s, so patch t's vector is sum_l du/ds[l, t] (one backward per embedding dim)."""
    m = backbone.model
    with torch.no_grad():
        x0 = m.norm_pre(m._pos_embed(m.patch_embed(x)))  # [1, T, C]
        acts, t = [], x0
        for b in list(m.blocks)[: block + 1]:  # the tokens entering each block, the real forward
            acts.append(t)
            t = b(t)
        own = m.norm(t)[0, 0]
    P, T = m.num_prefix_tokens, x0.shape[1]

    def held_ln(v, ln):
        mu, sd = v.mean(-1, keepdim=True), torch.sqrt(v.detach().var(-1, unbiased=False, keepdim=True) + ln.eps)
        return (v - mu) / sd * ln.weight + ln.bias

    def unit_embedding(s):  # s [L, T]
        cls = x0[0, 0]
        for layer, b in enumerate(list(m.blocks)[: block + 1]):
            a, C = b.attn, cls.shape[-1]
            toks = acts[layer][0].clone()
            toks[0] = cls
            h = held_ln(toks, b.norm1)  # the other tokens' rows are constants: only the CLS row carries s
            q, k = (torch.nn.functional.linear(h, a.qkv.weight[i * C:(i + 1) * C], a.qkv.bias[i * C:(i + 1) * C])
                    for i in (0, 1))
            hd = C // a.num_heads
            att = (q.view(T, a.num_heads, hd).transpose(0, 1) * a.scale
                   @ k.view(T, a.num_heads, hd).permute(1, 2, 0)).softmax(-1).detach()[:, 0]  # [H, T]
            v = torch.nn.functional.linear(h, a.qkv.weight[2 * C:])  # [T, C], no bias
            v = v * torch.cat([torch.ones(1), s[layer, 1:]])[:, None]  # token t's read scaled by s[l, t]
            read = (att.repeat_interleave(hd, 0).T * v).sum(0) + a.qkv.bias[2 * C:]
            cls = cls + b.ls1.gamma * torch.nn.functional.linear(read, a.proj.weight, a.proj.bias)
            z = torch.nn.functional.linear(held_ln(cls, b.norm2), b.mlp.fc1.weight, b.mlp.fc1.bias)
            gate = (b.mlp.act(z) / z).detach()
            cls = cls + b.ls2.gamma * torch.nn.functional.linear(z * gate, b.mlp.fc2.weight, b.mlp.fc2.bias)
        return held_ln(cls, m.norm) / own.norm()

    s = torch.ones(block + 1, T)
    jac = torch.autograd.functional.jacobian(unit_embedding, s)  # [D, L, T]
    return jac.sum(1)[:, P:].T.double().numpy()  # [N, D]


def test_cls_stream_matches_an_autograd_reference():
    from timm.layers import LayerScale

    from core.relate.cls_stream import cls_stream_contributions

    bb = tiny_timm_backbone("vit_tiny_patch16_224", "tiny_ls_vit", depth=3, img_size=64, embed_dim=48, num_heads=3,
                            init_values=1.0)  # LayerScale, as in DINOv2
    for blk in bb.model.blocks:
        for ls in (blk.ls1, blk.ls2):
            assert isinstance(ls, LayerScale)
            ls.gamma.data.uniform_(0.1, 1.0)
    x = bb.preprocess(_images(BIRDS)[:1])
    with torch.inference_mode():
        emb = bb.embed(x)
    (c,) = cls_stream_contributions(bb, x, 2, emb)
    ref = _autograd_reference(bb, x, 2)
    np.testing.assert_allclose(c.flat, ref, atol=1e-5)
    unit = torch.nn.functional.normalize(emb.double(), dim=-1)[0].numpy()
    np.testing.assert_allclose(c.embedding, unit, atol=1e-5)  # rows + rest = the unit embedding


def test_cls_vit_is_attributed_and_sums_to_the_cosine(tiny_cls_vit):
    images = _images(BIRD_MAMMAL)
    r = why_neighbours(tiny_cls_vit, *images)
    assert not r.exact and r.method == "bilrp_cls" and "Eberle" in r.reference
    assert abs(r.terms.total - r.cosine) < 1e-5  # patch pairs + the rest-vector terms
    assert r.terms.share_a.sum() == pytest.approx(r.terms.attributed) == pytest.approx(r.terms.share_b.sum())
    assert abs(r.cosine - _own_cosine(tiny_cls_vit, images)) < 1e-9


def test_an_embedding_no_method_covers_raises():
    bb = tiny_timm_backbone("vit_tiny_patch16_224", "tiny_fcnorm_vit", depth=1, img_size=32, global_pool="avg")
    with pytest.raises(UnsupportedOperationError, match="not the mean"):  # a LayerNorm after the mean pool
        why_neighbours(bb, *_images(BIRDS))


def test_figure_and_cached_explain_pair(tiny_mean_vit, stamps):
    recs = {r.name: r for r in stamps.records}
    a, b = recs[BIRDS[0]], recs[BIRDS[1]]
    first = explain_pair(tiny_mean_vit, a, b, check=False)
    assert explain_pair(tiny_mean_vit, a, b, check=False) is first  # memoised by (weights, shas, size, layer)
    assert explain_pair(tiny_mean_vit, a, b, size=32, check=False) is not first
    fig = first.figure
    assert isinstance(fig, Image.Image) and fig.width > 2 * 300
    px = np.asarray(fig).reshape(-1, 3)
    assert (np.abs(px.astype(int) - LINK).sum(1) < 30).sum() > 100  # the links are drawn
    direct = why_figure(a.decode(), b.decode(), first.result)
    assert direct.size == fig.size


def test_explain_pair_reuses_the_decomposition_for_another_top_k(tiny_mean_vit, stamps, monkeypatch):
    """Another top_k (the page's slider) re-reads the links from the memoised pair matrix: no forward pass."""
    from core.relate import why as W

    recs = {r.name: r for r in stamps.records}
    a, b = recs[BIRD_MAMMAL[0]], recs[BIRD_MAMMAL[1]]
    first = explain_pair(tiny_mean_vit, a, b, top_k=10, check=False)
    calls = []
    monkeypatch.setattr(W, "why_neighbours", lambda *args, **kw: calls.append(1))
    three = explain_pair(tiny_mean_vit, a, b, top_k=3, check=False)
    big = explain_pair(tiny_mean_vit, a, b, top_k=3, check=False, max_side=200)
    assert not calls and three.result.terms is first.result.terms
    assert three.result.links == first.result.links[:3] == tuple(top_links(first.result.terms, 3))
    assert max(big.figure.size) < max(three.figure.size) and explain_pair(tiny_mean_vit, a, b, top_k=3, check=False) is three


def test_deletion_check_shape(tiny_mean_vit):
    r = why_neighbours(tiny_mean_vit, *_images(BIRDS), check=True, check_pairs=5, draws=3)
    c = r.check
    assert c is not None and len(c.random_drops) == 3 and c.links == 5
    assert 1 <= c.patches_a <= 5 and 1 <= c.patches_b <= 5
    assert c.cosine == pytest.approx(r.cosine, abs=1e-6)
    assert c.passed == (c.top_drop > np.mean(c.random_drops))


# ---- the command --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "vit_tiny.safetensors"
    save_file(timm.create_model("vit_tiny_patch16_224").state_dict(), str(path))
    return path


def test_cli_json(tiny_checkpoint, capsys, tmp_path):
    fig = tmp_path / "why.png"
    code = main(["why-neighbours", "--backbone", f"timm/vit_tiny_patch16_224@{tiny_checkpoint}", "--size", "64",
                 "--image", str(STAMPS / BIRDS[0]), "--image", str(STAMPS / BIRDS[1]), "--json", "--figure", str(fig)])
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert {"cosine", "exact", "patch_share_a", "patch_share_b", "links", "method", "reference"} <= set(d)
    assert d["exact"] is False and d["method"] == "bilrp_cls"
    assert np.asarray(d["patch_share_a"]).shape == (4, 4) == np.asarray(d["patch_share_b"]).shape
    assert np.sum(d["patch_share_a"]) == pytest.approx(d["attributed"])
    assert d["attributed"] + d["unattributed"] == pytest.approx(d["cosine"], abs=1e-5)
    assert len(d["links"]) == 10 and set(d["links"][0]) == {"a", "b", "contribution"}
    assert Image.open(fig).size[0] > 600


@pytest.mark.parametrize("args, message", [
    (["--image", "{a}"], "exactly two images"),
    (["--image", "{a}", "--image", "{missing}"], "no such file"),
    (["--image", "{a}", "--image", "{text}"], "not an image"),
    (["--image", "{a}", "--image", "{a}", "--image", "{a}"], "exactly two images"),
    (["--image", "{a}", "--image", "{folder}"], "folder"),
    (["--image", "{a}", "--image", "{a}", "--figure", "{text}"], ".png"),
])
def test_cli_bad_input_one_line_exit_2(args, message, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    fill = {"a": str(STAMPS / BIRDS[0]), "missing": str(tmp_path / "nope.png"), "text": str(text), "folder": str(tmp_path)}
    code = main(["why-neighbours", "--backbone", "mobilenetv2", *[a.format(**fill) for a in args]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err


# ---- real weights ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet_lite0"])
@pytest.mark.parametrize("pair", [BIRDS, BIRD_MAMMAL])
def test_cnns_are_exact(get_backbone, name, pair):
    r = _check_exact(get_backbone(name), _images(pair))
    assert r.grids == ((7, 7), (7, 7))


@pytest.mark.slow
def test_cnn_exact_at_448(get_backbone):
    r = _check_exact(get_backbone("mobilenetv2"), _images(BIRD_MAMMAL), size=448)
    assert r.grids == ((14, 14), (14, 14))


@pytest.mark.slow
def test_vit_cls_attribution_sums_to_its_cosine(get_backbone):
    bb = get_backbone("vits14_saliency")
    images = _images(BIRDS)
    r = why_neighbours(bb, *images)
    assert not r.exact and r.block == 10 and r.grids == ((16, 16), (16, 16))
    assert abs(r.terms.total - _own_cosine(bb, images)) < 1e-5
    assert 0.3 < r.terms.attributed / r.cosine < 1.0  # most of it, not all: the CLS start value and biases


# Nearest-neighbour pairs of the stamps under vits14_saliency (block-10 CLS, 224 px), drawn at random once.
VIT_NEIGHBOURS = [
    ("tools/plyers.png", "flowers/anthoorium.png"), ("flowers/anemone_red.png", "flowers/adeenia.png"),
    ("birds/albino_peahen.png", "birds/crowned_crane.png"), ("vegetables/corn.png", "fruit/Apricot_whole.png"),
    ("tools/mallet_metal.png", "tools/hammer.png"), ("bovines/bison.png", "bovines/bull.png"),
    ("insects/bee.png", "fish/lionfish.png"), ("flowers/appooppanthady.png", "flowers/chemparathi.png"),
]


@pytest.mark.slow
def test_vit_deletion_check_top_pairs_drop_more_than_random(get_backbone):
    """Blurring the top-30 pairs' patches in both images lowers the ViT's cosine more than blurring as many
    random patches: on average over eight neighbour pairs, and in most of them (measured: 7 of 8)."""
    bb = get_backbone("vits14_saliency")
    checks = [why_neighbours(bb, *_images(p), check=True).check for p in VIT_NEIGHBOURS]
    top = np.array([c.top_drop for c in checks])
    rnd = np.array([c.random_drop for c in checks])
    assert top.mean() > rnd.mean() + 0.003
    assert (top > rnd).sum() >= 6
