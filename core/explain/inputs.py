"""One image prepared for one backbone, with the forward results that several saliency methods share.

A :class:`SaliencyInput` is what every method in :mod:`core.explain.methods` receives: the backbone, the
input tensor ``x [1, 3, S, S]`` and memoised pieces (every block's attention, tokens of a block), so
that attention, rollout and prototype maps of one picture cost one forward each, not one per map.
"""
from __future__ import annotations

import threading
import zlib

import numpy as np
import torch
from PIL import Image

from core.explain.attention import AttentionMaps, vit_attention
from core.models.base import Backbone


def image_tokens(b: Backbone, x: torch.Tensor, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``(patch_tokens [h, w, D], embedding [D])`` of one image ``x [1, 3, S, S]`` at block ``layer``."""
    with b.lock:
        out = b.extract(x, layer, want=("embedding", "patch_tokens"))
    return out["patch_tokens"][0].float().cpu().numpy(), out["embedding"][0].float().cpu().numpy()


class SaliencyInput:
    """One image ``x [1, 3, S, S]`` for backbone ``backbone``; forward results are computed once.

    Attributes:
        backbone: the model (never changed here).
        x: ``[1, 3, S, S]`` from :meth:`Backbone.preprocess` (a private copy, on the model's device).
        size: ``S``.
        grid: the ``(h, w)`` patch grid at ``S``.
    """

    def __init__(self, backbone: Backbone, x: torch.Tensor):
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            raise ValueError(f"x must be one image [1, 3, S, S], got shape {tuple(x.shape)}")
        self.backbone = backbone
        self.x = x.detach().clone().to(backbone.device)
        self.size = backbone.spec.check_size(int(x.shape[-1]))
        self.grid = backbone.spec.grid(self.size)
        self._memo: dict[object, object] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_image(cls, backbone: Backbone, image: Image.Image, size: int | None = None) -> SaliencyInput:
        """Preprocess an RGB picture at ``size`` (None: the spec's input size)."""
        return cls(backbone, backbone.preprocess([image], size))

    def _get(self, key: object, compute):
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    def attention(self) -> AttentionMaps:
        """Every block's attention (ViTs; others raise ``UnsupportedOperationError``)."""
        return self._get("attention", lambda: vit_attention(self.backbone, self.x))

    def tokens(self, layer: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """``(patch_tokens [h, w, D], embedding [D])`` at block ``layer``."""
        idx = self.backbone.resolve_layer(layer)
        return self._get(("tokens", idx), lambda: image_tokens(self.backbone, self.x, idx))

    @property
    def seed(self) -> int:
        """A seed derived from the input pixels (same picture and size, same seed)."""
        return zlib.crc32(self.x.cpu().numpy().tobytes())
