"""Attention maps of ViTs: CLS-to-patch maps per layer and head, attention rollout (with its one set of
default settings, :data:`DEFAULT_ROLLOUT`), and the attention of one image through a backbone.

Token layout (timm): ``T = num_prefix_tokens + h * w`` tokens, CLS at index 0, then register tokens
(if any), then the patch tokens in raster order. Prefix counts and grid sizes are always passed in.
Inputs may be numpy arrays or CPU torch tensors; outputs are numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.explain.maps import normalize01
from core.models.base import Backbone

HeadFusion = Literal["mean", "max", "min"]


def _check_layout(T: int, num_prefix_tokens: int, grid: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(g) for g in grid)
    if num_prefix_tokens < 1:
        raise ValueError(f"num_prefix_tokens must be >= 1 (the CLS token), got {num_prefix_tokens}")
    if h <= 0 or w <= 0:
        raise ValueError(f"grid must be positive (h, w), got {grid}")
    if T != num_prefix_tokens + h * w:
        raise ValueError(
            f"attention has {T} tokens but num_prefix_tokens={num_prefix_tokens} + grid {h}x{w} "
            f"= {num_prefix_tokens + h * w}; pass the backbone's spec.num_prefix_tokens and "
            "spec.grid(size) for the input size used"
        )
    return h, w


def cls_rows_to_maps(cls_rows: np.ndarray | torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Reshape CLS-to-patch rows ``[..., h*w]`` (``extract(want=("attention_cls",))``) to ``[..., h, w]``."""
    rows = np.asarray(cls_rows, dtype=np.float32)
    h, w = (int(g) for g in grid)
    if rows.ndim < 1 or rows.shape[-1] != h * w:
        raise ValueError(f"CLS rows must end in h*w={h * w} patches for grid {grid}, got shape {rows.shape}")
    return rows.reshape(*rows.shape[:-1], h, w).copy()  # [..., h, w], never a view of the caller's array


def cls_attention_maps(
    attn: np.ndarray | torch.Tensor,
    num_prefix_tokens: int,
    grid: tuple[int, int],
) -> np.ndarray:
    """CLS-token attention to every patch, per layer and head.

    Args:
        attn: ``[L, H, T, T]`` or ``[N, L, H, T, T]`` post-softmax attention (rows = queries).
        num_prefix_tokens: CLS + register tokens before the patches (all are skipped as keys).
        grid: patch grid ``(h, w)``.

    Returns:
        ``[L, H, h, w]`` or ``[N, L, H, h, w]``: row 0 (CLS query) over the patch keys.
    """
    a = np.asarray(attn, dtype=np.float32)
    if a.ndim not in (4, 5) or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attn must be [L, H, T, T] or [N, L, H, T, T], got shape {a.shape}")
    _check_layout(a.shape[-1], num_prefix_tokens, grid)
    rows = a[..., 0, num_prefix_tokens:]  # [..., L, H, h*w]
    return cls_rows_to_maps(rows, grid)  # [..., L, H, h, w]


def _fuse_heads(a: np.ndarray, head_fusion: HeadFusion) -> np.ndarray:
    """``[H, T, T]`` -> ``[T, T]``."""
    if head_fusion == "mean":
        return a.mean(axis=0)
    if head_fusion == "max":
        return a.max(axis=0)
    if head_fusion == "min":
        return a.min(axis=0)
    raise ValueError(f"unknown head_fusion {head_fusion!r}; use 'mean', 'max' or 'min'")


def attention_rollout(
    attn: np.ndarray | torch.Tensor,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020), following jacobgil's ``vit-explain``.

    For each layer ``l >= start_layer``: fuse heads -> ``A [T, T]``; zero the
    ``int(discard_ratio * T * T)`` smallest entries of ``A`` (never CLS->CLS, entry ``[0, 0]``);
    ``A <- A + I``; renormalise rows to sum 1; ``R <- A @ R`` (so ``R = A_{L-1} ... A_start``).
    Unlike vit-explain, rows are normalised with ``keepdims`` (vit-explain divides columns by row
    sums, a known broadcasting slip).

    Args:
        attn: ``[L, H, T, T]`` post-softmax attention of one image.
        head_fusion: how heads are combined: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: fraction in ``[0, 1)`` of each layer's fused weights set to zero.
        start_layer: first layer included (negative counts from the end).

    Returns:
        ``[T, T]`` rollout; row ``i`` says how much output token ``i`` draws on each input token.
    """
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attn must be [L, H, T, T] for one image, got shape {a.shape}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    L, T = a.shape[0], a.shape[-1]
    start = start_layer + L if start_layer < 0 else start_layer
    if not 0 <= start < L:
        raise ValueError(f"start_layer {start_layer} out of range for {L} layers")

    eye = np.eye(T)
    result = np.eye(T)  # [T, T]
    n_discard = int(T * T * discard_ratio)
    for layer in range(start, L):
        fused = _fuse_heads(a[layer], head_fusion)  # [T, T]
        if n_discard > 0:
            flat = fused.reshape(-1).copy()  # [T*T]
            lowest = np.argsort(flat, kind="stable")[:n_discard]
            lowest = lowest[lowest != 0]  # keep CLS->CLS
            flat[lowest] = 0.0
            fused = flat.reshape(T, T)
        fused = fused + eye
        fused = fused / fused.sum(axis=-1, keepdims=True)  # rows sum to 1
        result = fused @ result  # [T, T]
    return result.astype(np.float32)


def rollout_cls_map(
    attn: np.ndarray | torch.Tensor,
    num_prefix_tokens: int,
    grid: tuple[int, int],
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
) -> np.ndarray:
    """The CLS row of :func:`attention_rollout` over the patches, as a ``[h, w]`` map in ``[0, 1]``.

    Args:
        attn: ``[L, H, T, T]`` attention of one image.
        num_prefix_tokens: CLS + register tokens (all skipped).
        grid: patch grid ``(h, w)``.
        head_fusion / discard_ratio / start_layer: see :func:`attention_rollout`.

    Returns:
        ``[h, w]`` min-max normalised map.
    """
    a = np.asarray(attn)
    if a.ndim != 4:
        raise ValueError(f"attn must be [L, H, T, T] for one image, got shape {a.shape}")
    _check_layout(a.shape[-1], num_prefix_tokens, grid)
    r = attention_rollout(a, head_fusion, discard_ratio, start_layer)  # [T, T]
    return normalize01(cls_rows_to_maps(r[0, num_prefix_tokens:], grid))  # [h, w]


# ---- rollout settings: one default for every caller (Saliency page, Compare page, report card) ----
@dataclass(frozen=True)
class RolloutParams:
    """Settings of :func:`rollout_cls_map`.

    Attributes:
        head_fusion: how heads are combined per block.
        discard_ratio: fraction of each block's weakest fused weights set to zero (vit-explain's 0.9).
        start_layer: first block rolled out; None = the middle block (``L // 2``): rolling out from block
            0 lets the few high-norm "artifact" tokens of DINOv2 without registers dominate, later starts
            show the object.
    """

    head_fusion: HeadFusion = "mean"
    discard_ratio: float = 0.9
    start_layer: int | None = None

    def start(self, num_layers: int) -> int:
        """The first block for a model of ``num_layers`` blocks."""
        return num_layers // 2 if self.start_layer is None else int(self.start_layer)


DEFAULT_ROLLOUT = RolloutParams()


# ---- one image through a backbone ------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionMaps:
    """All attention of one image.

    Attributes:
        attn: ``[L, H, T, T]`` softmax attention, ``T = num_prefix_tokens + h * w``.
        cls_maps: ``[L, H, h, w]`` CLS-to-patch attention per block and head.
        num_prefix_tokens: CLS + register tokens.
        grid: ``(h, w)``.
    """

    attn: np.ndarray
    cls_maps: np.ndarray
    num_prefix_tokens: int
    grid: tuple[int, int]

    def head_map(self, block: int = -1, head: int | HeadFusion = "mean") -> np.ndarray:
        """CLS-to-patch attention of one block: one head (an index) or the heads fused, ``[h, w]``."""
        L, H = self.cls_maps.shape[:2]
        if not -L <= block < L:
            raise ValueError(f"block {block} out of range for {L} blocks (0..{L - 1} or -1..-{L})")
        maps = self.cls_maps[block]  # [H, h, w]
        if isinstance(head, str):
            return _fuse_heads(maps, head)  # [h, w]
        if not 0 <= int(head) < H:
            raise ValueError(f"head {head} out of range for {H} heads; or use 'mean', 'max' or 'min'")
        return maps[int(head)].copy()

    def rollout(self, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0, start_layer: int = 0) -> np.ndarray:
        """Attention rollout of the CLS token over the patches, ``[h, w]`` in ``[0, 1]``."""
        return rollout_cls_map(self.attn, self.num_prefix_tokens, self.grid, head_fusion, discard_ratio, start_layer)

    def rollout_with(self, params: RolloutParams = DEFAULT_ROLLOUT) -> np.ndarray:
        """:meth:`rollout` with a :class:`RolloutParams` (start block resolved for this model)."""
        return self.rollout(params.head_fusion, params.discard_ratio, params.start(self.attn.shape[0]))


def vit_attention(b: Backbone, x: torch.Tensor) -> AttentionMaps:
    """Attention of one image ``x [1, 3, S, S]`` (ViTs; others raise ``UnsupportedOperationError``)."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, 3, S, S], got shape {tuple(x.shape)}")
    grid = b.spec.grid(int(x.shape[-1]))
    with b.lock:
        attn = b.attention(x.to(b.device))[0].float().cpu().numpy()  # [L, H, T, T]
    p = b.spec.num_prefix_tokens
    return AttentionMaps(attn, cls_attention_maps(attn, p, grid), p, grid)


def cls_attention_map(b: Backbone, x: torch.Tensor, block: int = -1) -> np.ndarray:
    """Head-mean CLS-to-patch attention of one block for one image ``x [1, 3, S, S]``: ``[h, w]``.

    Reads only the CLS rows (``extract(want=("attention_cls",))``), lighter than :func:`vit_attention`.
    """
    with b.lock:
        rows = b.extract(x.to(b.device), None, want=("attention_cls",))["attention_cls"]  # [1, L, H, h*w]
    return cls_rows_to_maps(rows[0, block].float().cpu().numpy().mean(0), b.spec.grid(int(x.shape[-1])))  # [h, w]
