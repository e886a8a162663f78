"""Figures a researcher can read at a glance: heat maps over the picture with a labelled colour bar,
masks, label maps with a legend, mosaics, rows of maps sharing one colour scale. Pure PIL (fast
enough for every slider move), every figure is a ``PIL.Image`` that is shown and downloaded as is.

Maps are ``[h, w]`` (patch grid) or ``[H, W]`` (pixels) and are stretched onto the picture by plain
scaling, which is right because the backbones resize the whole image without cropping. Nothing here
imports Streamlit.
"""
from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from core.segment.masks import mask_to_image_size

_BG = (255, 255, 255)
_FG = (20, 20, 20)
_PAD = 6
TITLE_SIZE = 15


def font(size: int = 14) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font at ``size`` px."""
    return ImageFont.load_default(size=size)  # type: ignore[return-value]  # FreeType when available


def fit(image: Image.Image, max_side: int) -> Image.Image:
    """An RGB copy of ``image`` scaled so its longer side is ``max_side`` (up or down, aspect kept)."""
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    w, h = image.size
    s = max_side / max(w, h)
    # reducing_gap: a large upload is first shrunk by an integer factor (fast), then resampled
    return image.convert("RGB").resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC, reducing_gap=3.0)


def placeholder(side: int, text: str = "not readable", colour=(230, 230, 230)) -> Image.Image:
    """A grey ``side`` x ``side`` square with ``text`` in its middle: what a thumbnail shows when the
    image file cannot be read here (a path outside the data roots, a file gone)."""
    img = Image.new("RGB", (side, side), colour)
    _text(ImageDraw.Draw(img), (side // 2, side // 2), text, max(9, min(14, side // 8)), fill=(110, 110, 110),
          anchor="mm")
    return img


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding of a figure (for download buttons)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class ColorScale:
    """The value range and colour map shared by the maps of one figure.

    Attributes:
        vmin / vmax: values mapped to the ends of the colour map.
        cmap: a matplotlib colour map name.
        label: what the values are (shown along the colour bar), e.g. ``"cosine similarity"``.
    """

    vmin: float
    vmax: float
    cmap: str = "inferno"
    label: str = ""

    def __post_init__(self) -> None:
        if not np.isfinite([self.vmin, self.vmax]).all() or self.vmax < self.vmin:
            raise ValueError(f"colour scale needs finite vmin <= vmax, got {self.vmin}, {self.vmax}")

    @classmethod
    def shared(cls, maps: Sequence[np.ndarray | torch.Tensor], cmap: str = "inferno", label: str = "",
               symmetric: bool = False) -> ColorScale:
        """One scale covering all ``maps`` (``symmetric``: ``[-m, m]`` around 0 for difference maps)."""
        if len(maps) == 0:
            raise ValueError("ColorScale.shared needs at least one map")
        lo = min(float(np.min(np.asarray(m))) for m in maps)
        hi = max(float(np.max(np.asarray(m))) for m in maps)
        if symmetric:
            m = max(abs(lo), abs(hi), 1e-12)
            lo, hi = -m, m
        return cls(lo, hi, cmap, label)


# Pillow's bundled font lacks some typographic glyphs (they would draw as boxes).
_PLAIN = str.maketrans({"−": "-", "–": "-", "≥": ">=", "≤": "<=", "…": "...", "→": "->", "×": "x"})


def plain(s: str) -> str:
    """``s`` with the glyphs the bundled font lacks replaced by ASCII look-alikes."""
    return s.translate(_PLAIN)


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], s: str, size: int, fill=_FG, anchor: str = "la") -> None:
    draw.text(xy, plain(s), fill=fill, font=font(size), anchor=anchor)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def colorbar(scale: ColorScale, height: int, width: int = 18, text_size: int = 14) -> Image.Image:
    """A vertical colour bar ``height`` px tall with 5 ticks and the scale's label written alongside."""
    import matplotlib

    cmap = matplotlib.colormaps[scale.cmap]
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(width, 1)  # [height, width], top = vmax
    bar = Image.fromarray((cmap(ramp)[..., :3] * 255).astype(np.uint8), "RGB")
    tick_w = max(font(text_size).getbbox(_fmt(v))[2] for v in np.linspace(scale.vmin, scale.vmax, 5)) + 8
    label_w = text_size + 8 if scale.label else 0
    out = Image.new("RGB", (width + tick_w + label_w + _PAD, height + text_size), _BG)
    top = text_size // 2
    out.paste(bar, (0, top))
    d = ImageDraw.Draw(out)
    d.rectangle([0, top, width - 1, top + height - 1], outline=_FG)
    for frac in np.linspace(0.0, 1.0, 5):
        y = top + round((1.0 - frac) * (height - 1))
        d.line([width, y, width + 3, y], fill=_FG)
        _text(d, (width + 5, y), _fmt(scale.vmin + frac * (scale.vmax - scale.vmin)), text_size, anchor="lm")
    if scale.label:
        lab = Image.new("RGB", (height, text_size + 4), _BG)
        ImageDraw.Draw(lab).text((height // 2, 0), plain(scale.label), fill=_FG, font=font(text_size), anchor="ma")
        out.paste(lab.rotate(90, expand=True), (width + tick_w + 2, top))
    return out


def titled(image: Image.Image, title: str, text_size: int = TITLE_SIZE) -> Image.Image:
    """``image`` with ``title`` written above it (cut to the image width)."""
    if not title:
        return image
    title = plain(title)
    f = font(text_size)
    if f.getbbox(title)[2] > image.width:  # cut to fit, marking the cut
        while len(title) > 1 and f.getbbox(title + "...")[2] > image.width:
            title = title[:-1]
        title += "..."
    out = Image.new("RGB", (image.width, image.height + text_size + _PAD), _BG)
    ImageDraw.Draw(out).text((image.width // 2, 2), title, fill=_FG, font=f, anchor="ma")
    out.paste(image, (0, text_size + _PAD))
    return out


def mark_patch(image: Image.Image, patch: tuple[int, int], grid: tuple[int, int], colour=(0, 255, 255)) -> Image.Image:
    """Outline patch ``(i, j)`` of a ``grid = (h, w)`` laid over ``image`` (a copy is returned)."""
    out = image.copy()
    W, H = out.size
    h, w = grid
    i, j = patch
    box = [j * W / w, i * H / h, (j + 1) * W / w - 1, (i + 1) * H / h - 1]
    d = ImageDraw.Draw(out)
    d.rectangle(box, outline=(0, 0, 0), width=4)
    d.rectangle(box, outline=colour, width=2)
    return out


def heat_panel(image: Image.Image, heat: np.ndarray | torch.Tensor, scale: ColorScale, *, alpha: float = 0.5,
               title: str = "", max_side: int = 320, marker: tuple[tuple[int, int], tuple[int, int]] | None = None) -> Image.Image:
    """One map over the picture (no colour bar): for rows of maps that share ``scale``.

    Args:
        image: the picture.
        heat: ``[h, w]`` or ``[H, W]`` map, bilinearly stretched onto the picture.
        scale: value range and colour map.
        alpha: opacity of the colours.
        title: written above.
        max_side: the picture is drawn with this longer side.
        marker: optional ``(patch, grid)`` to outline one patch (e.g. the clicked one).
    """
    base = fit(image, max_side)
    out = fast_overlay(base, heat, scale, alpha=alpha)
    if marker is not None:
        out = mark_patch(out, *marker)
    return titled(out, title)


@functools.lru_cache(maxsize=32)
def _lut(cmap: str) -> np.ndarray:
    """The colour map as 256 RGB entries ``[256, 3]`` uint8 (matplotlib's own lookup table size)."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}; try 'inferno', 'viridis' or 'jet'") from None
    return (cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def fast_overlay(base: Image.Image, heat: np.ndarray | torch.Tensor, scale: ColorScale, alpha: float = 0.5) -> Image.Image:
    """Blend a colour-mapped heat map over a picture (the one overlay of the project).

    The map is scaled by ``scale`` to ``[0, 1]``, quantised to the colour map's 256 levels *before* the
    bilinear stretch to ``base.size``, so the stretch, colouring and blending all run in Pillow (about 10x
    faster than a float path on small maps; colours differ from the float formula by at most a couple of
    levels, tested). ``base`` is drawn at its own size; ``heat`` is ``[h, w]`` of any resolution.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h = np.asarray(heat, dtype=np.float32)
    if h.ndim != 2 or not np.all(np.isfinite(h)):
        raise ValueError(f"heat must be a finite [h, w] map, got shape {h.shape}")
    span = scale.vmax - scale.vmin
    v = np.clip((h - scale.vmin) / span, 0.0, 1.0) if span > 0 else np.zeros_like(h)
    levels = Image.fromarray(np.round(v * 255).astype(np.uint8), "L").resize(base.size, Image.Resampling.BILINEAR)  # [H, W]
    colours = Image.fromarray(_lut(scale.cmap)[np.asarray(levels)], "RGB")
    return Image.blend(base.convert("RGB"), colours, alpha)


TITLE_H = TITLE_SIZE + _PAD  # height of the strip :func:`titled` adds


def row(panels: Sequence[Image.Image], scale: ColorScale | None = None, gap: int = _PAD,
        bar_top: int = TITLE_H) -> Image.Image:
    """Panels side by side (tops aligned) and, when given, one colour bar for all of them.

    Args:
        bar_top: where the pictures start below the panels' titles (0 for untitled panels), so the
            colour bar spans the pictures' height.
    """
    if len(panels) == 0:
        raise ValueError("row needs at least one panel")
    items = list(panels)
    H = max(p.height for p in items)
    if scale is not None:
        text_size = 14
        items.append(colorbar(scale, height=max(40, H - bar_top - text_size), text_size=text_size))
    W = sum(p.width for p in items) + gap * (len(items) - 1)
    out = Image.new("RGB", (W, H), _BG)
    x = 0
    for n, p in enumerate(items):
        y = bar_top if scale is not None and n == len(items) - 1 else 0
        out.paste(p, (x, y))
        x += p.width + gap
    return out


def heat_figure(image: Image.Image, heat: np.ndarray | torch.Tensor, scale: ColorScale, *, alpha: float = 0.5,
                title: str = "", max_side: int = 448, marker=None) -> Image.Image:
    """One map over the picture with its own labelled colour bar."""
    return row([heat_panel(image, heat, scale, alpha=alpha, title=title, max_side=max_side, marker=marker)], scale,
               bar_top=TITLE_H if title else 0)


def grid(panels: Sequence[Sequence[Image.Image]], row_labels: Sequence[str], col_labels: Sequence[str],
         scale: ColorScale | None = None, text_size: int = 14) -> Image.Image:
    """A mosaic ``rows x cols`` of equally sized tiles with row and column labels (and a colour bar)."""
    if len(panels) == 0 or len(panels[0]) == 0:
        raise ValueError("grid needs at least one tile")
    if len(row_labels) != len(panels) or any(len(r) != len(col_labels) for r in panels):
        raise ValueError("grid: one row label per row and one column label per column")
    tw, th = panels[0][0].size
    lw = max(font(text_size).getbbox(s)[2] for s in row_labels) + _PAD
    top = text_size + _PAD
    gap = 2
    out = Image.new("RGB", (lw + len(col_labels) * (tw + gap), top + len(row_labels) * (th + gap)), _BG)
    d = ImageDraw.Draw(out)
    for c, s in enumerate(col_labels):
        _text(d, (lw + c * (tw + gap) + tw // 2, 1), s, text_size, anchor="ma")
    for r, (s, tiles) in enumerate(zip(row_labels, panels)):
        y = top + r * (th + gap)
        _text(d, (lw - _PAD, y + th // 2), s, text_size, anchor="rm")
        for c, t in enumerate(tiles):
            out.paste(t, (lw + c * (tw + gap), y))
    return row([out], scale, bar_top=top) if scale is not None else out


MASK_TINT = (255, 0, 200)   # magenta: rare in photos
MASK_EDGE = (255, 230, 0)   # yellow outline


def mask_panel(image: Image.Image, mask: np.ndarray | torch.Tensor, *, alpha: float = 0.5, colour=MASK_TINT,
               title: str = "", max_side: int = 448, marker=None) -> Image.Image:
    """A boolean mask ``[h, w]`` (or ``[H, W]``) tinted over the picture, with a 2-px outline.

    The mask is stretched by nearest neighbour (:func:`core.segment.masks.mask_to_image_size`), so the
    blocky edge shows the true resolution of the features.
    """
    base = fit(image, max_side)
    m = mask_to_image_size(np.asarray(mask, dtype=bool), base.size)  # [H, W]
    inside = Image.fromarray(m.astype(np.uint8) * 255, "L")
    edge = Image.fromarray((m & ~_erode(_erode(m))).astype(np.uint8) * 255, "L")
    out = Image.composite(Image.blend(base, Image.new("RGB", base.size, colour), alpha), base, inside)
    out.paste(MASK_EDGE, (0, 0, *base.size), edge)
    if marker is not None:
        out = mark_patch(out, *marker)
    return titled(out, title)


def _erode(m: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (edges of the picture count as outside)."""
    p = np.pad(m, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def palette(k: int) -> np.ndarray:
    """``k`` distinct RGB colours ``[k, 3]`` uint8 (tab10, then tab20, then hsv)."""
    import matplotlib

    if k <= 10:
        cols = matplotlib.colormaps["tab10"].colors[:k]  # type: ignore[attr-defined]  # a ListedColormap
    elif k <= 20:
        cols = matplotlib.colormaps["tab20"].colors[:k]  # type: ignore[attr-defined]  # a ListedColormap
    else:
        cols = [matplotlib.colormaps["hsv"](i / k)[:3] for i in range(k)]
    return (np.asarray(cols) * 255).round().astype(np.uint8)


def hex_colours(k: int) -> list[str]:
    """:func:`palette` as ``"#rrggbb"`` strings (plotly figures; the large point map's class colours, in
    class-code order)."""
    return ["#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb)) for rgb in palette(k)]


def class_colours(classes: Sequence[str]) -> dict[str, str]:
    """One ``"#rrggbb"`` colour per class, from :func:`palette` in the given (sorted) order, so every
    figure of every page and backbone colours a class the same way."""
    return dict(zip(classes, hex_colours(len(classes))))


def discovery_colours(known: Sequence[str], new: Sequence[str]) -> dict[str, str]:
    """Colours of a category-discovery map: known classes as :func:`class_colours` gives them everywhere
    else, new clusters (``"new 1"`` ...) from a palette of their own (matplotlib's muted tab20b, then
    tab20c, then hsv), so a new cluster never looks like a known class. The 20-colour palettes are five
    hues of four shades each; they are taken hue by hue (the darkest shade of each hue, then the next shade),
    so the first new clusters differ in hue, not only in shade."""
    import matplotlib

    def by_hue(name: str) -> list:
        c = matplotlib.colormaps[name].colors  # type: ignore[attr-defined]
        return [c[4 * hue + shade] for shade in range(4) for hue in range(5)]

    cols = [*by_hue("tab20b"), *by_hue("tab20c")]
    if len(new) > len(cols):
        cols += [matplotlib.colormaps["hsv"](i / len(new))[:3] for i in range(len(new) - len(cols))]
    hexes = ["#{:02x}{:02x}{:02x}".format(*(round(v * 255) for v in c[:3])) for c in cols]
    return {**class_colours(known), **dict(zip(new, hexes))}


def labels_panel(image: Image.Image, labels: np.ndarray, k: int, *, alpha: float = 0.55, title: str = "",
                 max_side: int = 320, highlight: set[int] | None = None) -> Image.Image:
    """A label map ``[h, w]`` (values in ``[0, k)``) coloured over the picture.

    With ``highlight``, clusters outside it are greyed out, so e.g. the common foreground stands out.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be [h, w], got shape {lab.shape}")
    base = fit(image, max_side)
    W, H = base.size
    h, w = lab.shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)  # [H]
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)  # [W]
    big = lab[rows[:, None], cols[None, :]]  # [H, W] nearest, like mask_to_image_size
    arr = np.asarray(base, dtype=np.float32)
    colours = palette(k).astype(np.float32)[big]  # [H, W, 3]
    out = (1 - alpha) * arr + alpha * colours
    if highlight is not None:
        off = ~np.isin(big, list(highlight))
        grey = arr[off].mean(-1, keepdims=True)
        out[off] = 0.35 * grey + 0.65 * 235
    return titled(Image.fromarray(out.round().astype(np.uint8), "RGB"), title)


def legend(names: Sequence[str], colours: np.ndarray, text_size: int = 13) -> Image.Image:
    """A one-line legend of coloured swatches."""
    f = font(text_size)
    names = [plain(s) for s in names]
    widths = [f.getbbox(s)[2] + text_size + 16 for s in names]
    out = Image.new("RGB", (max(1, sum(widths)), text_size + 8), _BG)
    d = ImageDraw.Draw(out)
    x = 0
    for s, c, wdt in zip(names, colours, widths):
        d.rectangle([x, 3, x + text_size, 3 + text_size], fill=tuple(int(v) for v in c), outline=_FG)
        d.text((x + text_size + 4, 2), s, fill=_FG, font=f)
        x += wdt
    return out


def stack(images: Sequence[Image.Image], gap: int = _PAD) -> Image.Image:
    """Images one above the other, left-aligned."""
    W = max(i.width for i in images)
    out = Image.new("RGB", (W, sum(i.height for i in images) + gap * (len(images) - 1)), _BG)
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height + gap
    return out


def label_png_bytes(labels: np.ndarray, k: int, image_size: tuple[int, int]) -> bytes:
    """A label map ``[h, w]`` as a colour PNG at ``image_size = (W, H)`` (palette colours, no picture)."""
    lab = np.asarray(labels)
    W, H = image_size
    h, w = lab.shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return png_bytes(Image.fromarray(palette(k)[lab[rows[:, None], cols[None, :]]], "RGB"))
