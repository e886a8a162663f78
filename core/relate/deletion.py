"""The faithfulness check of a pair decomposition: blur the patches of the top-ranked patch pairs in
both images and watch the backbone's cosine fall; blurring as many random patches should make it
fall less (a deletion test in the spirit of Petsiuk et al.'s RISE deletion metric and of the
"pixel-flipping" checks of the BiLRP paper, applied to the pair)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from core.models.base import Backbone
from core.relate.contributions import Link


@dataclass(frozen=True)
class DeletionCheck:
    """Cosine drops when patches are blurred in both images.

    Attributes:
        cosine: the pair's cosine, nothing blurred.
        top_drop: ``cosine`` minus the cosine with the top links' patches blurred.
        random_drops: the same drop for each random draw of as many patches per image.
        patches_a / patches_b: how many patches were blurred in each image (the distinct patches of the links).
        links: how many top links were removed.
        blur_sigma: the Gaussian blur's sigma in input pixels (one patch side).
    """

    cosine: float
    top_drop: float
    random_drops: tuple[float, ...]
    patches_a: int
    patches_b: int
    links: int
    blur_sigma: float

    @property
    def random_drop(self) -> float:
        """Mean drop over the random draws."""
        return float(np.mean(self.random_drops))

    @property
    def passed(self) -> bool:
        """Top pairs lower the similarity more than random patches do on average."""
        return self.top_drop > self.random_drop

    def to_dict(self) -> dict:
        return {"cosine": self.cosine, "top_drop": self.top_drop, "random_drop": self.random_drop,
                "random_drops": list(self.random_drops), "patches_a": self.patches_a, "patches_b": self.patches_b,
                "links": self.links, "blur_sigma": self.blur_sigma, "passed": self.passed}

    def sentence(self) -> str:
        return (f"Blurring the {self.patches_a} + {self.patches_b} patches of the top {self.links} patch pairs changes the "
                f"cosine by {-self.top_drop:+.4f}; as many random patches change it by {-self.random_drop:+.4f} on average "
                f"({len(self.random_drops)} draws): {'passed' if self.passed else 'not passed'} "
                "(the top pairs should lower it more).")


def _cell_boxes(size: int, grid: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Pixel rows and columns of every patch of a ``grid = (h, w)`` over an ``size x size`` input, row-major."""
    h, w = grid
    ys = np.round(np.linspace(0, size, h + 1)).astype(int)
    xs = np.round(np.linspace(0, size, w + 1)).astype(int)
    return [(slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1])) for i in range(h) for j in range(w)]


def _blurred(x: np.ndarray, patches: Sequence[int], boxes: list[tuple[slice, slice]], blurred: np.ndarray) -> np.ndarray:
    out = x.copy()
    for p in patches:
        ys, xs = boxes[p]
        out[:, ys, xs] = blurred[:, ys, xs]
    return out


def deletion_check(backbone: Backbone, x: torch.Tensor, block: int, links: Sequence[Link],
                   grids: tuple[tuple[int, int], tuple[int, int]], *, draws: int = 8, seed: int = 0) -> DeletionCheck:
    """Blur the patches of ``links`` in both images of ``x [2, 3, S, S]`` vs ``draws`` random patch sets.

    Each random draw blurs as many distinct patches per image as the links touch, chosen uniformly
    (seeded). Everything runs in one batched forward of ``2 + 2 * draws`` images.
    """
    if x.shape[0] != 2:
        raise ValueError(f"deletion_check needs the pair's two images, got a batch of {x.shape[0]}")
    if not links or draws < 1:
        raise ValueError("deletion_check needs at least one link and one random draw")
    size = int(x.shape[-1])
    boxes = [_cell_boxes(size, g) for g in grids]
    sigma = float(size / grids[0][1])  # one patch side: detail at the patch's scale is gone, its mean colour stays
    xs = x.detach().numpy().astype(np.float32)
    blurred = [gaussian_filter(xi, sigma=(0.0, sigma, sigma), mode="reflect") for xi in xs]
    top = [sorted({lk.a[0] * grids[0][1] + lk.a[1] for lk in links}),
           sorted({lk.b[0] * grids[1][1] + lk.b[1] for lk in links})]
    rng = np.random.default_rng(seed)
    sets = [top] + [[rng.choice(len(boxes[k]), size=len(top[k]), replace=False).tolist() for k in (0, 1)]
                    for _ in range(draws)]
    batch = np.stack([_blurred(xs[k], s[k], boxes[k], blurred[k]) for s in sets for k in (0, 1)])  # [2 + 2 draws, 3, S, S]
    with torch.inference_mode():
        emb = backbone.extract(torch.from_numpy(np.concatenate([xs, batch])), block, want=("embedding",))["embedding"]
    e = torch.nn.functional.normalize(emb.double(), dim=-1).numpy()  # [2 + 2 + 2 draws, D]
    cos = [float(e[2 * i] @ e[2 * i + 1]) for i in range(len(sets) + 1)]
    return DeletionCheck(cosine=cos[0], top_drop=cos[0] - cos[1], random_drops=tuple(cos[0] - c for c in cos[2:]),
                         patches_a=len(top[0]), patches_b=len(top[1]), links=len(links), blur_sigma=sigma)
