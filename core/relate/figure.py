"""The "why neighbours" figure: both pictures side by side, each patch tinted by its share of the
pair's cosine (a diverging scale centred at 0 with a labelled colour bar), and the strongest
patch-to-patch terms drawn as lines between them (width = contribution). Pure PIL, like
:mod:`core.render`, whose font, fitting, titles and colour bar it uses.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from core.relate.contributions import Link
from core.relate.why import WhyResult
from core.render import ColorScale, colorbar, fit, font, plain

CMAP = "RdBu_r"  # red: adds to the similarity, blue: takes from it; white at 0
LINK = (255, 214, 0)  # gold: neither red nor blue, read over both tints and most photos
OUTLINE = (0, 0, 0)
MAX_WIDTH = 4.0  # px, the largest link's core; the smallest drawn is 1 px
_BG = (255, 255, 255)
_FG = (20, 20, 20)
_SS = 3  # links are drawn at 3x and scaled down: smooth lines in plain PIL


def share_scale(result: WhyResult, clip_quantile: float = 0.99) -> tuple[ColorScale, int]:
    """The symmetric colour scale of both share maps and how many patches it clips.

    A ViT's few high-norm "artifact" tokens can carry ten times the share of any other patch; the
    scale's half-width is the ``clip_quantile`` of all ``|share|`` values (both images), so the rest stay
    readable, and the colour bar's label says how many patches lie beyond it.
    """
    v = np.abs(np.concatenate([result.terms.share_a.ravel(), result.terms.share_b.ravel()]))
    m = float(max(np.quantile(v, clip_quantile), 1e-12))
    clipped = int((v > m * (1 + 1e-9)).sum())
    return ColorScale(-m, m, CMAP, "share of the cosine"), clipped


def _tint(image: Image.Image, share: np.ndarray, scale: ColorScale, max_alpha: float = 0.75) -> Image.Image:
    """``image`` with each patch of ``share [h, w]`` tinted: colour from the scale, opacity growing with
    ``|share|`` (its square root, so middling shares still show), so patches that add nothing show the
    picture as it is. Tiles are nearest-neighbour (the true patch grid)."""
    import matplotlib

    W, H = image.size
    h, w = share.shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)  # [H]
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)  # [W]
    big = share[rows[:, None], cols[None, :]]  # [H, W]
    u = np.clip((big - scale.vmin) / (scale.vmax - scale.vmin), 0.0, 1.0)
    colours = matplotlib.colormaps[scale.cmap](u)[..., :3] * 255.0  # [H, W, 3]
    alpha = (max_alpha * np.sqrt(np.clip(np.abs(big) / scale.vmax, 0.0, 1.0)))[..., None]  # [H, W, 1]
    out = (1 - alpha) * np.asarray(image, dtype=np.float64) + alpha * colours
    return Image.fromarray(out.round().astype(np.uint8), "RGB")


def _centre(patch: tuple[int, int], grid: tuple[int, int], box: tuple[int, int, int, int]) -> tuple[float, float]:
    """Pixel centre of patch ``(row, col)`` of ``grid`` drawn over ``box = (x0, y0, width, height)``."""
    x0, y0, W, H = box
    return x0 + (patch[1] + 0.5) * W / grid[1], y0 + (patch[0] + 0.5) * H / grid[0]


def _draw_links(canvas: Image.Image, links: tuple[Link, ...], grids, boxes) -> Image.Image:
    """Lines (black outline, gold core, width by contribution) and endpoint dots, drawn supersampled."""
    positive = [lk for lk in links if lk.contribution > 0]
    if not positive:
        return canvas
    top = max(lk.contribution for lk in positive)
    layer = Image.new("RGBA", (canvas.width * _SS, canvas.height * _SS), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    segs = []
    for lk in reversed(positive):  # the strongest drawn last, on top
        pa = _centre(lk.a, grids[0], boxes[0])
        pb = _centre(lk.b, grids[1], boxes[1])
        width = 1.0 + (MAX_WIDTH - 1.0) * lk.contribution / top
        segs.append(([(pa[0] * _SS, pa[1] * _SS), (pb[0] * _SS, pb[1] * _SS)], width * _SS))
    for xy, wd in segs:
        d.line(xy, fill=OUTLINE + (255,), width=round(wd + 2 * _SS))
    for xy, wd in segs:
        d.line(xy, fill=LINK + (255,), width=round(wd))
    r = 3.5 * _SS
    for xy, _ in segs:
        for x, y in xy:
            d.ellipse([x - r, y - r, x + r, y + r], fill=LINK + (255,), outline=OUTLINE + (255,), width=_SS)
    small = layer.resize(canvas.size, Image.Resampling.LANCZOS)
    out = canvas.convert("RGBA")
    out.alpha_composite(small)
    return out.convert("RGB")


def _wrap(text: str, width: int, size: int) -> list[str]:
    f = font(size)
    lines, cur = [], ""
    for word in plain(text).split():
        trial = f"{cur} {word}".strip()
        if cur and f.getbbox(trial)[2] > width:
            lines.append(cur)
            cur = word
        else:
            cur = trial
    return lines + ([cur] if cur else [])


def why_figure(image_a: Image.Image, image_b: Image.Image, result: WhyResult, *, max_side: int = 320,
               title_a: str = "image a", title_b: str = "image b", gap: int = 56) -> Image.Image:
    """The pair figure (see the module docstring) as one RGB image.

    Args:
        image_a / image_b: the two pictures (drawn whole at their own aspect: the backbones resize
            without cropping, so the patch grid stretches onto them).
        result: :func:`core.relate.why.why_neighbours` of the same pair.
        max_side: each picture's longer side in pixels.
        title_a / title_b: written above each picture.
        gap: pixels between the pictures, where the links cross.
    """
    scale, clipped = share_scale(result)
    panels = [_tint(fit(im, max_side), s, scale) for im, s in ((image_a, result.terms.share_a), (image_b, result.terms.share_b))]
    ts, cs = 16, 13  # title and caption sizes
    head = ts + 10 + cs + 8  # figure title, then the two panel titles
    body_h = max(p.height for p in panels)
    bar = colorbar(scale, height=max(60, body_h - 14), text_size=12)
    width = panels[0].width + gap + panels[1].width + 12 + bar.width
    caption = _wrap(_caption(result, clipped), width - 8, cs)
    height = head + body_h + 10 + len(caption) * (cs + 5) + 6
    canvas = Image.new("RGB", (width, height), _BG)
    d = ImageDraw.Draw(canvas)
    boxes = []
    x = 0
    for p, t in zip(panels, (title_a, title_b)):
        y = head + (body_h - p.height) // 2
        canvas.paste(p, (x, y))
        boxes.append((x, y, p.width, p.height))
        name = plain(t)
        f = font(cs)
        while len(name) > 3 and f.getbbox(name)[2] > p.width:
            name = name[:-4] + "..."
        d.text((x + p.width // 2, ts + 10), name, fill=_FG, font=f, anchor="ma")
        x += p.width + gap
    canvas.paste(bar, (x - gap + 12, head))
    canvas = _draw_links(canvas, result.links, result.grids, boxes)
    d = ImageDraw.Draw(canvas)
    d.text((width // 2, 3), _title(result), fill=_FG, font=font(ts), anchor="ma")
    y = head + body_h + 10
    for line in caption:
        d.text((4, y), line, fill=_FG, font=font(cs))
        y += cs + 5
    return canvas


def _title(result: WhyResult) -> str:
    kind = "" if result.exact else " (attributed)"
    return plain(f"{result.backbone}, block {result.block}: cosine {result.cosine:.3f} - {result.label}{kind}")


def _caption(result: WhyResult, clipped: int) -> str:
    n = sum(lk.contribution > 0 for lk in result.links)
    top = max((lk.contribution for lk in result.links), default=0.0)
    lines = (f"Gold lines: the {n} largest patch-pair terms, width by size (largest {top:.4f}). "
             "Red patches add to the similarity, blue ones take from it"
             + (f" ({clipped} patch{'es' if clipped > 1 else ''} beyond the colour scale, drawn at its end)."
                if clipped else "."))
    if result.exact:
        lines += f" The terms sum exactly to the cosine ({result.terms.matrix.size:,} pairs)."
    else:
        lines += (f" Patch pairs carry {result.terms.attributed:.3f} of the cosine; {result.terms.unattributed:.3f} "
                  "comes from parts no patch carries (the CLS token's start value, biases).")
    if result.check is not None:
        lines += " Check: " + result.check.sentence()
    return lines
