"""BiLRP on the CLS stream of a timm ViT: the CLS embedding split into one vector per patch.

What is implemented (BiLRP, Eberle et al., "Building and Interpreting Deep Similarity Models",
TPAMI 2022; the transformer rules of Ali et al., "XAI for Transformers: Better Explanations through
Conservative Propagation", ICML 2022):

BiLRP explains a dot-product similarity ``<phi(x), phi(x')>`` by
``R_ii' = sum_m LRP(phi_m)(x)_i * LRP(phi_m)(x')_i'``: a first-order LRP explanation of every
embedding dimension ``m`` in each image, paired up. Here ``phi`` is the unit CLS embedding (so the
dot product is the cosine), and each ``LRP(phi_m)`` is LRP-0 (gradient x input) with Ali et al.'s
conservative rules: the attention weights and every LayerNorm's standard deviation are held at their
values in the forward pass (the "AH" and "LN" rules), and the MLP's activation is a gate held at
``act(z) / z`` (the identity rule). With those held, the CLS token is a *linear* function of what
the image tokens write into it, so the relevance of every embedding dimension is propagated for all
``m`` at once as one ``[R, D]`` array of contribution vectors, exactly conserved: they sum to the
embedding, biases and the CLS token's initial value going to a ``rest`` row.

The sources are the image tokens where they enter the CLS stream: at block ``l`` the CLS query reads
token ``t`` with weight ``a_0t`` and gets ``a_0t W_O W_V LN1(x_t)``, which is credited to patch
``t``'s location; from there it is carried by the CLS token's own residual stream, LayerNorms and
MLPs up to the embedding block. A token's own earlier mixing with other tokens is not traced back
(that full BiLRP costs one pass per patch or per embedding dimension, about a minute on a CPU); a
token is taken to stand for its location, as in the direct-contribution decomposition of the CLS
token by Gandelsman et al., "Interpreting CLIP's Image Representation via Text-Based Decomposition",
ICLR 2024. Cost: about two forward passes.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import LayerScale
from timm.layers.mlp import Mlp
from timm.models.vision_transformer import Attention, Block

from core.errors import UnsupportedOperationError
from core.models.base import Backbone
from core.relate.contributions import Contributions

NAME = "bilrp_cls"
LABEL = "BiLRP on the CLS stream"
REFERENCE = ("Eberle et al., Building and Interpreting Deep Similarity Models, TPAMI 2022 (BiLRP); LRP rules for "
             "attention and LayerNorm from Ali et al., XAI for Transformers, ICML 2022; token sources as in "
             "Gandelsman et al., ICLR 2024")
_TOL = 1e-3  # relative gap allowed between this re-run and the backbone's own float32 embedding


def unsupported_reason(backbone: Backbone, block: int) -> str | None:
    """Why this method cannot decompose ``backbone``'s embedding at ``block`` (None: it can)."""
    m = backbone.model
    if not all(hasattr(m, a) for a in ("patch_embed", "blocks", "num_prefix_tokens", "_pos_embed")):
        return "not a timm ViT"
    if getattr(m, "cls_token", None) is None or getattr(m, "global_pool", None) != "token":
        return f"its embedding is not the CLS token (global_pool={getattr(m, 'global_pool', None)!r})"
    if getattr(m, "attn_pool", None) is not None:
        return "attention pooling"
    if block == backbone.spec.num_layers - 1 and not isinstance(getattr(m, "fc_norm", None), torch.nn.Identity):
        return "a norm after pooling (fc_norm)"
    if not isinstance(m.norm, torch.nn.LayerNorm):
        return f"final norm {type(m.norm).__name__} (LayerNorm supported)"
    for i, b in enumerate(list(m.blocks)[: block + 1]):
        why = _block_reason(b)
        if why:
            return f"block {i}: {why}"
    return None


def _block_reason(b: torch.nn.Module) -> str | None:
    if not isinstance(b, Block):
        return f"block type {type(b).__name__} (timm's pre-norm Block supported)"
    if not (isinstance(b.norm1, torch.nn.LayerNorm) and isinstance(b.norm2, torch.nn.LayerNorm)):
        return "norms other than LayerNorm"
    a = b.attn
    if not isinstance(a, Attention) or getattr(a, "gate", None) is not None or not isinstance(a.norm, torch.nn.Identity):
        return "attention with a gate or an output norm"
    if not (isinstance(a.q_norm, torch.nn.Identity) and isinstance(a.k_norm, torch.nn.Identity)):
        return "q/k norms"
    if not isinstance(b.mlp, Mlp) or not isinstance(b.mlp.norm, torch.nn.Identity):
        return f"MLP type {type(b.mlp).__name__} (timm's two-layer Mlp supported)"
    for ls in (b.ls1, b.ls2):
        if not isinstance(ls, LayerScale | torch.nn.Identity):
            return f"layer scale {type(ls).__name__}"
    return None


def _layer_norm(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _layer_norm_rows(rows: torch.Tensor, x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    """LayerNorm of ``x [B, C]`` given as rows ``[B, R, C]`` that sum to it, its std held (LN rule):
    centring and scaling are linear, so each row is normalised with ``x``'s std; the bias goes to
    the rest row (the last)."""
    sigma = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps)  # [B, 1]
    out = (rows - rows.mean(-1, keepdim=True)) / sigma[:, None]
    if ln.weight is not None:
        out = out * ln.weight
    if ln.bias is not None:
        out[:, -1] += ln.bias
    return out


def _scale(ls: torch.nn.Module) -> torch.Tensor | float:
    return ls.gamma if isinstance(ls, LayerScale) else 1.0


def _linear_rows(rows: torch.Tensor, lin: torch.nn.Linear) -> torch.Tensor:
    """``lin`` applied to rows that sum to its input: the weight to every row, the bias to the rest row."""
    out = F.linear(rows, lin.weight)
    if lin.bias is not None:
        out[:, -1] += lin.bias
    return out


@torch.inference_mode()
def cls_stream_contributions(backbone: Backbone, x: torch.Tensor, block: int, embedding: torch.Tensor) -> list[Contributions]:
    """One :class:`Contributions` per image of ``x [B, 3, S, S]``: its unit CLS embedding at ``block``.

    Args:
        backbone: a timm ViT whose embedding at ``block`` is the (normed) CLS token.
        x: preprocessed images.
        block: the resolved embedding block.
        embedding: ``[B, D]``, the backbone's own embeddings of ``x`` at ``block``: the re-run here must
            reproduce them, else the model is not what this method assumes and it raises.

    Raises:
        UnsupportedOperationError: a model this method does not cover (see :func:`unsupported_reason`),
            or a re-run that does not reproduce the backbone's own embedding.
    """
    why = unsupported_reason(backbone, block)
    if why:
        raise UnsupportedOperationError(f"{backbone.spec.name}: {LABEL} cannot decompose this embedding: {why}")
    with backbone.lock:
        m = backbone.model
        dynamic = getattr(m, "dynamic_img_size", False)
        h, w = m.patch_embed.dynamic_feat_size(x.shape[-2:]) if dynamic else m.patch_embed.grid_size
        tokens = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))  # [B, T, C]
        B, T, C = tokens.shape
        P = m.num_prefix_tokens
        N = T - P
        if N != h * w:
            raise UnsupportedOperationError(f"{backbone.spec.name}: {N} patch tokens for a {h}x{w} grid")
        rows = tokens.new_zeros(B, N + 1, C)  # [B, N patches + rest, C], summing to the CLS token
        rows[:, -1] = tokens[:, 0]
        for b in list(m.blocks)[: block + 1]:
            tokens, rows = _block(b, tokens, rows, P)
        emb = _layer_norm_rows(rows, tokens[:, 0], m.norm).double()  # [B, N + 1, C]
    own = embedding.detach().double()  # [B, C]
    total = emb.sum(1)  # [B, C]
    gap = float((total - own).abs().max() / own.abs().max().clamp_min(1e-12))
    if gap > _TOL:
        raise UnsupportedOperationError(
            f"{backbone.spec.name}: the CLS-stream re-run differs from the backbone's embedding by {gap:.1e} (relative)")
    emb = emb / own.norm(dim=-1)[:, None, None]  # unit length by the backbone's own norm
    return [Contributions(patches=e[:N].reshape(h, w, C).numpy(), rest=e[N].numpy()) for e in emb]


def _block(b: Any, x: torch.Tensor, rows: torch.Tensor, P: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One pre-norm block (a timm ``Block``, checked by :func:`unsupported_reason`; typed Any because its
    submodules are attributes a type checker cannot see through) on the tokens ``x [B, T, C]`` (a re-run
    of timm's forward) and on the CLS token's rows ``[B, N + 1, C]``. Returns both after the block."""
    a = b.attn
    B, T, C = x.shape
    H, hd = a.num_heads, C // a.num_heads
    # -- attention: the real forward, then what the CLS query reads, credited to each token's location
    hx = _layer_norm(x, b.norm1)  # [B, T, C]
    qkv = F.linear(hx, a.qkv.weight, a.qkv.bias).reshape(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [B, H, T, hd]
    att = ((q * a.scale) @ k.transpose(-2, -1)).softmax(-1)  # [B, H, T, T], held (AH rule)
    mixed = (att @ v).transpose(1, 2).reshape(B, T, C)
    x_mid = x + _scale(b.ls1) * F.linear(mixed, a.proj.weight, a.proj.bias)

    w_v = a.qkv.weight[2 * C:]  # [C, C] value projection
    b_v = a.qkv.bias[2 * C:] if a.qkv.bias is not None else None
    a0 = att[:, :, 0, :].repeat_interleave(hd, dim=1).transpose(1, 2)  # [B, T, C]: CLS row, per channel's head
    v_tok = F.linear(hx, w_v)  # [B, T, C], values without their bias
    v_cls = F.linear(_layer_norm_rows(rows, x[:, 0], b.norm1), w_v)  # [B, N + 1, C]: the CLS token's own value, by row
    read = a0[:, :1] * v_cls  # the CLS token reading itself, carried by its rows
    read[:, :-1] += a0[:, P:] * v_tok[:, P:]  # each patch token's value -> its location
    read[:, -1] += (a0[:, 1:P] * v_tok[:, 1:P]).sum(1)  # register tokens -> rest
    if b_v is not None:
        read[:, -1] += b_v  # attention weights sum to 1: the value bias once
    rows = rows + _scale(b.ls1) * _linear_rows(read, a.proj)

    # -- MLP of the CLS token: linear in its rows with the activation held as a gate act(z) / z
    mlp = b.mlp
    h2 = _layer_norm(x_mid, b.norm2)
    z = F.linear(h2, mlp.fc1.weight, mlp.fc1.bias)  # [B, T, 4C]
    x_out = x_mid + _scale(b.ls2) * F.linear(mlp.act(z), mlp.fc2.weight, mlp.fc2.bias)
    z0 = z[:, 0]  # [B, 4C]
    safe = torch.where(z0 == 0, torch.ones_like(z0), z0)
    gate = torch.where(z0 == 0, torch.zeros_like(z0), mlp.act(z0) / safe)  # [B, 4C]
    hidden = _linear_rows(_layer_norm_rows(rows, x_mid[:, 0], b.norm2), mlp.fc1) * gate[:, None]
    rows = rows + _scale(b.ls2) * _linear_rows(hidden, mlp.fc2)
    return x_out, rows
