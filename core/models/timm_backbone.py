"""A :class:`Backbone` over any timm model: ViTs (tokens, attention) and CNNs (feature maps)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from core.errors import UnsupportedOperationError
from core.models.base import Backbone, locked, tokens_to_grid
from core.models.layers import LayerLike
from core.models.spec import BackboneSpec

WANTS = ("embedding", "patch_tokens", "attention_cls", "logits")


def is_timm_vit(model: torch.nn.Module) -> bool:
    """Token models with a patch embedding, blocks and prefix tokens (ViT, DeiT, DINOv2, EVA...)."""
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "num_prefix_tokens"))


class TimmBackbone(Backbone):
    """Wraps a timm model that this object built and owns (it is put in eval mode here)."""

    def __init__(self, model: torch.nn.Module, spec: BackboneSpec, class_names: list[str] | None = None):
        self.model: Any = model.eval().requires_grad_(False)
        self.spec = spec
        self.class_names = class_names
        self.is_vit = is_timm_vit(model)
        if not self.is_vit:
            # convolution weights in channels-last layout, whatever the input's: oneDNN's NHWC kernels ran
            # MobileNetV2's and EfficientNet-Lite0's batch-8 forwards 2.9-3.4x and forward + backward 1.5-2x
            # faster on 2 cores, the whole extraction 1.4-1.5x (outputs move by ~2e-6 relative)
            self.model.to(memory_format=torch.channels_last)

    # ---- bare forward (benchmarks) -------------------------------------------------------------
    @locked
    @torch.inference_mode()
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    # ---- one forward, several outputs ----------------------------------------------------------
    @locked
    @torch.inference_mode()
    def extract(self, x: torch.Tensor, layer: LayerLike = None, *, want: Sequence[str] = ("embedding",)) -> dict[str, torch.Tensor]:
        unknown = set(want) - set(WANTS)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {WANTS}")
        if "logits" in want and not self.spec.has_classifier:
            self.logits(x)  # raises the explanatory error
        if "attention_cls" in want and not self.spec.has_attention:
            self.attention(x)  # raises the explanatory error
        emb_idx = self.resolve_layer(layer, "embedding")
        tok_idx = self.resolve_layer(layer, "patch_tokens")
        need = sorted({i for i, k in ((emb_idx, "embedding"), (tok_idx, "patch_tokens")) if k in want}) or [tok_idx]
        with self._capture_attention(enabled="attention_cls" in want) as attn:
            final, blocks = self._forward_blocks(x, need)
        out = {}
        if "embedding" in want:
            tokens, prefix = blocks[emb_idx]
            out["embedding"] = self._pooled(final, tokens, prefix, emb_idx)
        if "patch_tokens" in want:
            out["patch_tokens"] = blocks[tok_idx][0]
        if "logits" in want:
            out["logits"] = self.model.forward_head(final)
        if "attention_cls" in want:
            p = self.model.num_prefix_tokens
            out["attention_cls"] = torch.stack([a[:, :, 0, p:] for a in attn], dim=1)  # [N, L, H, h*w]
        return out

    @locked
    @torch.inference_mode()
    def extract_layers(self, x: torch.Tensor, layers: Sequence[int], *,
                       want: Sequence[str] = ("embedding",)) -> dict[int, dict[str, torch.Tensor]]:
        """Embeddings / patch tokens at several blocks from ONE forward (``forward_intermediates``)."""
        if set(want) - {"embedding", "patch_tokens"}:
            raise ValueError(f"extract_layers gives embedding and patch_tokens, not {sorted(set(want))}")
        idx = sorted({self.resolve_layer(i) for i in layers})
        final, blocks = self._forward_blocks(x, idx)
        out = {}
        for layer in layers:
            i = self.resolve_layer(layer)
            tokens, prefix = blocks[i]
            out[layer] = {k: self._pooled(final, tokens, prefix, i) if k == "embedding" else tokens for k in want}
        return out

    def _forward_blocks(self, x: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, dict]:
        """One forward: the final features and, per block index, ``(tokens [N, h, w, D], prefix)``
        (prefix ``[N, P, D]`` for ViTs, None for CNNs, whose last index is the final feature map)."""
        m = self.model
        if self.is_vit:
            dynamic = getattr(m, "dynamic_img_size", False)
            h, w = m.patch_embed.dynamic_feat_size(x.shape[-2:]) if dynamic else m.patch_embed.grid_size
            final, inter = m.forward_intermediates(x, indices=idx, return_prefix_tokens=True, norm=True,
                                                   output_fmt="NLC", intermediates_only=False)
            # spatial [N, h*w, D] -> [N, h, w, D]; prefix [N, P, D] (CLS + registers, the model's own count)
            return final, {i: (s.reshape(s.shape[0], h, w, -1), p) for i, (s, p) in zip(idx, inter)}
        last = self.spec.num_layers - 1
        stages = [i for i in idx if i < last]
        if stages:
            final, inter = m.forward_intermediates(x, indices=stages, intermediates_only=False)
        else:
            final, inter = m.forward_features(x), []
        maps = {**dict(zip(stages, inter)), last: final}  # idx -> [N, C, h, w]
        return final, {i: (maps[i].permute(0, 2, 3, 1).contiguous(), None) for i in idx}

    def _pooled(self, final: torch.Tensor, tokens: torch.Tensor, prefix: torch.Tensor | None, idx: int) -> torch.Tensor:
        """The global embedding ``[N, D]`` at block ``idx``: the model's own head pooling at the last
        block; before it, the normed CLS token of token-pooled ViTs, else the mean of the tokens."""
        m = self.model
        if idx == self.spec.num_layers - 1:
            return m.forward_head(final, pre_logits=True)
        if prefix is not None and prefix.shape[1] > 0 and getattr(m, "global_pool", "token") == "token":
            return prefix[:, 0]
        return tokens.mean((1, 2))

    # ---- attention ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _capture_attention(self, enabled: bool) -> Iterator[list[torch.Tensor]]:
        """Collects each block's softmax attention ``[N, H, T, T]`` during one forward.

        timm picks fused attention (no weights visible) when a block is built; it is switched
        off on this instance only for the duration, and the hooks are always removed.
        """
        store: list[torch.Tensor] = []
        if not enabled:
            yield store
            return
        blocks = list(self.model.blocks)
        saved = [b.attn.fused_attn for b in blocks]
        handles = [b.attn.attn_drop.register_forward_hook(lambda _m, _i, o: store.append(o)) for b in blocks]
        try:
            for b in blocks:
                b.attn.fused_attn = False
            yield store
        finally:
            for b, f in zip(blocks, saved):
                b.attn.fused_attn = f
            for hnd in handles:
                hnd.remove()

    @locked
    @torch.inference_mode()
    def attention(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spec.has_attention:
            return super().attention(x)
        with self._capture_attention(enabled=True) as attn:
            self.model.forward_features(x)
        if len(attn) != self.spec.num_layers:
            raise UnsupportedOperationError(
                f"{self.spec.name}: captured attention from {len(attn)} of {self.spec.num_layers} blocks; "
                "this block type does not expose softmax attention")
        return torch.stack(attn, dim=1)  # [N, L, H, T, T]

    # ---- Grad-CAM -------------------------------------------------------------------------------
    def cam_target_layers(self) -> list[torch.nn.Module]:
        m = self.model
        if self.is_vit:
            return [m.blocks[-1].norm1]
        for name in ("bn2", "conv_head"):
            mod = getattr(m, name, None)
            if isinstance(mod, torch.nn.Module) and not isinstance(mod, torch.nn.Identity):
                return [mod]
        return [m.get_submodule(m.feature_info[-1]["module"])]

    def cam_reshape_transform(self, size: int | None = None):
        if not self.is_vit:
            return None
        return tokens_to_grid(self.spec.grid(size), self.model.num_prefix_tokens)


def timm_spec_fields(model: Any, *, input_size: int | None = None) -> dict[str, Any]:
    """Spec fields read from a built timm model and its pretrained config (never hard-coded)."""
    cfg = model.pretrained_cfg
    vit = is_timm_vit(model)
    if vit:
        patch = model.patch_embed.patch_size[0]
        size = input_size or model.patch_embed.img_size[0]
        n_layers = len(model.blocks)
        prefix = model.num_prefix_tokens
    else:
        patch = model.feature_info[-1]["reduction"]
        size = input_size or cfg.get("input_size", (3, 224, 224))[-1]
        n_layers = len(model.feature_info) + 1  # stages, then the final feature map
        prefix = 0
    return dict(
        family="vit" if vit else "cnn",
        input_size=size,
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        patch_size=patch,
        num_prefix_tokens=prefix,
        num_layers=n_layers,
        has_attention=vit,
        has_classifier=getattr(model, "num_classes", 0) > 0,
        size_multiple=patch if vit else 32,
    )
