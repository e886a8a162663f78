"""Saliency for any Backbone: ViT attention, the Grad-CAM family, prototype maps, faithfulness.

* Attention: every block's softmax attention from :meth:`Backbone.attention`, reshaped to CLS-to-patch
  maps and rolled out with :mod:`core.explain.attention` (grid and prefix count from the spec).
* Grad-CAM family: the maintained ``pytorch-grad-cam`` package does the work. A method is a registry
  entry naming its ``BaseCAM`` subclass (grad-cam's own template method), the target layers and the
  ViT reshape come from the backbone (:meth:`Backbone.cam_target_layers`,
  :meth:`Backbone.cam_reshape_transform`). What is explained is a :class:`CamTarget`: an ImageNet
  logit for backbones with a head (grad-cam's ``ClassifierOutputTarget``), or the cosine similarity of
  the global embedding to a reference vector (a class prototype, a CLIP text embedding) for any
  backbone (:class:`EmbeddingSimilarityTarget`).
* Prototype maps: cosine of each patch token to the predicted class's prototype and the runner-up's
  (:func:`core.explain.maps.prototype_maps`), with prototypes = class means of the embeddings of the same
  block, so tokens and prototypes live in one space (ViT: the normed CLS token and the normed patch
  tokens of a block; CNN: the globally pooled feature map and its positions).
* Faithfulness: deletion / insertion (:func:`core.explain.maps.deletion_insertion`) on the model's input
  picture, scored with the same target the CAM explains.

The backbone's model is shared (cached by the app): nothing here changes it. Gradients flow because
the *input* is made to require grad (the parameters stay frozen); hooks are always released. The backbone's own lock (``Backbone.lock``) serialises the calls that hook into the model,
since the app serves sessions from threads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_grad_cam import EigenCAM, EigenGradCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from core.errors import UnsupportedOperationError
from core.explain.attention import HeadFusion, cls_attention_maps, cls_rows_to_maps, rollout_cls_map
from core.explain.maps import Baseline, deletion_insertion, prototype_maps, upsample
from core.geometry.vectors import l2_normalize
from core.models.base import Backbone


# ---- the Grad-CAM family: a registry of pytorch-grad-cam classes ----------------------------------
@dataclass(frozen=True)
class CamMethod:
    """One member of the Grad-CAM family.

    Attributes:
        name: display name.
        cam_class: the ``pytorch_grad_cam`` ``BaseCAM`` subclass that computes it.
        uses_gradients: False for gradient-free methods (EigenCAM explains the activations only, so
            its map does not depend on the target).
        summary: one line for the UI.
    """

    name: str
    cam_class: type[BaseCAM]
    uses_gradients: bool
    summary: str


CAM_METHODS: dict[str, CamMethod] = {}


def register_cam_method(method: CamMethod) -> CamMethod:
    """Add a method to :data:`CAM_METHODS` (a duplicate name raises)."""
    if method.name in CAM_METHODS:
        raise ValueError(f"CAM method {method.name!r} is already registered")
    CAM_METHODS[method.name] = method
    return method


for _m in (
    CamMethod("Grad-CAM", GradCAM, True, "channel weights = spatial mean of the gradients (Selvaraju et al. 2017)"),
    CamMethod("Grad-CAM++", GradCAMPlusPlus, True, "second-order weights, better for several instances (Chattopadhay et al. 2018)"),
    CamMethod("XGrad-CAM", XGradCAM, True, "gradients normalised by activations (Fu et al. 2020)"),
    CamMethod("HiResCAM", HiResCAM, True, "element-wise gradient x activation, faithful to the model (Draelos & Carin 2020)"),
    CamMethod("LayerCAM", LayerCAM, True, "positive gradients x activations, per position (Jiang et al. 2021)"),
    CamMethod("EigenCAM", EigenCAM, False, "first principal component of the activations, no gradients (Muhammad & Yeasin 2020)"),
    CamMethod("EigenGrad-CAM", EigenGradCAM, True, "first principal component of gradient x activation"),
):
    register_cam_method(_m)
del _m


def get_cam_method(name: str) -> CamMethod:
    """The registered method called ``name`` (unknown names raise with the known ones)."""
    try:
        return CAM_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown CAM method {name!r}; known: {', '.join(CAM_METHODS)}") from None


# ---- what a map explains ------------------------------------------------------------------------
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
    def imagenet_class(cls, b: Backbone, index: int) -> "CamTarget":
        """Class ``index`` of the backbone's classifier head (raises for head-less backbones)."""
        if not b.spec.has_classifier:
            raise UnsupportedOperationError(f"{b.spec.name} has no classifier head; target a prototype instead")
        names = b.class_names or []
        return cls("class", names[index] if index < len(names) else f"class {index}", class_index=int(index))

    @classmethod
    def similarity(cls, label: str, reference: np.ndarray | torch.Tensor) -> "CamTarget":
        """Cosine similarity of the final embedding to ``reference [D]`` (a prototype, a text embedding)."""
        return cls("embedding", label, reference=np.asarray(reference, dtype=np.float32).reshape(-1))

    def gradcam_target(self):
        """The callable pytorch-grad-cam applies to the model output of one image."""
        if self.kind == "class":
            return ClassifierOutputTarget(int(self.class_index))
        return EmbeddingSimilarityTarget(self.reference)


class _ModelOutput(torch.nn.Module):
    """The differentiable forward a target needs: the head's logits, or the final global embedding
    (the same vector as ``extract(x, layer=-1, want=("embedding",))``)."""

    def __init__(self, b: Backbone, output: Literal["logits", "embedding"]):
        super().__init__()
        self.net = b.model
        self.family = b.spec.family
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, S, S] -> [N, C] or [N, D]
        m = self.net
        if self.family == "clip":
            if self.output == "logits":
                raise UnsupportedOperationError("CLIP has no classifier head; use a text prompt target")
            return m.encode_image(x)
        if self.output == "logits":
            return m(x)
        return m.forward_head(m.forward_features(x), pre_logits=True)


def _model_output(b: Backbone, target: CamTarget) -> _ModelOutput:
    if target.kind == "class" and not b.spec.has_classifier:
        raise UnsupportedOperationError(f"{b.spec.name} has no classifier head; target a prototype or text instead")
    return _ModelOutput(b, "logits" if target.kind == "class" else "embedding")


def compute_cam(b: Backbone, x: torch.Tensor, method: str, target: CamTarget) -> np.ndarray:
    """A Grad-CAM-family map computed by pytorch-grad-cam.

    Args:
        b: the backbone (its shared model is not changed; hooks are released).
        x: ``[1, 3, S, S]`` from :meth:`Backbone.preprocess`.
        method: a name in :data:`CAM_METHODS`.
        target: what to explain.

    Returns:
        ``[S, S]`` map in ``[0, 1]`` (pytorch-grad-cam's ReLU, min-max scaling and resize to the input).
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, 3, S, S], got shape {tuple(x.shape)}")
    spec = b.spec
    size = spec.check_size(int(x.shape[-1]))
    cam_class = get_cam_method(method).cam_class
    module = _model_output(b, target)
    with b.lock:
        cam = cam_class(model=module, target_layers=b.cam_target_layers(),
                        reshape_transform=b.cam_reshape_transform(size))
        try:
            inp = x.detach().clone().requires_grad_(True)  # grads reach the activations; params stay frozen
            with torch.enable_grad():
                out = cam(input_tensor=inp, targets=[target.gradcam_target()])  # [1, S, S]
        finally:
            cam.activations_and_grads.release()
    return np.asarray(out[0], dtype=np.float32)


def cam_layer_names(b: Backbone) -> list[str]:
    """Module paths of the Grad-CAM target layers, e.g. ``["blocks.11.norm1"]`` (for captions)."""
    names = {id(m): n for n, m in b.model.named_modules()}
    return [f"{names.get(id(m), '?')} ({type(m).__name__})" for m in b.cam_target_layers()]


@dataclass(frozen=True)
class ClassScore:
    index: int
    name: str
    probability: float


def top_classes(b: Backbone, x: torch.Tensor, k: int = 5) -> list[ClassScore]:
    """The head's top-``k`` classes for one image ``x [1, 3, S, S]`` (softmax probabilities)."""
    with b.lock:
        probs = b.logits(x)[0].float().softmax(-1)  # [C]
    p, idx = probs.topk(min(k, probs.shape[0]))
    names = b.class_names or []
    return [ClassScore(int(i), names[int(i)] if int(i) < len(names) else f"class {int(i)}", float(v)) for v, i in zip(p, idx)]


# ---- attention --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionMaps:
    """All attention of one image.

    Attributes:
        attn: ``[L, H, T, T]`` softmax attention, ``T = num_prefix_tokens + h * w``.
        cls_maps: ``[L, H, h, w]`` CLS-to-patch attention per block and head.
        num_prefix_tokens: CLS + register tokens.
        grid: ``(h, w)``.
    """

    attn: np.ndarray
    cls_maps: np.ndarray
    num_prefix_tokens: int
    grid: tuple[int, int]

    def rollout(self, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0, start_layer: int = 0) -> np.ndarray:
        """Attention rollout of the CLS token over the patches, ``[h, w]`` in ``[0, 1]``."""
        return rollout_cls_map(self.attn, self.num_prefix_tokens, self.grid, head_fusion, discard_ratio, start_layer)


def vit_attention(b: Backbone, x: torch.Tensor) -> AttentionMaps:
    """Attention of one image ``x [1, 3, S, S]`` (ViTs; others raise ``UnsupportedOperationError``)."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, 3, S, S], got shape {tuple(x.shape)}")
    grid = b.spec.grid(int(x.shape[-1]))
    with b.lock:
        attn = b.attention(x)[0].float().numpy()  # [L, H, T, T]
    p = b.spec.num_prefix_tokens
    return AttentionMaps(attn, cls_attention_maps(attn, p, grid), p, grid)


# ---- prototype maps ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Prototypes:
    """Class prototypes: the mean embedding of each class, scaled to unit length (for cosines).

    Attributes:
        classes: class names, sorted.
        vectors: ``[K, D]`` prototypes.
        counts: images per class that went into each mean.
    """

    classes: list[str]
    vectors: np.ndarray
    counts: list[int]

    def index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            raise ValueError(f"no prototype for class {name!r}; classes: {', '.join(self.classes)}") from None


def class_prototypes(embeddings: np.ndarray, labels: Sequence[str], exclude: Collection[int] = ()) -> Prototypes:
    """Class means of ``embeddings [N, D]`` by ``labels``, scaled to unit length.

    The means are :func:`core.classify.prototypes.class_prototypes` (plain means, as the Prototypes page's
    nearest-mean classifier uses), so the class picked here is the one that classifier picks.

    Args:
        embeddings: global embeddings of a labelled set (all from one backbone and block).
        labels: one label per row; empty labels are ignored.
        exclude: rows left out of the means (leave-one-out: the explained image and its copies, so it
            never votes for its own class); a class left without images then has no prototype.

    Raises:
        ValueError: fewer than two classes.
    """
    from core.classify.prototypes import class_prototypes as class_means

    E = np.asarray(embeddings, dtype=np.float32)
    if E.ndim != 2 or E.shape[0] != len(labels):
        raise ValueError(f"embeddings must be [N, D] with one label per row, got {E.shape} and {len(labels)} labels")
    out = set(int(i) for i in exclude)
    keep = np.array([bool(l) and i not in out for i, l in enumerate(labels)], dtype=bool)
    lab = np.asarray([str(l) for l in labels])
    if len(set(lab[keep])) < 2:
        raise ValueError(f"prototype maps need a labelled dataset with at least 2 classes (got {len(set(lab[keep]))}); "
                         "pick a folder-per-class dataset or give uploads class names")
    classes, means = class_means(E[keep], lab[keep])  # [K], [K, D]
    counts = [int((lab[keep] == c).sum()) for c in classes]
    return Prototypes([str(c) for c in classes], l2_normalize(means).astype(np.float32), counts)


@dataclass(frozen=True)
class PrototypeExplanation:
    """Why the nearest-prototype classifier picks class ``a`` over the runner-up ``b``.

    Attributes:
        similarities: ``[K]`` cosine of the image embedding to every prototype.
        a / b: indices of the best and second-best prototype.
        maps: ``{"a", "b", "diff"}`` ``[h, w]`` per-patch cosines and their difference.
    """

    prototypes: Prototypes
    similarities: np.ndarray
    a: int
    b: int
    maps: dict[str, np.ndarray]

    @property
    def ranking(self) -> list[tuple[str, float]]:
        order = np.argsort(-self.similarities, kind="stable")
        return [(self.prototypes.classes[i], float(self.similarities[i])) for i in order]


def explain_by_prototypes(patch_tokens: np.ndarray, embedding: np.ndarray, protos: Prototypes) -> PrototypeExplanation:
    """Prototype maps of one image.

    Args:
        patch_tokens: ``[h, w, D]`` of the same block as the prototypes.
        embedding: ``[D]`` global embedding of the image at that block (it picks ``a`` and ``b``).
        protos: from :func:`class_prototypes`.
    """
    sims = (l2_normalize(protos.vectors) @ l2_normalize(np.asarray(embedding).reshape(-1))).astype(np.float32)  # [K]
    a, b = (int(i) for i in np.argsort(-sims, kind="stable")[:2])
    return PrototypeExplanation(protos, sims, a, b, prototype_maps(patch_tokens, protos.vectors, (a, b)))


# ---- faithfulness -----------------------------------------------------------------------------
def target_scorer(b: Backbone, target: CamTarget, batch_size: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """``score([B, S, S, 3] floats in 0..1) -> [B]``: the softmax probability of the target class, or the
    cosine similarity of the embedding to the target reference (the quantity the CAM explains)."""
    module = _model_output(b, target)
    mean = np.asarray(b.spec.mean, dtype=np.float32)
    std = np.asarray(b.spec.std, dtype=np.float32)

    def score(images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            chunk = (np.asarray(images[i:i + batch_size], dtype=np.float32) - mean) / std
            x = torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous()  # [B, 3, S, S]
            with b.lock, torch.inference_mode():
                y = module(x)  # [B, C] or [B, D]
                if target.kind == "class":
                    s = y.float().softmax(-1)[:, int(target.class_index)]
                else:
                    s = F.cosine_similarity(y.float(), torch.as_tensor(target.reference)[None], dim=-1)
            out.append(s.numpy())
        return np.concatenate(out).astype(np.float64)

    return score


def model_view(image: Image.Image, size: int) -> np.ndarray:
    """The picture as the model sees it (whole image resized to ``size``), ``[S, S, 3]`` in 0..1."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def faithfulness(b: Backbone, image: Image.Image, saliency: np.ndarray, target: CamTarget, size: int,
                 steps: int = 10, baseline: Baseline = "blur") -> dict[str, np.ndarray | float]:
    """Deletion / insertion curves and AUCs of one map (see :func:`core.explain.maps.deletion_insertion`).

    The most salient pixels of the model's input picture are removed (deletion: a lower AUC is better)
    or restored (insertion: higher is better) in ``steps`` steps; the score is :func:`target_scorer`'s,
    divided by the score of the intact picture.

    Args:
        saliency: ``[h, w]`` or ``[H, W]`` map of any resolution (stretched onto the ``S x S`` input).
    """
    img = model_view(image, b.spec.check_size(size))  # [S, S, 3]
    sal = upsample(np.asarray(saliency, dtype=np.float32), img.shape[:2])  # [S, S]
    return deletion_insertion(target_scorer(b, target), img, sal, steps=steps, baseline=baseline)


# ---- one image through one backbone, everything the pages need --------------------------------
def image_tokens(b: Backbone, x: torch.Tensor, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``(patch_tokens [h, w, D], embedding [D])`` of one image ``x [1, 3, S, S]`` at block ``layer``."""
    with b.lock:
        out = b.extract(x, layer, want=("embedding", "patch_tokens"))
    return out["patch_tokens"][0].float().numpy(), out["embedding"][0].float().numpy()


def cls_attention_map(b: Backbone, x: torch.Tensor, block: int = -1) -> np.ndarray:
    """Head-mean CLS-to-patch attention of one block for one image ``x [1, 3, S, S]``: ``[h, w]``."""
    with b.lock:
        rows = b.extract(x, None, want=("attention_cls",))["attention_cls"]  # [1, L, H, h*w]
    return cls_rows_to_maps(rows[0, block].float().numpy().mean(0), b.spec.grid(int(x.shape[-1])))  # [h, w]
