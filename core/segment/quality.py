"""Segmentation quality on real ground truth: stamps composited onto real backgrounds.

The bundled stamps (``sample_data/stamps/<class>/*.png``) are photos with an alpha channel that is the
object mask. Each stamp is pasted (soft alpha) onto a random crop of a bundled scene photo
(``sample_data/scenes/*.jpg``), so the ground-truth mask is known exactly, and unsupervised masks from
a backbone are scored by IoU against it at pixel resolution:

* ``pca``: first principal component of the patch tokens, ``score > 0`` (:func:`core.segment.foreground.pca_foreground`);
* ``cls_attention``: the head-mean CLS attention of the last block, the patches holding 60 % of the
  mass (:func:`core.segment.foreground.attention_foreground`; ViTs only);
* ``ncut``: normalized cut of the patch affinity graph, TokenCut's choices (:func:`core.segment.foreground.ncut_foreground`);
* ``boundary``: the boundary prior, the patches least similar to anything on the picture's border, Otsu's
  cut, the largest component (:func:`core.segment.foreground.boundary_foreground`);
* ``click``: a click on the object (the pixel deepest inside the mask), the cosine similarity of that
  patch to all patches, thresholded (Otsu's threshold, or a fixed one; :func:`core.segment.click.click_mask`);
* ``click_border``: the same click, the patches more similar to it than to every border patch, the
  component holding the click (``click_mask(..., rule="border")``);
* ``recommended``: the automatic mask (of ``pca``, ``cls_attention``, ``ncut``, ``boundary``) that agrees best with
  the others, as recommended to a user without ground truth (:func:`core.segment.recommend.recommend_foreground`);
* ``oracle``: the ground truth itself at patch resolution (majority per patch): the ceiling any patch
  mask can reach at that grid;
* ``full``: the whole picture as the mask (IoU = object area fraction): the floor;
* ``<method>+gf``: each patch mask above (the oracle included) made pixel-sharp by the guided filter
  (:func:`core.segment.refine.refine_mask`), so the refined IoU stands beside the patch-grid ceiling.

:func:`composite_stamps` pastes onto crops of real scenes (clutter, other objects); :func:`composite_on_textures`
onto plain textured backgrounds (the stamp is the only object).

Nothing here imports Streamlit.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt

from core.explain.attention import cls_rows_to_maps
from core.io.images import ImageRecord, decode_alpha, decode_image
from core.models.base import Backbone
from core.segment.click import click_mask
from core.segment.foreground import attention_foreground, boundary_foreground, ncut_foreground, pca_foreground
from core.segment.masks import iou, mask_to_image_size
from core.segment.recommend import ATTENTION_KEEP, recommend_foreground
from core.segment.refine import refine_mask
from core.segment.similarity import pixel_to_patch

METHODS = ("pca", "cls_attention", "ncut", "boundary", "recommended", "click", "click_border", "oracle", "full")
REFINED = ("pca", "cls_attention", "ncut", "boundary", "recommended", "click", "click_border", "oracle")  # also "+gf"
AUTOMATIC = ("pca", "cls_attention", "ncut", "boundary", "recommended")  # no click
GF = "+gf"


# ---- ground truth helpers -----------------------------------------------------------------------
def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` of the pixel deepest inside a boolean ``[H, W]`` mask (where a user would click)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        raise ValueError("the mask is empty: nothing to click on")
    d = distance_transform_edt(m)  # [H, W] distance to the background
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(x) + 0.5, float(y) + 0.5


def patch_majority(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A pixel mask ``[H, W]`` reduced to ``[h, w]``: a patch is on when most of its pixels are."""
    m = np.asarray(mask, dtype=np.float64)
    H, W = m.shape
    h, w = grid
    rows = np.minimum((np.arange(H) * h) // H, h - 1)  # [H] patch row of each pixel row
    cols = np.minimum((np.arange(W) * w) // W, w - 1)
    tot = np.zeros((h, w))
    cnt = np.zeros((h, w))
    np.add.at(tot, (rows[:, None], cols[None, :]), m)
    np.add.at(cnt, (rows[:, None], cols[None, :]), 1.0)
    return tot / np.maximum(cnt, 1) >= 0.5


# ---- compositing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Composite:
    """A stamp pasted onto a background crop.

    Attributes:
        image: RGB picture ``canvas x canvas``.
        mask: ``[H, W]`` bool ground truth (stamp alpha >= 128 where it was pasted).
        name / label: the stamp's file name and class.
        scene: the background photo's file name.
    """

    image: Image.Image
    mask: np.ndarray
    name: str
    label: str
    scene: str


def _rgba(record: ImageRecord) -> Image.Image:
    data = record.read_bytes()
    decode_image(data, record.name)  # validates (raises ImageDecodeError with the name and reason)
    if decode_alpha(data, record.name) is None:
        raise ValueError(f"{record.name}: has no alpha channel, so it has no object mask to score against")
    return Image.open(io.BytesIO(data)).convert("RGBA")


def _paste(stamp: Image.Image, bg: Image.Image, rng: np.random.Generator, canvas: int,
           scale: tuple[float, float]) -> tuple[Image.Image, np.ndarray]:
    """Paste ``stamp`` (RGBA) onto ``bg`` (``canvas x canvas``): longer side a random fraction ``scale`` of
    the canvas, at a random position fully inside it. Returns the RGB picture and the ``[H, W]`` mask
    (alpha >= 128)."""
    f = float(rng.uniform(*scale)) * canvas / max(stamp.size)
    sw, sh = max(1, round(stamp.width * f)), max(1, round(stamp.height * f))
    st = stamp.resize((sw, sh), Image.Resampling.BICUBIC)
    px, py = int(rng.integers(0, canvas - sw + 1)), int(rng.integers(0, canvas - sh + 1))
    layer = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    layer.paste(st, (px, py))
    img = Image.alpha_composite(bg.convert("RGBA"), layer).convert("RGB")
    return img, np.asarray(layer.getchannel("A")) >= 128  # [H, W]


def composite_stamps(stamps: Sequence[ImageRecord], scene_paths: Sequence[Path], *, canvas: int = 320,
                     scale: tuple[float, float] = (0.45, 0.75), seed: int = 0) -> list[Composite]:
    """Paste every stamp onto a crop of a scene (scenes in turn), deterministically from ``seed``.

    The stamp is resized so its longer side is a random fraction ``scale`` of the canvas and placed at a
    random position fully inside it; the background is a random square crop (at least half the scene's
    shorter side) resized to ``canvas``. Both are real photos, so the backgrounds carry real clutter
    (the cat, cup, astronaut and rocket scenes have objects of their own).
    """
    if not scene_paths:
        raise ValueError("composite_stamps needs at least one scene photo")
    rng = np.random.default_rng(seed)
    scenes = [(p.name, decode_image(p.read_bytes(), p.name)) for p in scene_paths]
    out = []
    for n, rec in enumerate(stamps):
        stamp = _rgba(rec)
        sname, scene = scenes[n % len(scenes)]
        W, H = scene.size
        side = int(rng.integers(min(W, H) // 2, min(W, H) + 1))
        x0, y0 = int(rng.integers(0, W - side + 1)), int(rng.integers(0, H - side + 1))
        bg = scene.crop((x0, y0, x0 + side, y0 + side)).resize((canvas, canvas), Image.Resampling.BICUBIC)
        img, mask = _paste(stamp, bg, rng, canvas, scale)
        out.append(Composite(img, mask, rec.name, rec.label, sname))
    return out


def texture(rng: np.random.Generator, canvas: int) -> Image.Image:
    """A plain textured background with no object in it: one random colour modulated by fractal noise
    (power spectrum ``1/f^beta``, ``beta`` in [1.5, 3]: from grainy to cloudy) with a little chroma noise.

    Returns:
        RGB ``canvas x canvas``.
    """
    base = rng.uniform(0.15, 0.85, size=3)  # [3] RGB in [0, 1]
    fy = np.fft.fftfreq(canvas)[:, None]
    fx = np.fft.fftfreq(canvas)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    beta = float(rng.uniform(1.5, 3.0))

    def noise() -> np.ndarray:  # [canvas, canvas], zero mean, unit std
        spec = np.fft.fft2(rng.normal(size=(canvas, canvas))) / f ** (beta / 2)
        spec[0, 0] = 0.0
        n = np.fft.ifft2(spec).real
        return n / n.std()

    lum = noise()[..., None] * float(rng.uniform(0.06, 0.14))  # [canvas, canvas, 1] shared by the channels
    chroma = np.stack([noise() for _ in range(3)], -1) * 0.02  # [canvas, canvas, 3]
    rgb = np.clip(base + lum + chroma, 0.0, 1.0)
    return Image.fromarray((rgb * 255).round().astype(np.uint8), mode="RGB")


def composite_on_textures(stamps: Sequence[ImageRecord], *, canvas: int = 320, scale: tuple[float, float] = (0.45, 0.75),
                          seed: int = 0) -> list[Composite]:
    """Paste every stamp onto its own plain textured background (:func:`texture`): the easy benchmark,
    where nothing but the stamp is an object. Deterministic from ``seed``; ``scene`` is ``"texture"``."""
    rng = np.random.default_rng(seed)
    out = []
    for rec in stamps:
        stamp = _rgba(rec)
        img, mask = _paste(stamp, texture(rng, canvas), rng, canvas, scale)
        out.append(Composite(img, mask, rec.name, rec.label, "texture"))
    return out


# ---- evaluation ---------------------------------------------------------------------------------
@dataclass
class QualityReport:
    """Per-image IoUs of each method on one backbone / input size / block.

    Attributes:
        ious: ``method -> [n_images]`` for :data:`METHODS` and, when refined, ``method + GF`` for
            :data:`REFINED` (NaN where a method does not apply, e.g. attention on a CNN).
        grid: the patch grid.
    """

    backbone: str
    size: int
    layer: int
    grid: tuple[int, int]
    click_threshold: str
    ious: dict[str, np.ndarray]

    def mean(self, method: str) -> float:
        """Mean IoU of ``method`` (NaN when it does not apply to this backbone)."""
        v = self.ious[method]
        return float("nan") if np.all(np.isnan(v)) else float(np.nanmean(v))


def evaluate(b: Backbone, composites: Sequence[Composite], *, size: int | None = None, layer: int = -1,
             click_threshold: float | None = None, refine: bool = True, batch_size: int = 8,
             progress: Callable[[int, int], None] | None = None) -> QualityReport:
    """IoU of every method in :data:`METHODS` on ``composites`` (and of its guided-filter refinement).

    Args:
        b: the backbone.
        composites: from :func:`composite_stamps`.
        size: input side (None: the spec's).
        layer: block of the patch tokens used by every method but ``cls_attention`` (always the last block).
        click_threshold: fixed cosine threshold for ``click``; None uses Otsu's threshold per map
            (``click_border`` has no threshold).
        refine: also score the masks of :data:`REFINED` made pixel-sharp (``"<method>+gf"``).
        batch_size: images per forward pass.
        progress: called as ``progress(done, total)``.
    """
    size = b.spec.check_size(size or b.spec.input_size)
    grid = b.spec.grid(size)
    want = ("patch_tokens", "attention_cls") if b.spec.has_attention else ("patch_tokens",)
    names = list(METHODS) + ([m + GF for m in REFINED] if refine else [])
    ious = {m: np.full(len(composites), np.nan) for m in names}
    for s in range(0, len(composites), batch_size):
        batch = composites[s:s + batch_size]
        x = b.preprocess([c.image for c in batch], size)  # [B, 3, S, S]
        out = b.extract(x, layer, want=want)
        toks = out["patch_tokens"].float().numpy()  # [B, h, w, D]
        if toks.shape[1:3] != tuple(grid):
            raise ValueError(f"{b.spec.name}: tokens on a {toks.shape[1:3]} grid, spec says {grid} at {size} px")
        for j, c in enumerate(batch):
            n = s + j
            img_size = c.image.size  # (W, H)
            masks = {"pca": pca_foreground(toks[j])[1], "ncut": ncut_foreground(toks[j])[1],
                     "boundary": boundary_foreground(toks[j])[1]}  # bool [h, w] each
            if "attention_cls" in out:
                rows = out["attention_cls"][j, -1].float().numpy().mean(0)  # [h*w] head mean, last block
                masks["cls_attention"] = attention_foreground(cls_rows_to_maps(rows, grid), ATTENTION_KEEP)
            masks["recommended"] = recommend_foreground(dict(masks)).mask
            q = pixel_to_patch(interior_point(c.mask), img_size, grid)
            masks["click"] = click_mask(toks[j], q, click_threshold).mask
            masks["click_border"] = click_mask(toks[j], q, rule="border").mask
            masks["oracle"] = patch_majority(c.mask, grid)
            masks["full"] = np.ones(grid, dtype=bool)
            for m, pm in masks.items():
                ious[m][n] = iou(mask_to_image_size(pm, img_size), c.mask)
                if refine and m in REFINED:
                    ious[m + GF][n] = iou(refine_mask(c.image, pm), c.mask)
        if progress is not None:
            progress(min(s + batch_size, len(composites)), len(composites))
    thr = "Otsu" if click_threshold is None else f"{click_threshold:g}"
    return QualityReport(b.spec.name, size, b.resolve_layer(layer), grid, thr, ious)
