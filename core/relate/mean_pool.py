"""The exact decomposition of a mean-pooled embedding (a CNN's global average pool, a ViT's mean of
patch tokens): with ``a = mean_i f_i`` and ``b = mean_j g_j`` over ``N`` and ``M`` patches,

    cos(a, b) = sum_ij <f_i, g_j> / (N M |a| |b|),

so patch ``i`` contributes the vector ``c_i = f_i / (N |a|)`` and nothing is left over.
"""
from __future__ import annotations

import numpy as np
import torch

from core.relate.contributions import Contributions

NAME = "mean_pool"
LABEL = "exact mean-pool decomposition"
REFERENCE = ("exact identity: the embedding is the mean of the patch features, so "
             "cos(mean f, mean g) = sum_ij <f_i, g_j> / (N M |mean f| |mean g|)")
RTOL = 1e-4  # float32 means of a few hundred patches agree with the pooled embedding to about 1e-7


def is_mean_of_patches(tokens: torch.Tensor, embedding: torch.Tensor) -> bool:
    """Whether ``embedding [B, D]`` is the mean of ``tokens [B, h, w, D]`` for every image (checked on the
    numbers themselves, so any pooling that is not a plain mean (CLS token, norm or projection after
    the pool) fails it)."""
    if tokens.ndim != 4 or tokens.shape[0] != embedding.shape[0] or tokens.shape[-1] != embedding.shape[-1]:
        return False
    mean = tokens.double().mean((1, 2))  # [B, D]
    emb = embedding.double()
    return bool(((mean - emb).abs().max() <= RTOL * emb.abs().max() + 1e-6).item())


def mean_pool_contributions(tokens: torch.Tensor) -> list[Contributions]:
    """``c_i = f_i / (N |mean f|)`` for each image of ``tokens [B, h, w, D]`` (float64, rest = 0)."""
    f = tokens.detach().double()  # [B, h, w, D]
    n = f.shape[1] * f.shape[2]
    norms = f.mean((1, 2)).norm(dim=-1)  # [B]
    if bool((norms == 0).any()):
        raise ValueError("an image's pooled embedding is zero: its cosine is undefined")
    c = f / (n * norms[:, None, None, None])
    return [Contributions(patches=ci.numpy(), rest=np.zeros(f.shape[-1])) for ci in c]
