"""What a saliency map explains, and the differentiable model output it is read from.

A :class:`CamTarget` is an ImageNet logit for backbones with a head (pytorch-grad-cam's
``ClassifierOutputTarget``), or the cosine similarity of the final global embedding to a reference
vector (a class prototype, a CLIP text embedding) for any backbone (:class:`EmbeddingSimilarityTarget`).
:func:`default_target` is the one rule the pages, the Compare page and the report card share: the
head's top class, else the nearest class prototype.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from core.errors import UnsupportedOperationError
from core.explain.inputs import SaliencyInput
from core.explain.prototype_maps import PrototypeSet
from core.models.base import Backbone


class EmbeddingSimilarityTarget:
    """A pytorch-grad-cam target: cosine similarity of the model's embedding output to ``reference``.

    Used for backbones without a classifier head (class prototype, CLIP text prompt).
    """

    def __init__(self, reference: np.ndarray | torch.Tensor):
        ref = torch.as_tensor(np.asarray(reference, dtype=np.float32))
        if ref.ndim != 1:
            raise ValueError(f"reference must be one vector [D], got shape {tuple(ref.shape)}")
        self.reference = ref

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:  # [D] (one image) -> scalar
        if model_output.shape[-1] != self.reference.shape[0]:
            raise ValueError(f"embedding dim {model_output.shape[-1]} != reference dim {self.reference.shape[0]}: "
                             "build the reference from the same backbone's final embedding")
        return F.cosine_similarity(model_output, self.reference.to(model_output), dim=-1)


@dataclass(frozen=True)
class CamTarget:
    """What a saliency map explains.

    Attributes:
        kind: ``"class"``: the logit (for CAMs) / softmax probability (for faithfulness) of class
            ``class_index`` of the backbone's head; ``"embedding"``: the cosine similarity of the
            final global embedding to ``reference``.
        label: for display, e.g. ``"tabby cat"`` or ``"prototype: birds"``.
    """

    kind: Literal["class", "embedding"]
    label: str
    class_index: int | None = None
    reference: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def imagenet_class(cls, b: Backbone, index: int, label: str | None = None) -> CamTarget:
        """Class ``index`` of the backbone's classifier head (raises for head-less backbones)."""
        if not b.spec.has_classifier:
            raise UnsupportedOperationError(f"{b.spec.name} has no classifier head; target a prototype instead")
        names = b.class_names or []
        name = names[index] if index < len(names) else f"class {index}"
        return cls("class", label or name, class_index=int(index))

    @classmethod
    def similarity(cls, label: str, reference: np.ndarray | torch.Tensor) -> CamTarget:
        """Cosine similarity of the final embedding to ``reference [D]`` (a prototype, a text embedding)."""
        return cls("embedding", label, reference=np.asarray(reference, dtype=np.float32).reshape(-1))

    def gradcam_target(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The callable pytorch-grad-cam applies to the model output of one image."""
        if self.kind == "class":
            if self.class_index is None:
                raise ValueError("a class target needs class_index; build it with CamTarget.imagenet_class")
            return ClassifierOutputTarget(int(self.class_index))
        return EmbeddingSimilarityTarget(np.asarray(self.reference))


class ModelOutput(torch.nn.Module):
    """The differentiable forward a target needs: the head's logits, or the final global embedding
    (the same vector as ``extract(x, layer=-1, want=("embedding",))``)."""

    def __init__(self, b: Backbone, output: Literal["logits", "embedding"], net: torch.nn.Module | None = None):
        super().__init__()
        self.net = b.model if net is None else net
        self.family = b.spec.family
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, S, S] -> [N, C] or [N, D]
        m: Any = self.net  # a timm or open_clip model
        if self.family == "clip":
            if self.output == "logits":
                raise UnsupportedOperationError("CLIP has no classifier head; use a text prompt target")
            return m.encode_image(x)
        if self.output == "logits":
            return m(x)
        return m.forward_head(m.forward_features(x), pre_logits=True)


def model_output(b: Backbone, target: CamTarget, net: torch.nn.Module | None = None) -> ModelOutput:
    """The output module ``target`` is read from (raises for a class target on a head-less backbone);
    ``net``: an inference copy of ``b.model`` to run instead (:func:`core.models.fold.folded_model`)."""
    if target.kind == "class" and not b.spec.has_classifier:
        raise UnsupportedOperationError(f"{b.spec.name} has no classifier head; target a prototype or text instead")
    return ModelOutput(b, "logits" if target.kind == "class" else "embedding", net)


@dataclass(frozen=True)
class ClassScore:
    index: int
    name: str
    probability: float


def top_classes(b: Backbone, x: torch.Tensor, k: int = 5) -> list[ClassScore]:
    """The head's top-``k`` classes for one image ``x [1, 3, S, S]`` (softmax probabilities)."""
    with b.lock:
        probs = b.logits(x.to(b.device))[0].float().softmax(-1).cpu()  # [C]
    p, idx = probs.topk(min(k, probs.shape[0]))
    names = b.class_names or []
    return [ClassScore(int(i), names[int(i)] if int(i) < len(names) else f"class {int(i)}", float(v)) for v, i in zip(p, idx)]


def nearest_prototype_target(protos: PrototypeSet, embedding: np.ndarray | torch.Tensor) -> CamTarget:
    """The cosine to the class prototype nearest to ``embedding [D]`` (the nearest-mean classifier's pick)."""
    c = protos.ranking(embedding)[0][0]
    return CamTarget.similarity(f"prototype: {c}", protos.vectors[protos.index(c)])


def default_target(inp: SaliencyInput, prototypes: PrototypeSet | None = None) -> CamTarget:
    """The head's top class (label with its probability), else the nearest class prototype of the final
    embedding (``prototypes`` must then be class means of the *final* embeddings).

    Raises:
        ValueError: a head-less backbone and no prototypes.
    """
    b = inp.backbone
    if b.spec.has_classifier:
        top = top_classes(b, inp.x, k=1)[0]
        return CamTarget.imagenet_class(b, top.index, label=f"{top.name} ({top.probability:.0%})")
    if prototypes is None:
        raise ValueError(f"{b.spec.name} has no classifier head: pass class prototypes of its final embeddings "
                         "(PrototypeSet.from_embeddings) to explain the nearest one")
    return nearest_prototype_target(prototypes, inp.tokens(-1)[1])
