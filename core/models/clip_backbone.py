"""A :class:`Backbone` over an open_clip model: ViT image tower, text tower, attention."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from core.errors import UnsupportedOperationError
from core.models.base import Backbone, locked, tokens_to_grid
from core.models.layers import LayerLike
from core.models.spec import BackboneSpec, Source

WANTS = ("embedding", "patch_tokens", "attention_cls")


class ClipBackbone(Backbone):
    """open_clip models with a ViT image tower (``model.visual.transformer.resblocks``)."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, arch: str, weights_name: str, weights_sha256: str,
                 source: Source):
        import open_clip

        self.model: Any = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        visual = model.visual
        if not hasattr(visual, "transformer"):
            raise UnsupportedOperationError(
                f"{name}: only open_clip models with a ViT image tower are supported (got {type(visual).__name__})")
        pre = open_clip.get_model_preprocess_cfg(model)
        size = pre["size"] if isinstance(pre["size"], int) else pre["size"][0]
        patch = visual.patch_size[0] if isinstance(visual.patch_size, tuple) else visual.patch_size
        self.blocks = list(visual.transformer.resblocks)
        self.spec = BackboneSpec(
            name=name, source=source, family="clip", architecture=arch, weights_name=weights_name,
            weights_sha256=weights_sha256, input_size=size, mean=tuple(pre["mean"]), std=tuple(pre["std"]),
            patch_size=patch, num_prefix_tokens=1, num_layers=len(self.blocks), has_attention=True,
            has_text=True, size_multiple=patch, fixed_size=True,
            description=f"open_clip {arch} ({weights_name}): CLIP image tower plus text tower for zero-shot "
                        "prototypes.",
        )

    @locked
    @torch.inference_mode()
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)

    @locked
    @torch.inference_mode()
    def extract(self, x: torch.Tensor, layer: LayerLike = None, *, want: Sequence[str] = ("embedding",)) -> dict[str, torch.Tensor]:
        unknown = set(want) - set(WANTS)
        if "logits" in want:
            self.logits(x)  # raises: CLIP has no classifier head (use text prototypes)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {WANTS}")
        out = {}
        emb_idx = self.resolve_layer(layer, "embedding")
        tok_idx = self.resolve_layer(layer, "patch_tokens")
        with self._capture_attention("attention_cls" in want) as attn:
            res = self.model.forward_intermediates(
                image=x, image_indices=sorted({emb_idx, tok_idx}), normalize=False,
                image_output_fmt="NCHW", image_output_extra_tokens=True)
        by_idx = dict(zip(sorted({emb_idx, tok_idx}),
                          zip(res["image_intermediates"], res["image_intermediates_prefix"])))
        if "embedding" in want:
            if emb_idx == self.spec.num_layers - 1:
                out["embedding"] = res["image_features"]  # the projected CLIP image embedding [N, E]
            else:
                out["embedding"] = by_idx[emb_idx][1][:, 0]  # CLS token of that block [N, D]
        if "patch_tokens" in want:
            out["patch_tokens"] = by_idx[tok_idx][0].permute(0, 2, 3, 1).contiguous()  # [N, h, w, D]
        if "attention_cls" in want:
            p = self.spec.num_prefix_tokens
            out["attention_cls"] = torch.stack([a[:, :, 0, p:] for a in attn], dim=1)  # [N, L, H, h*w]
        return out

    @contextlib.contextmanager
    def _capture_attention(self, enabled: bool) -> Iterator[list[torch.Tensor]]:
        """open_clip calls MultiheadAttention with need_weights=False, so the softmax attention
        ``[N, H, T, T]`` is recomputed from each block's ``ln_1`` output and its q/k projections."""
        store: list[torch.Tensor] = []
        if not enabled:
            yield store
            return

        def hook(block):
            def fn(_m, _i, x):  # x: [N, T, D] (batch_first)
                mha = block.attn
                d, nh = mha.embed_dim, mha.num_heads
                bias = mha.in_proj_bias[: 2 * d] if mha.in_proj_bias is not None else None
                qk = F.linear(x, mha.in_proj_weight[: 2 * d], bias)
                q, k = qk.reshape(x.shape[0], x.shape[1], 2, nh, d // nh).permute(2, 0, 3, 1, 4)  # 2 x [N, H, T, hd]
                store.append(((q * (d // nh) ** -0.5) @ k.transpose(-2, -1)).softmax(-1))
            return fn

        handles = [b.ln_1.register_forward_hook(hook(b)) for b in self.blocks]
        try:
            yield store
        finally:
            for h in handles:
                h.remove()

    @locked
    @torch.inference_mode()
    def attention(self, x: torch.Tensor) -> torch.Tensor:
        with self._capture_attention(True) as attn:
            self.model.encode_image(x)
        return torch.stack(attn, dim=1)  # [N, L, H, T, T]

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(list(texts)))  # [M, E]

    def cam_target_layers(self) -> list[torch.nn.Module]:
        return [self.blocks[-1].ln_1]

    def cam_reshape_transform(self, size: int | None = None):
        return tokens_to_grid(self.spec.grid(size), self.spec.num_prefix_tokens)
