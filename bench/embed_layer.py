"""Which block of vits14_saliency gives the best global embedding for classes?

Leave-one-out nearest-class-mean (cosine) accuracy on sample_data/stamps, per block, CLS token
(normed) and mean of patch tokens. Usage: .venv/bin/python bench/embed_layer.py
"""
from pathlib import Path

import numpy as np
import torch

from core.geometry.vectors import l2_normalize
from core.io.images import load_folder
from core.models.registry import create_backbone

ROOT = Path(__file__).resolve().parents[1]


def loo_nmc(X: np.ndarray, y: np.ndarray) -> float:
    X = l2_normalize(X)
    classes = np.unique(y)
    correct = 0
    for i in range(len(X)):
        m = np.arange(len(X)) != i
        P = np.stack([X[m & (y == c)].mean(0) for c in classes])
        P = l2_normalize(P)
        correct += classes[np.argmax(P @ X[i])] == y[i]
    return correct / len(X)


def main() -> None:
    ds = load_folder(ROOT / "sample_data" / "stamps")
    y = np.array(ds.labels)
    b = create_backbone("vits14_saliency")
    x = b.preprocess([r.decode() for r in ds.records], 224)
    print("block  CLS-LOO-NMC  patch-mean-LOO-NMC")
    for layer in range(b.spec.num_layers):
        with torch.inference_mode():
            out = b.extract(x, layer, want=("embedding", "patch_tokens"))
        cls = out["embedding"].numpy()
        pm = out["patch_tokens"].mean((1, 2)).numpy()
        print(f"{layer:5d}  {loo_nmc(cls, y):11.3f}  {loo_nmc(pm, y):18.3f}")
    for name in ("mobilenetv2", "efficientnet_lite0"):
        c = create_backbone(name)
        print(f"{name}: {loo_nmc(c.embed(c.preprocess([r.decode() for r in ds.records])).numpy(), y):.3f}")


if __name__ == "__main__":
    main()
