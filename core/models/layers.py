"""Which block an output is read from: one type and one resolution rule for the whole code base.

An output kind has its own default block: the global ``"embedding"`` comes from the spec's
``embed_layer`` (e.g. block 10 of the DINOv2 saliency ViT, whose last block was retuned), while
``"patch_tokens"`` come from the last block. Every caller (``Backbone.extract``,
:func:`core.models.extract.extract_features`, the pages, the CLI) resolves a :class:`Layer`
through :func:`resolve_layer`, so the rule is written once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

from core.models.spec import BackboneSpec

LAYERED_KINDS: tuple[str, ...] = ("embedding", "patch_tokens")  # outputs that depend on the block
NOT_LAYERED = -1  # the block recorded for outputs that do not depend on one (logits, attention of all blocks)


@dataclass(frozen=True)
class Layer:
    """A block choice: ``Layer.DEFAULT`` (each output kind's default block) or ``Layer(i)``.

    Attributes:
        index: block index, negative from the end (``-1`` = last block); None = the default of
            each output kind (see the module docstring).
    """

    index: int | None = None

    DEFAULT: ClassVar[Layer]  # Layer(None), set below
    LAST: ClassVar[Layer]  # Layer(-1), set below

    def __post_init__(self) -> None:
        if self.index is not None and not isinstance(self.index, int):
            raise TypeError(f"a layer index is an int (negative from the end) or None, got {self.index!r}")

    @classmethod
    def of(cls, layer: LayerLike) -> Layer:
        """A :class:`Layer` from a Layer, a block index, or None (= :attr:`DEFAULT`)."""
        if isinstance(layer, Layer):
            return layer
        if layer is None:
            return cls(None)
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layer must be a Layer, an int block index or None, got {layer!r}")
        return cls(int(layer))

    def __str__(self) -> str:
        return "default" if self.index is None else str(self.index)


LayerLike = Union[Layer, int, None]  # noqa: UP007 (a runtime alias: `|` of a class and None needs 3.10 at import)
Layer.DEFAULT = Layer(None)
Layer.LAST = Layer(-1)


def default_index(spec: BackboneSpec, kind: str) -> int:
    """The block an output ``kind`` comes from by default (possibly negative, as in the spec)."""
    if kind == "embedding":
        return spec.embed_layer
    if kind == "patch_tokens":
        return -1
    raise ValueError(f"output {kind!r} does not depend on a block; layered outputs are {list(LAYERED_KINDS)}")


def resolve_layer(spec: BackboneSpec, kind: str, layer: LayerLike = None) -> int:
    """The block index in ``[0, num_layers)`` that output ``kind`` is read from.

    Args:
        spec: the backbone's spec (``num_layers``, ``embed_layer``).
        kind: ``"embedding"`` or ``"patch_tokens"``.
        layer: a :class:`Layer`, a block index (negative from the end) or None (the kind's default).

    Raises:
        ValueError: unknown kind, or a block outside the model (the message gives the valid range).
    """
    chosen = Layer.of(layer)
    default = default_index(spec, kind)  # also rejects kinds without a block
    raw = default if chosen.index is None else chosen.index
    n = spec.num_layers
    idx = raw + n if raw < 0 else raw
    if not 0 <= idx < n:
        raise ValueError(f"{spec.name}: layer {raw} out of range (model has {n} layers: 0..{n - 1} or -1..-{n})")
    return idx


def output_layers(spec: BackboneSpec, kinds: tuple[str, ...] | list[str], layer: LayerLike = None) -> dict[str, int]:
    """The resolved block of each output kind; :data:`NOT_LAYERED` (-1) for outputs without one."""
    return {k: resolve_layer(spec, k, layer) if k in LAYERED_KINDS else NOT_LAYERED for k in kinds}
