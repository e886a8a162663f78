"""The one interface every backbone implements. Shapes are part of the contract.

Notation: N images, D feature dim, h x w patch grid, L blocks, H heads,
T = num_prefix_tokens + h*w tokens, C classes, M texts.
"""
from __future__ import annotations

import abc
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.errors import UnsupportedOperationError
from core.models.layers import LayerLike, resolve_layer
from core.models.spec import BackboneSpec


def locked(method):
    """Run a Backbone method under the backbone's lock (see :attr:`Backbone.lock`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


def tokens_to_grid(grid: tuple[int, int], num_prefix_tokens: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A Grad-CAM ``reshape_transform`` for ViT blocks: tokens ``[N, T, D]`` -> feature map ``[N, D, h, w]``.

    The ``num_prefix_tokens`` CLS / register tokens are dropped (never ``[:, 1:]``); ``grid`` is the
    ``(h, w)`` patch grid of the input size used.
    """
    h, w = (int(g) for g in grid)
    p = int(num_prefix_tokens)

    def reshape(t: torch.Tensor) -> torch.Tensor:  # [N, T, D] -> [N, D, h, w]
        return t[:, p:].reshape(t.shape[0], h, w, t.shape[-1]).permute(0, 3, 1, 2)

    return reshape


class Backbone(abc.ABC):
    """A frozen, eval-mode vision backbone with a spec.

    The wrapped ``model`` belongs to this object (it was built here); callers never need to call
    ``.eval()`` on it. All methods run under ``torch.inference_mode`` except where gradients are
    the point (Grad-CAM uses ``model`` directly).
    """

    spec: BackboneSpec
    # A timm or open_clip model: their APIs (forward_intermediates, patch_embed, visual, ...) are
    # attributes a type checker cannot see through torch.nn.Module.__getattr__.
    model: Any
    class_names: list[str] | None = None

    @property
    def lock(self) -> threading.RLock:
        """Serialises calls that hook into or toggle the shared model: the app serves several
        sessions from threads, and attention capture changes the model for one forward."""
        return self.__dict__.setdefault("_lock", threading.RLock())

    @property
    def device(self) -> torch.device:
        """Where the model's weights live: callers move inputs there (``x.to(b.device)``); a backbone is
        moved as a whole with ``b.model.to(device)``."""
        p = next(iter(self.model.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    # ---- preprocessing -------------------------------------------------------------------
    def preprocess(self, images: Sequence[Image.Image], size: int | None = None) -> torch.Tensor:
        """RGB PIL images -> normalised batch ``[N, 3, S, S]``.

        The whole image is resized (not cropped) to ``S x S`` so that patch ``(i, j)`` maps back
        onto the original picture by plain scaling; mean/std come from the spec.
        """
        s = self.spec.check_size(size or self.spec.input_size)
        # uint8 [S, S, 3] each
        arrs = [np.asarray(im.convert("RGB").resize((s, s), Image.Resampling.BICUBIC)) for im in images]
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous().float()  # [N, 3, S, S] in 0..255
        mean = torch.tensor(self.spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        return x.sub_(mean).div_(std)

    # ---- the contract ----------------------------------------------------------------------
    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The bare model forward used by benchmarks (timm's ``forward_features``)."""

    @abc.abstractmethod
    def extract(self, x: torch.Tensor, layer: LayerLike = None, *, want: Sequence[str] = ("embedding",)) -> dict[str, torch.Tensor]:
        """One forward pass returning several outputs at once.

        Args:
            x: ``[N, 3, S, S]`` from :meth:`preprocess`.
            layer: block for ``embedding`` and ``patch_tokens``: a :class:`core.models.layers.Layer`,
                an index (negative from the end) or None = each kind's default
                (:func:`core.models.layers.resolve_layer`: ``spec.embed_layer`` for the embedding,
                the last block for patch tokens).
            want: any of ``"embedding"`` ``[N, D]``, ``"patch_tokens"`` ``[N, h, w, D]``,
                ``"attention_cls"`` ``[N, L, H, h*w]`` (CLS-to-patch rows, ViTs), ``"logits"``
                ``[N, C]`` (models with a head).
        """

    def extract_layers(self, x: torch.Tensor, layers: Sequence[int], *,
                       want: Sequence[str] = ("embedding",)) -> dict[int, dict[str, torch.Tensor]]:
        """``{layer: extract(x, layer, want)}`` for several blocks; timm models do it in one forward."""
        return {i: self.extract(x, i, want=want) for i in layers}

    def embed(self, x: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Global image embedding ``[N, D]``."""
        return self.extract(x, layer, want=("embedding",))["embedding"]

    def patch_tokens(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Patch tokens ``[N, h, w, D]`` (prefix tokens removed); CNNs: a stage's feature map."""
        return self.extract(x, layer, want=("patch_tokens",))["patch_tokens"]

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Full attention ``[N, L, H, T, T]`` for every block (ViTs only)."""
        raise UnsupportedOperationError(
            f"{self.spec.name} is a {self.spec.family.upper()} and has no attention maps; "
            "use Grad-CAM or prototype maps for it, or pick a ViT backbone."
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits ``[N, C]``."""
        if not self.spec.has_classifier:
            raise UnsupportedOperationError(
                f"{self.spec.name} has no classifier head; use prototypes (class means) instead."
            )
        return self.extract(x, None, want=("logits",))["logits"]

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``[M, D]`` in the image-embedding space (CLIP only)."""
        raise UnsupportedOperationError(f"{self.spec.name} has no text tower; pick an open_clip backbone.")

    # ---- Grad-CAM support -------------------------------------------------------------------
    def cam_target_layers(self) -> list[torch.nn.Module]:
        """Modules whose activations/gradients Grad-CAM uses (last block / last stage)."""
        raise UnsupportedOperationError(f"{self.spec.name} does not support Grad-CAM")

    def cam_reshape_transform(self, size: int | None = None):
        """Callable mapping the target layer's output to ``[N, D, h, w]`` (None for CNNs)."""
        return None

    def resolve_layer(self, layer: LayerLike = None, kind: str = "embedding") -> int:
        """The block index in ``[0, num_layers)`` that output ``kind`` is read from
        (:func:`core.models.layers.resolve_layer`; None = the kind's default block)."""
        return resolve_layer(self.spec, kind, layer)
