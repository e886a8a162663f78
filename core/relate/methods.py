"""The table of decomposition methods: which one explains a backbone's embedding at a block.

A method takes the preprocessed pair and the backbone's own outputs of one forward pass and returns
each image's :class:`~core.relate.contributions.Contributions`. The first method in the table that
applies is used: the exact mean-pool decomposition where the embedding is the mean of the patch
features, else an attribution method.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.errors import UnsupportedOperationError
from core.models.base import Backbone
from core.relate import cls_stream, mean_pool
from core.relate.contributions import Contributions


@dataclass(frozen=True)
class Forward:
    """What one forward pass of the pair gave.

    Attributes:
        x: ``[2, 3, S, S]`` preprocessed images.
        block: the resolved embedding block.
        embedding: ``[2, D]`` the backbone's own global embeddings at ``block``.
        tokens: ``[2, h, w, D']`` patch tokens (CNN: feature map) of the same block.
    """

    x: torch.Tensor
    block: int
    embedding: torch.Tensor
    tokens: torch.Tensor


@dataclass(frozen=True)
class DecompositionMethod:
    """One way to split an embedding into patch contributions.

    Attributes:
        name: registry key (``"mean_pool"``, ``"bilrp_cls"``).
        label: shown on the figure and the page.
        reference: the identity or the paper(s) it follows.
        exact: True when the pair terms sum to the cosine by an identity, not by an attribution rule.
        unsupported: ``(backbone, forward) -> reason | None``: why it does not apply (None: it does).
        decompose: ``(backbone, forward) -> [Contributions a, Contributions b]``.
    """

    name: str
    label: str
    reference: str
    exact: bool
    unsupported: Callable[[Backbone, Forward], str | None]
    decompose: Callable[[Backbone, Forward], list[Contributions]]


METHODS: dict[str, DecompositionMethod] = {}  # in the order they are tried


def register_method(method: DecompositionMethod) -> DecompositionMethod:
    if method.name in METHODS:
        raise ValueError(f"decomposition method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def choose_method(backbone: Backbone, fwd: Forward, name: str | None = None) -> DecompositionMethod:
    """The named method, or the first that applies; raises with every method's reason when none does."""
    if name is not None:
        if name not in METHODS:
            raise ValueError(f"unknown decomposition method {name!r}; known: {', '.join(METHODS)}")
        candidates = [METHODS[name]]
    else:
        candidates = list(METHODS.values())
    reasons = []
    for m in candidates:
        why = m.unsupported(backbone, fwd)
        if why is None:
            return m
        reasons.append(f"{m.name}: {why}")
    raise UnsupportedOperationError(
        f"{backbone.spec.name}, block {fwd.block}: no decomposition of this embedding ({'; '.join(reasons)})")


def _mean_unsupported(backbone: Backbone, fwd: Forward) -> str | None:
    if mean_pool.is_mean_of_patches(fwd.tokens, fwd.embedding):
        return None
    return "the embedding is not the mean of the block's patch features"


register_method(DecompositionMethod(
    name=mean_pool.NAME, label=mean_pool.LABEL, reference=mean_pool.REFERENCE, exact=True,
    unsupported=_mean_unsupported,
    decompose=lambda backbone, fwd: mean_pool.mean_pool_contributions(fwd.tokens)))

register_method(DecompositionMethod(
    name=cls_stream.NAME, label=cls_stream.LABEL, reference=cls_stream.REFERENCE, exact=False,
    unsupported=lambda backbone, fwd: cls_stream.unsupported_reason(backbone, fwd.block),
    decompose=lambda backbone, fwd: cls_stream.cls_stream_contributions(backbone, fwd.x, fwd.block, fwd.embedding)))
