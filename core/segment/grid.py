"""Patch tokens of one image as a ``[h, w, D]`` float32 grid, shared by the segmentation modules."""
from __future__ import annotations

import numpy as np
import torch

# Added to norms before dividing (segmentation keeps its own epsilon, see core.geometry.vectors.l2_normalize).
EPS = 1e-8


def as_grid_tokens(tokens: np.ndarray | torch.Tensor, name: str = "tokens") -> np.ndarray:
    """``tokens`` as a float32 ``[h, w, D]`` array; raises if it is not one image's patch grid."""
    t = np.asarray(tokens, dtype=np.float32)
    if t.ndim != 3:
        raise ValueError(f"{name} must be [h, w, D] patch tokens of one image, got shape {t.shape}")
    return t
