"""The frozen description of one set of backbone weights (cf. timm's PretrainedCfg)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Source = Literal["offline", "timm", "open_clip", "local"]
Family = Literal["vit", "cnn", "clip"]


@dataclass(frozen=True)
class BackboneSpec:
    """Everything that identifies a backbone and how to feed it.

    Attributes:
        name: registry name, e.g. ``"vits14_saliency"`` or ``"timm/resnet50.a1_in1k"``.
        source: where the weights come from.
        family: ``"vit"`` (tokens + attention), ``"cnn"`` (feature maps) or ``"clip"`` (ViT image
            tower plus text tower).
        architecture: the timm / open_clip architecture name.
        weights_name: human-readable weights identity (file name, hub tag or ``"random-init"``).
        weights_sha256: sha256 of the weight file (or of the hub tag when no file is local yet).
        input_size: default square input side in pixels.
        mean / std: per-channel normalisation from the model's own config.
        patch_size: ViT patch side in pixels, or the CNN's output stride.
        num_prefix_tokens: CLS + register tokens before the patch tokens (0 for CNNs).
        num_layers: number of transformer blocks / CNN stages addressable as ``layer``.
        embed_layer: the block whose output gives the default global embedding (negative counts
            from the end, -1 = final).
        has_attention / has_classifier / has_text: capabilities.
        size_multiple: valid input sides are multiples of this (patch size for ViTs).
        fixed_size: only ``input_size`` itself works (position embeddings that do not resample).
        description: one paragraph shown in the app.
    """

    name: str
    source: Source
    family: Family
    architecture: str
    weights_name: str
    weights_sha256: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    patch_size: int
    num_prefix_tokens: int
    num_layers: int
    embed_layer: int = -1
    has_attention: bool = False
    has_classifier: bool = False
    has_text: bool = False
    size_multiple: int = 1
    fixed_size: bool = False
    description: str = ""
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def weights_id(self) -> str:
        """Short identity of the weights, used in cache keys."""
        return f"{self.name}@{self.weights_sha256[:16]}"

    def grid(self, size: int | None = None) -> tuple[int, int]:
        """Patch grid ``(h, w)`` for a square input of ``size`` pixels."""
        s = size or self.input_size
        return s // self.patch_size, s // self.patch_size

    def check_size(self, size: int) -> int:
        if self.fixed_size and size != self.input_size:
            raise ValueError(f"{self.name} only takes {self.input_size} px inputs (got {size})")
        if size <= 0 or size % self.size_multiple:
            raise ValueError(
                f"{self.name}: input size {size} is not a positive multiple of "
                f"{self.size_multiple} (try {max(1, round(size / self.size_multiple)) * self.size_multiple})"
            )
        return size

    def to_dict(self) -> dict:
        return asdict(self)
