"""Layer-by-layer representations of one backbone, and CKA between the blocks of two backbones.

For every block, either the backbone's global embedding at that block (``pool="embedding"``: the CLS
token after the final norm for ViTs, the global average pool of the stage for CNNs; the last block
uses the model's own head pooling) or the mean of the block's patch tokens / feature-map positions
(``pool="mean"``). They are defined by the Backbone contract (``extract_layers``, i.e.
``extract(x, layer)`` per block); timm models compute all blocks in one forward with their own
``forward_intermediates`` (tested equal to one ``extract`` per block), other backbones call
``extract`` once per block.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.compare.cka import Kind as CkaKind
from core.compare.cka import layer_cka
from core.io.images import ImageRecord
from core.models.base import Backbone

Pool = Literal["embedding", "mean"]
ProgressFn = Callable[[int, int], None]

LAYER_POOLS: dict[str, str] = {
    "embedding": "the backbone's global embedding at each block (ViT: CLS token after the final norm; "
                 "CNN: global average pool of the stage; last block: the model's own head pooling)",
    "mean": "the mean of each block's patch tokens (CNN: of the stage's feature-map positions)",
}


@dataclass(frozen=True)
class LayerFeatures:
    """One representation ``[N, D_l]`` per block of one backbone, for the same N images.

    Attributes:
        backbone: name.
        layers: block indices (``0..num_layers-1``).
        pool: ``"embedding"`` or ``"mean"`` (see :data:`LAYER_POOLS`).
        features: per layer ``[N, D_l]`` float32.
        size: input side.
    """

    backbone: str
    layers: list[int]
    pool: str
    features: list[np.ndarray]
    size: int


def block_representations(backbone: Backbone, x: torch.Tensor, layers: Sequence[int],
                          pool: Pool = "mean") -> list[np.ndarray]:
    """Pooled representations of a batch ``x [N, 3, S, S]`` at each of ``layers`` -> per layer ``[N, D_l]``."""
    if pool not in LAYER_POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {list(LAYER_POOLS)}")
    idx = [backbone.resolve_layer(l) for l in layers]
    kind = "embedding" if pool == "embedding" else "patch_tokens"
    outs = backbone.extract_layers(x, sorted(set(idx)), want=(kind,))  # one forward for timm models
    by_layer = {l: o[kind] if pool == "embedding" else o[kind].mean((1, 2)) for l, o in outs.items()}  # [N, D_l]
    return [by_layer[l].float().cpu().numpy() for l in idx]


def layer_features(backbone: Backbone, records: Sequence[ImageRecord], *, layers: Sequence[int] | None = None,
                   pool: Pool = "mean", size: int | None = None, batch_size: int = 16,
                   progress: ProgressFn | None = None) -> LayerFeatures:
    """Every block's pooled representation of ``records`` (for :func:`core.compare.cka.layer_cka`).

    Args:
        backbone: the model.
        records: the images (decoded here; a file that no longer decodes raises ``ImageDecodeError``).
        layers: block indices (negative from the end); None = all blocks.
        pool: ``"embedding"`` or ``"mean"`` (:data:`LAYER_POOLS`).
        size: input side (None: the spec's).
        batch_size: images per forward.
        progress: called as ``progress(done, total)`` after each batch.
    """
    if len(records) < 2:
        raise ValueError(f"layer CKA needs at least 2 images, got {len(records)}")
    size = backbone.spec.check_size(size or backbone.spec.input_size)
    idx = [backbone.resolve_layer(l) for l in (range(backbone.spec.num_layers) if layers is None else layers)]
    chunks: list[list[np.ndarray]] = [[] for _ in idx]
    for s in range(0, len(records), batch_size):
        batch = records[s:s + batch_size]
        x = backbone.preprocess([r.decode() for r in batch], size)  # [B, 3, S, S]
        for c, f in zip(chunks, block_representations(backbone, x, idx, pool)):
            c.append(f)
        if progress:
            progress(min(s + batch_size, len(records)), len(records))
    return LayerFeatures(backbone.spec.name, idx, pool, [np.concatenate(c) for c in chunks], size)


def layer_cka_between(a: LayerFeatures, b: LayerFeatures, kind: CkaKind = "linear",
                      sigma_frac: float = 0.5) -> np.ndarray:
    """``[LA, LB]`` CKA between every block of ``a`` and every block of ``b`` (same images)."""
    return layer_cka(a.features, b.features, kind=kind, sigma_frac=sigma_frac)
