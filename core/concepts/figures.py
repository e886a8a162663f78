"""The concept atlas and per-image concept maps as PIL figures (no Streamlit).

- :func:`atlas_figure`: one row per concept: its number, name, top classes and mean coefficient,
  then a strip of its most typical patches cropped from the dataset's pictures with some context,
  the patch itself outlined in the concept's colour and the picture's class written under each crop.
- :func:`concept_map_figure`: a picture beside the same picture with each patch painted in the
  colour of its concept (stronger where its coefficient is larger) and a legend of the concepts
  present, largest area first.

Colours are :func:`core.render.palette` of ``k``: concept ``j`` has the same colour in both figures.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.concepts.atlas import ConceptAtlas
from core.io.images import decode_image
from core.render import fit, font, palette, plain, stack

_BG = (255, 255, 255)
_FG = (20, 20, 20)
_GREY = (110, 110, 110)
CROPS = 8        # crops per concept row
CROP_PX = 120    # side of a crop tile
CONTEXT = 0.3    # a crop spans this share of the picture's grid (at least 3 patches), centred on the patch
LABEL_W = 230    # width of the text column of a row


def _loader(atlas: ConceptAtlas) -> Callable[[int], Image.Image]:
    @functools.lru_cache(maxsize=64)
    def load(i: int) -> Image.Image:
        path = atlas.image_paths[i]
        if path is None:
            raise ValueError(f"{atlas.image_names[i]} was an upload: pass images= to draw it")
        return decode_image(Path(path).read_bytes(), atlas.image_names[i]).convert("RGB")

    return load


def patch_crop(image: Image.Image, patch: tuple[int, int], grid: tuple[int, int], *, side: int = CROP_PX,
               context: float = CONTEXT, colour: tuple[int, int, int] = (255, 0, 0)) -> Image.Image:
    """A square tile of ``side`` px: the region around patch ``(row, col)`` of a ``grid = (h, w)`` laid over
    the picture (``context`` of the grid, at least 3 patches, kept inside the picture), aspect kept on a
    white tile, the patch outlined in ``colour``."""
    W, H = image.size
    h, w = grid
    r, c = patch
    cw, ch = W / w, H / h  # a patch's size in picture pixels
    span_x = min(w, max(3, round(context * w)))
    span_y = min(h, max(3, round(context * h)))
    x0 = min(max(c - span_x // 2, 0), w - span_x)  # window in patches, shifted inside the grid
    y0 = min(max(r - span_y // 2, 0), h - span_y)
    box = (round(x0 * cw), round(y0 * ch), round((x0 + span_x) * cw), round((y0 + span_y) * ch))
    crop = image.crop(box)
    s = side / max(crop.width, crop.height)
    crop = crop.resize((max(1, round(crop.width * s)), max(1, round(crop.height * s))), Image.Resampling.BICUBIC)
    tile = Image.new("RGB", (side, side), _BG)
    ox, oy = (side - crop.width) // 2, (side - crop.height) // 2
    tile.paste(crop, (ox, oy))
    d = ImageDraw.Draw(tile)
    px0, py0 = ox + (c - x0) * cw * s, oy + (r - y0) * ch * s
    rect = [px0, py0, px0 + cw * s - 1, py0 + ch * s - 1]
    d.rectangle(rect, outline=(0, 0, 0), width=4)
    d.rectangle(rect, outline=colour, width=2)
    return tile


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    return int(c[0]), int(c[1]), int(c[2])


def _wrap(text: str, width: int, size: int) -> list[str]:
    f = font(size)
    lines, line = [], ""
    for word in plain(text).split():
        trial = f"{line} {word}".strip()
        if f.getbbox(trial)[2] <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def _label_cell(atlas: ConceptAtlas, j: int, colour, height: int) -> Image.Image:
    cell = Image.new("RGB", (LABEL_W, height), _BG)
    d = ImageDraw.Draw(cell)
    d.rectangle([0, 4, 10, height - 4], fill=tuple(int(v) for v in colour))
    y = 4
    for line in _wrap(atlas.label(j), LABEL_W - 18, 18)[:2]:
        d.text((16, y), line, fill=_FG, font=font(18))
        y += 22
    if atlas.table is not None:
        tops = atlas.table.top_classes(j, 3)
        text = "top classes: " + (", ".join(f"{c} {v:+.2f}" for c, v in tops) if tops else "none")
    else:
        text = "top classes: no labels"
    for line in _wrap(text, LABEL_W - 18, 13)[:3]:
        d.text((16, y), line, fill=_GREY, font=font(13))
        y += 16
    d.text((16, y), plain(f"main concept of {100 * atlas.patch_share(j):.0f}% of patches"), fill=_GREY, font=font(13))
    return cell


def atlas_figure(atlas: ConceptAtlas, *, concepts: Sequence[int] | None = None, crops: int = CROPS,
                 crop_px: int = CROP_PX, images: Callable[[int], Image.Image] | None = None,
                 title: str | None = None) -> Image.Image:
    """The concept atlas: one labelled row of typical-patch crops per concept (module docstring).

    Args:
        atlas: the concepts.
        concepts: which rows, in order (default all).
        crops: crops per row (at most the typical patches kept, :data:`core.concepts.apply.TOP_PATCHES`).
        crop_px: side of a crop.
        images: ``images(i)`` -> picture ``i`` of the atlas (default: decoded from ``atlas.image_paths``).
        title: the header line (default: backbone, block, method, k and the fidelity figures).
    """
    load = images or _loader(atlas)
    cols = palette(atlas.k)
    rows = []
    caption = 15
    for j in (range(atlas.k) if concepts is None else concepts):
        t = atlas.codes.top
        tiles = []
        for n in range(min(crops, t.image.shape[1])):
            i = int(t.image[j, n])
            if i < 0:
                break
            tile = patch_crop(load(i), (int(t.row[j, n]), int(t.col[j, n])), atlas.grid, side=crop_px,
                              colour=_rgb(cols[j]))
            cap = Image.new("RGB", (crop_px, crop_px + caption), _BG)
            cap.paste(tile, (0, 0))
            lab = str(atlas.labels[i]) if str(atlas.labels[i]) else Path(atlas.image_names[i]).stem
            ImageDraw.Draw(cap).text((crop_px // 2, crop_px + 1), plain(lab)[:18], fill=_GREY, font=font(12), anchor="ma")
            tiles.append(cap)
        height = crop_px + caption
        line = Image.new("RGB", (LABEL_W + crops * (crop_px + 4), height), _BG)
        line.paste(_label_cell(atlas, j, cols[j], height), (0, 0))
        for n, tile in enumerate(tiles):
            line.paste(tile, (LABEL_W + n * (crop_px + 4), 0))
        if not tiles:
            ImageDraw.Draw(line).text((LABEL_W, height // 2), "no patch has this concept", fill=_GREY, font=font(14), anchor="lm")
        rows.append(line)
    head = _header(atlas, rows[0].width if rows else 600, title)
    return stack([head, *rows], gap=8)


def _header(atlas: ConceptAtlas, width: int, title: str | None) -> Image.Image:
    if title is None:
        title = f"Concept atlas: {atlas.backbone}, block {atlas.layer}, {atlas.basis.method}, k = {atlas.k}, {atlas.stats.n_images} images"
    lines = [title, f"variance of the pooled features reconstructed by the concepts: {100 * atlas.variance_explained:.0f}%"]
    if atlas.deletion is not None:
        drop = atlas.deletion.summary()
        acc = drop["nmc_accuracy"]
        lines[-1] += (f"; NMC accuracy {100 * acc:.0f}%, with each class's top concept deleted "
                      f"{100 * (acc - drop['mean_drop_top']):.0f}%, with another deleted {100 * (acc - drop['mean_drop_random']):.0f}%")
        if not atlas.exact and atlas.embedding_accuracy is not None:
            lines[-1] += (f" (an NMC on the mean-pooled patch tokens: the embedding is not a sum over patches; "
                          f"the embedding's own NMC: {100 * atlas.embedding_accuracy:.0f}%)")
    lines.append("crops: each concept's most typical patch (outlined) in different pictures, with context, the picture's class below; "
                 "top classes: the concept's term in the class's mean cosine NMC score to its prototype")
    body = [line for text in lines[1:] for line in _wrap(text, width, 14)]
    out = Image.new("RGB", (width, 26 + 18 * len(body)), _BG)
    d = ImageDraw.Draw(out)
    d.text((0, 0), plain(lines[0]), fill=_FG, font=font(19))
    for n, line in enumerate(body):
        d.text((0, 26 + 18 * n), line, fill=_GREY, font=font(14))
    return out


def concept_map_figure(image: Image.Image, labels: np.ndarray, coef: np.ndarray, names: Sequence[str], *,
                       max_side: int = 384, title: str = "") -> Image.Image:
    """The picture beside its concept map: each patch painted in its concept's colour, more opaque where
    its coefficient is larger; a legend of the concepts present (largest area first, with their share).

    Args:
        image: the picture.
        labels: ``[h, w]`` concept of each patch (-1: none).
        coef: ``[h, w]`` its coefficient.
        names: the label of every concept (``k`` of them), e.g. ``[atlas.label(j) for j in range(atlas.k)]``.
    """
    lab = np.asarray(labels)
    k = len(names)
    base = fit(image, max_side)
    W, H = base.size
    h, w = lab.shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)  # [H] nearest patch row
    cols_ = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)  # [W]
    big = lab[rows[:, None], cols_[None, :]]  # [H, W]
    c = np.asarray(coef, np.float32)
    strength = c / max(float(c.max()), 1e-12)
    alpha = np.where(lab >= 0, 0.35 + 0.5 * strength, 0.0)[rows[:, None], cols_[None, :]][..., None]  # [H, W, 1]
    colours = palette(k).astype(np.float32)[np.maximum(big, 0)]
    arr = np.asarray(base, np.float32)
    painted = Image.fromarray(((1 - alpha) * arr + alpha * colours).round().astype(np.uint8), "RGB")
    d = ImageDraw.Draw(painted)
    for i in range(1, h):  # faint grid: where the patches are
        d.line([0, i * H / h, W, i * H / h], fill=(255, 255, 255), width=1)
    for j in range(1, w):
        d.line([j * W / w, 0, j * W / w, H], fill=(255, 255, 255), width=1)
    gap = 10
    panel = Image.new("RGB", (2 * W + gap, H), _BG)
    panel.paste(base, (0, 0))
    panel.paste(painted, (W + gap, 0))
    present, counts = np.unique(lab[lab >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    entries = [(int(present[o]), counts[o] / lab.size) for o in order]
    leg = _legend(entries, names, palette(k), panel.width)
    parts = [panel, leg]
    if title:
        lines = _wrap(title, panel.width, 17)
        head = Image.new("RGB", (panel.width, 22 * len(lines)), _BG)
        for n, line in enumerate(lines):
            ImageDraw.Draw(head).text((0, 2 + 22 * n), line, fill=_FG, font=font(17))
        parts.insert(0, head)
    return stack(parts, gap=6)


def atlas_map_figure(atlas: ConceptAtlas, i: int, image: Image.Image | None = None, *, max_side: int = 384) -> Image.Image:
    """:func:`concept_map_figure` of image ``i`` of the atlas, titled, with the atlas's concept labels."""
    pic = image if image is not None else _loader(atlas)(i)
    lab, coef = atlas.concept_map(i)
    return concept_map_figure(pic, lab, coef, [atlas.short_label(j) for j in range(atlas.k)], max_side=max_side,
                              title=f"{atlas.image_names[i]}: main concept of each patch ({atlas.backbone}, block {atlas.layer})")


def _legend(entries: list[tuple[int, float]], names: Sequence[str], colours: np.ndarray, width: int) -> Image.Image:
    """Swatches with ``name (share %)``, wrapped onto as many lines as ``width`` needs."""
    size = 14
    f = font(size)
    items = [(j, plain(f"{names[j]} ({100 * share:.0f}%)")) for j, share in entries]
    if not items:
        items = [(-1, "no patch has a concept")]
    lines: list[list[tuple[int, str, int]]] = [[]]
    x = 0
    for j, text in items:
        wdt = f.getbbox(text)[2] + size + 18
        if x + wdt > width and lines[-1]:
            lines.append([])
            x = 0
        lines[-1].append((j, text, x))
        x += wdt
    out = Image.new("RGB", (width, len(lines) * (size + 8)), _BG)
    d = ImageDraw.Draw(out)
    for n, line in enumerate(lines):
        y = n * (size + 8)
        for j, text, x in line:
            if j >= 0:
                d.rectangle([x, y + 3, x + size, y + 3 + size], fill=tuple(int(v) for v in colours[j]), outline=_FG)
            d.text((x + size + 4, y + 2), text, fill=_FG, font=f)
    return out
