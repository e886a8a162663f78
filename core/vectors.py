"""Vector helpers shared by the numeric views."""
from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Unit-normalise the last axis in float64 (stable cosines); rows of norm below ``eps`` stay ~0."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)
