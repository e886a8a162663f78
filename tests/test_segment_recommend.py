"""core.segment.recommend: the foreground recommended for one picture (agreement between methods) and the
co-segmentation foreground by the same rule; real weights on the bundled scenes."""
from __future__ import annotations

import numpy as np
import pytest

from core.segment.recommend import (
    MAX_COVER,
    MIN_COVER,
    choose_foreground,
    cosegment_foreground,
    recommend_foreground,
)
from tests.conftest import scene


def _box(h, w, r0, r1, c0, c1):
    m = np.zeros((h, w), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_the_mask_that_agrees_best_with_the_others_is_recommended():
    masks = {"pca": _box(10, 10, 2, 8, 2, 8), "cls_attention": _box(10, 10, 3, 8, 3, 8),
             "ncut": _box(10, 10, 0, 2, 0, 2), "boundary": _box(10, 10, 2, 7, 2, 8)}
    ch = recommend_foreground(masks)
    want = {m: np.mean([_iou(masks[m], masks[o]) for o in masks if o != m]) for m in masks}  # written out
    assert ch.agreement == pytest.approx(want)
    assert ch.method == max(want, key=want.get) == "pca" and ch.mask is ch.masks["pca"]
    assert ch.sentence.startswith("Recommended: first principal component (36% of the picture), the mask that agrees best")
    # empty and whole-picture masks take no part and are named
    masks["ncut"] = np.zeros((10, 10), bool)
    masks["boundary"] = np.ones((10, 10), bool)
    ch = recommend_foreground(masks)
    assert set(ch.agreement) == {"pca", "cls_attention"} and ch.method == "pca"  # a tie goes to the earlier method
    assert "left out: normalized cut (0% of the picture), boundary prior (100% of the picture)" in ch.sentence
    lone = recommend_foreground({"pca": np.ones((4, 4), bool), "ncut": _box(4, 4, 1, 3, 1, 3)})
    assert lone.method == "ncut" and "the only mask" in lone.sentence
    none = recommend_foreground({"pca": np.ones((4, 4), bool), "ncut": np.zeros((4, 4), bool)})
    assert none.method is None and not none.mask.any() and none.sentence.startswith("No method finds a foreground")
    assert (MIN_COVER, MAX_COVER) == (0.02, 0.95)
    with pytest.raises(ValueError, match="one \\[h, w\\] grid"):
        recommend_foreground({"pca": np.ones((4, 4), bool), "ncut": np.ones((5, 4), bool)})


def test_choose_foreground_on_tokens_with_an_object():
    rng = np.random.default_rng(0)
    obj = _box(12, 12, 3, 9, 4, 10)
    fg_dir, bg_dir = rng.normal(size=16), rng.normal(size=16)
    tokens = np.where(obj[..., None], fg_dir, bg_dir) + 0.3 * rng.normal(size=(12, 12, 16))  # [12, 12, 16]
    att = obj * 1.0 + 0.01
    ch = choose_foreground(tokens, att)
    assert list(ch.masks) == ["pca", "cls_attention", "ncut", "boundary"] and set(ch.scores) == set(ch.masks)
    assert _iou(ch.mask, obj) > 0.9
    assert list(choose_foreground(tokens).masks) == ["pca", "ncut", "boundary"]  # a CNN: no attention


def test_cosegment_draws_only_what_is_foreground_in_each_picture():
    # two white-background stamps and a photo: cluster 0 = objects, 1 = white, 2 = fur-and-carpet of the photo,
    # which is also the texture of the birds (foreground there) but the photo's background
    a = np.array([[1, 1, 1, 1], [1, 0, 2, 1], [1, 2, 0, 1], [1, 1, 1, 1]])
    b = a.copy()
    photo = np.array([[2, 2, 2, 2], [2, 0, 0, 2], [2, 0, 0, 2], [2, 2, 2, 2]])
    masks = [a != 1, b != 1, photo == 0]
    fg = cosegment_foreground([a, b, photo], masks)
    assert fg.common == {0, 2}
    assert fg.per_image == (frozenset({0, 2}), frozenset({0, 2}), frozenset({0}))
    assert np.array_equal(fg.masks[2], photo == 0)
    with pytest.raises(ValueError, match="same \\[h, w\\]"):
        cosegment_foreground([a], [np.ones((3, 3), bool)])


# ---- real weights ---------------------------------------------------------------------------------------
# Measured with vits14_saliency at 224 px (last block, CLS attention = the last block's head mean):
#   cat        PCA 64 %, attention 39 %, normalized cut 3 %, boundary 31 %  -> PCA (mean IoU 0.31)
#   astronaut  PCA 59 %, attention 25 %, normalized cut 12 %, boundary 6 % -> normalized cut (0.34)
#   coffee     PCA 52 %, attention 21 %, normalized cut 30 %, boundary 42 % -> boundary prior (0.63)
#   rocket     PCA 52 %, attention 18 %, normalized cut 23 %, boundary 6 % -> normalized cut (0.22)
# On the quality bench (core.segment.quality, all 48 stamps, 224 px) "recommended" scores a mean IoU of 0.454 on
# scene crops (PCA 0.313, attention 0.312, normalized cut 0.376, boundary prior 0.547, best of the four per
# picture 0.58) and 0.719 on plain textures (0.622 / 0.493 / 0.712 / 0.699; best of four 0.732).
SCENE_PICKS = {"cat.jpg": "pca", "astronaut.jpg": "ncut", "coffee.jpg": "boundary", "rocket.jpg": "ncut"}


def _tokens_and_attention(b, images, size=224):
    from core.explain.attention import cls_rows_to_maps

    out = b.extract(b.preprocess(images, size), -1, want=("patch_tokens", "attention_cls"))
    grid = b.spec.grid(size)
    att = [cls_rows_to_maps(out["attention_cls"][j, -1].float().numpy().mean(0), grid) for j in range(len(images))]
    return out["patch_tokens"].float().numpy(), att


@pytest.mark.slow
def test_recommendations_on_the_scenes(get_backbone):
    b = get_backbone("vits14_saliency")
    names = sorted(SCENE_PICKS)
    toks, atts = _tokens_and_attention(b, [scene(n) for n in names])
    for n, t, a in zip(names, toks, atts):
        ch = choose_foreground(t, a)
        print(n, {m: round(c, 2) for m, c in ch.cover.items()}, ch.sentence)
        assert ch.method == SCENE_PICKS[n], ch.sentence
    cat = choose_foreground(toks[names.index("cat.jpg")], atts[names.index("cat.jpg")])
    assert 0.55 < cat.cover["pca"] < 0.75 and cat.cover["ncut"] < 0.05  # the 64 % and 3 %


@pytest.mark.slow
def test_cosegmentation_keeps_the_cat_photos_background_out(get_backbone, stamps):
    """The page's default group: the cat and the first three stamps (birds), k = 5."""
    from core.segment.clustering import common_foreground, cosegment
    from core.segment.foreground import pca_foreground

    b = get_backbone("vits14_saliency")
    group = [scene("cat.jpg")] + [r.decode() for r in stamps.records[:3]]
    toks, atts = _tokens_and_attention(b, group)
    labels = cosegment(list(toks), 5)
    chosen = [choose_foreground(t, a) for t, a in zip(toks, atts)]
    cat_fg = chosen[0].mask
    # before: one PCA over all four pictures, every common cluster drawn in every picture
    ref = np.concatenate([t.reshape(-1, t.shape[-1]) for t in toks])
    old = np.isin(labels[0], list(common_foreground(labels, [pca_foreground(t, ref)[0] for t in toks])))
    new = cosegment_foreground(labels, [c.mask for c in chosen])
    outside_old = (old & ~cat_fg).sum() / old.sum()
    outside_new = (new.masks[0] & ~cat_fg).sum() / max(new.masks[0].sum(), 1)
    print(f"cat photo: old co-foreground {old.mean():.0%} of the picture, {outside_old:.0%} outside its own mask; "
          f"new {new.masks[0].mean():.0%}, {outside_new:.0%} outside")
    assert outside_old > 0.3 and outside_new == 0.0 and new.masks[0].mean() > 0.4
    for n in range(1, 4):  # the birds keep their common foreground
        assert _iou(new.masks[n], chosen[n].mask) > 0.5
