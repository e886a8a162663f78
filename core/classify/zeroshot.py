"""CLIP-style zero-shot prototypes: prompt-ensemble text prototypes, their blend with image
prototypes, and nearest-prototype prediction (Radford et al., CLIP, 2021)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from core.geometry.vectors import as_features, distances, l2_normalize

# The 7 prompt templates of CLIP's ImageNet prompt-engineering notebook, plus the plain one.
CLIP_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


# ---- zero-shot prototypes ---------------------------------------------------------------------------
def prompt_prototypes(
    encode_text: Callable[[list[str]], np.ndarray],
    classes: Sequence[str],
    templates: Sequence[str] = CLIP_TEMPLATES,
) -> np.ndarray:
    """CLIP prompt-ensemble text prototypes.

    For every template, ``encode_text([template.format(c) for c in classes])`` gives ``[K, D]``;
    rows are L2-normalised, averaged over templates and re-normalised.

    Args:
        encode_text: texts ``[M]`` -> embeddings ``[M, D]``.
        classes: class names ``[K]``.
        templates: format strings with one ``{}``.

    Returns:
        ``[K, D]`` unit-norm text prototypes (float64).
    """
    if len(classes) == 0 or len(templates) == 0:
        raise ValueError("need at least one class name and one template")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' placeholder; bad: {bad}")
    acc = None
    for t in templates:
        E = as_features(encode_text([t.format(c) for c in classes]), "encode_text output")  # [K, D]
        if len(E) != len(classes):
            raise ValueError(f"encode_text returned {len(E)} rows for {len(classes)} texts")
        acc = l2_normalize(E) if acc is None else acc + l2_normalize(E)
    if acc is None:
        raise ValueError("give at least one prompt template")
    return l2_normalize(acc / len(templates))


def mix_prototypes(text_protos: ArrayLike, image_protos: ArrayLike, mix: float = 0.5) -> np.ndarray:
    """Blend text and image prototypes: ``normalise((1 - mix) * t/|t| + mix * i/|i|)``.

    Args:
        text_protos: ``[K, D]``.
        image_protos: ``[K, D]`` (same class order).
        mix: 0 = text only, 1 = image only.

    Returns:
        ``[K, D]`` unit-norm prototypes.
    """
    T = as_features(text_protos, "text_protos")
    I = as_features(image_protos, "image_protos")
    if T.shape != I.shape:
        raise ValueError(f"text_protos {T.shape} and image_protos {I.shape} must have the same shape [K, D]")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    return l2_normalize((1.0 - mix) * l2_normalize(T) + mix * l2_normalize(I))


def zero_shot(
    image_emb: ArrayLike,
    text_protos: ArrayLike,
    image_protos: ArrayLike | None = None,
    mix: float = 0.5,
) -> np.ndarray:
    """Nearest prototype by cosine: text prototypes (zero-shot), or their mix with image prototypes.

    Args:
        image_emb: ``[N, D]`` image embeddings (same space as the text tower).
        text_protos: ``[K, D]`` e.g. from :func:`prompt_prototypes`.
        image_protos: optional ``[K, D]`` class means of image embeddings.
        mix: blend weight when ``image_protos`` is given (see :func:`mix_prototypes`).

    Returns:
        ``[N]`` predicted class index into the K prototypes.
    """
    if image_protos is None:
        P = as_features(text_protos, "text_protos")  # [K, D]
    else:
        P = mix_prototypes(text_protos, image_protos, mix)  # [K, D]
    return np.argmin(distances(image_emb, P, "cosine"), axis=1)
