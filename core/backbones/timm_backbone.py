"""A :class:`Backbone` over any timm model: ViTs (tokens, attention) and CNNs (feature maps)."""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from core.backbones.base import Backbone, locked
from core.errors import UnsupportedOperationError
from core.spec import BackboneSpec

WANTS = ("embedding", "patch_tokens", "attention_cls", "logits")


def is_timm_vit(model: torch.nn.Module) -> bool:
    """Token models with a patch embedding, blocks and prefix tokens (ViT, DeiT, DINOv2, EVA...)."""
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "num_prefix_tokens"))


class TimmBackbone(Backbone):
    """Wraps a timm model that this object built and owns (it is put in eval mode here)."""

    def __init__(self, model: torch.nn.Module, spec: BackboneSpec, class_names: list[str] | None = None):
        self.model = model.eval().requires_grad_(False)
        self.spec = spec
        self.class_names = class_names
        self.is_vit = is_timm_vit(model)

    # ---- bare forward (benchmarks) -------------------------------------------------------------
    @locked
    @torch.inference_mode()
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    # ---- one forward, several outputs ----------------------------------------------------------
    @locked
    @torch.inference_mode()
    def extract(self, x: torch.Tensor, layer: int | None = None, *, want: Sequence[str] = ("embedding",)) -> dict[str, torch.Tensor]:
        unknown = set(want) - set(WANTS)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {WANTS}")
        if "logits" in want and not self.spec.has_classifier:
            self.logits(x)  # raises the explanatory error
        if "attention_cls" in want and not self.spec.has_attention:
            self.attention(x)  # raises the explanatory error
        if self.is_vit:
            return self._extract_vit(x, layer, want)
        return self._extract_cnn(x, layer, want)

    def _extract_vit(self, x, layer, want) -> dict[str, torch.Tensor]:
        m, out = self.model, {}
        emb_idx = self.resolve_layer(layer)
        tok_idx = self.resolve_layer(-1 if layer is None else layer)
        h, w = m.patch_embed.dynamic_feat_size(x.shape[-2:]) if getattr(m, "dynamic_img_size", False) else m.patch_embed.grid_size
        with self._capture_attention(enabled="attention_cls" in want) as attn:
            final, inter = m.forward_intermediates(
                x, indices=sorted({emb_idx, tok_idx}), return_prefix_tokens=True, norm=True,
                output_fmt="NLC", intermediates_only=False,
            )
        by_idx = dict(zip(sorted({emb_idx, tok_idx}), inter))  # idx -> (spatial [N, h*w, D], prefix [N, P, D])
        if "embedding" in want:
            spatial, prefix = by_idx[emb_idx]
            if emb_idx == self.spec.num_layers - 1:
                out["embedding"] = m.forward_head(final, pre_logits=True)  # the model's own pooling
            elif getattr(m, "global_pool", "token") == "token" and prefix.shape[1] > 0:
                out["embedding"] = prefix[:, 0]  # normed CLS of that block
            else:
                out["embedding"] = spatial.mean(1)
        if "patch_tokens" in want:
            spatial, _ = by_idx[tok_idx]
            out["patch_tokens"] = spatial.reshape(spatial.shape[0], h, w, -1)  # [N, h, w, D]
        if "logits" in want:
            out["logits"] = m.forward_head(final)
        if "attention_cls" in want:
            p = m.num_prefix_tokens
            out["attention_cls"] = torch.stack([a[:, :, 0, p:] for a in attn], dim=1)  # [N, L, H, h*w]
        return out

    def _extract_cnn(self, x, layer, want) -> dict[str, torch.Tensor]:
        m, out = self.model, {}
        idx = self.resolve_layer(-1 if layer is None else layer)
        last = self.spec.num_layers - 1  # the last index is forward_features (the final feature map)
        feats = m.forward_features(x)  # [N, C, h, w]
        if idx == last:
            fmap = feats
        else:
            fmap = m.forward_intermediates(x, indices=[idx], intermediates_only=True)[0]
        if "embedding" in want:
            out["embedding"] = m.forward_head(feats, pre_logits=True) if idx == last else fmap.mean((2, 3))
        if "patch_tokens" in want:
            out["patch_tokens"] = fmap.permute(0, 2, 3, 1).contiguous()  # [N, h, w, C]
        if "logits" in want:
            out["logits"] = m.forward_head(feats)
        return out

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
            if isinstance(getattr(m, name, None), torch.nn.Module) and not isinstance(getattr(m, name), torch.nn.Identity):
                return [getattr(m, name)]
        return [m.get_submodule(m.feature_info[-1]["module"])]

    def cam_reshape_transform(self, size: int | None = None):
        if not self.is_vit:
            return None
        h, w = self.spec.grid(size)
        p = self.model.num_prefix_tokens

        def reshape(t: torch.Tensor) -> torch.Tensor:  # [N, T, D] -> [N, D, h, w]
            return t[:, p:].reshape(t.shape[0], h, w, t.shape[-1]).permute(0, 3, 1, 2)

        return reshape


def timm_spec_fields(model: torch.nn.Module, *, input_size: int | None = None) -> dict:
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
