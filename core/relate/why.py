"""Why are two images neighbours? Their cosine split into patch-pair terms, one call.

:func:`why_neighbours` runs one forward pass of the pair, picks the decomposition
(:mod:`core.relate.methods`: exact for mean-pooled embeddings, BiLRP on the CLS stream for CLS-token
ViTs), and returns the pair matrix's per-patch shares and top links, optionally with the deletion
check. :func:`explain_pair` is the page's one call: two dataset records in, result and figure out,
memoised by (weights, image hashes, size, layer). Nothing here scales with the dataset: the pair
matrix is ``[Na, Nb]`` patches (1024 x 1024 at a 32 x 32 grid).
"""
from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from PIL import Image

from core.io.images import ImageRecord
from core.models.base import Backbone
from core.models.layers import LayerLike, resolve_layer
from core.relate.contributions import Link, PairTerms, pair_terms, top_links
from core.relate.deletion import DeletionCheck, deletion_check
from core.relate.methods import Forward, choose_method

TOP_K = 10
T = TypeVar("T")
CHECK_PAIRS = 30  # pairs the deletion check removes: on 8 neighbour pairs of the stamps (ViT, 224 px) 10 pairs won
                  # 5/8 against random patches, 30 won 7/8, 100 won 6/8 (README, "Why neighbours")


@dataclass(frozen=True)
class WhyResult:
    """The decomposition of one pair's cosine.

    Attributes:
        backbone / weights_id: which model.
        size: input side in pixels; block: the embedding block used.
        method / label / reference / exact: the decomposition (see :mod:`core.relate.methods`).
        cosine: the backbone's own cosine of the two global embeddings.
        terms: the pair matrix ``[Na, Nb]`` and each image's per-patch shares ``[h, w]``.
        links: the top pair terms, largest first.
        check: the deletion check, when asked for.
    """

    backbone: str
    weights_id: str
    size: int
    block: int
    method: str
    label: str
    reference: str
    exact: bool
    cosine: float
    terms: PairTerms
    links: tuple[Link, ...]
    check: DeletionCheck | None = None

    @property
    def grids(self) -> tuple[tuple[int, int], tuple[int, int]]:
        (ha, wa), (hb, wb) = self.terms.share_a.shape, self.terms.share_b.shape
        return (int(ha), int(wa)), (int(hb), int(wb))

    def caption(self) -> str:
        """One or two sentences for the page / figure: what the colours and lines mean, and how much they cover."""
        if self.exact:
            how = (f"Exact: the embedding is the mean of the patch features, so the {self.terms.matrix.size:,} patch-pair "
                   f"terms sum to the cosine {self.cosine:.3f}.")
        else:
            how = (f"Attributed ({self.label}): the patch pairs carry {self.terms.attributed:.3f} of the cosine "
                   f"{self.cosine:.3f}; {self.terms.unattributed:.3f} comes from parts no patch carries "
                   f"(the CLS token's initial value, biases, register tokens).")
        return how + " Each patch is coloured by its share; lines are the strongest patch-to-patch terms."

    def to_dict(self) -> dict:
        """The JSON of ``backbone-lens why-neighbours --json``."""
        return {
            "backbone": self.backbone, "weights_id": self.weights_id, "size": self.size, "layer": self.block,
            "cosine": self.cosine, "exact": self.exact, "method": self.method, "method_label": self.label,
            "reference": self.reference,
            "attributed": self.terms.attributed, "unattributed": self.terms.unattributed,
            "grid_a": list(self.grids[0]), "grid_b": list(self.grids[1]),
            "patch_share_a": self.terms.share_a.tolist(), "patch_share_b": self.terms.share_b.tolist(),
            "links": [lk.to_dict() for lk in self.links],
            "deletion_check": self.check.to_dict() if self.check is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def why_neighbours(backbone: Backbone, image_a: Image.Image, image_b: Image.Image, *, size: int | None = None,
                   layer: LayerLike = None, top_k: int = TOP_K, check: bool = False, check_pairs: int = CHECK_PAIRS,
                   draws: int = 8, seed: int = 0, method: str | None = None) -> WhyResult:
    """Split the cosine of two images' global embeddings into patch-pair terms.

    Args:
        backbone: any backbone whose embedding one of :data:`core.relate.methods.METHODS` decomposes.
        image_a / image_b: RGB pictures (resized whole, like every view of the app).
        size: input side (default: the spec's); layer: embedding block (default: the spec's).
        top_k: how many links (the largest pair terms) to return.
        check: also run the deletion check (:func:`core.relate.deletion.deletion_check`: ``2 + 2 * draws``
            more images through the model), removing the top ``check_pairs`` pairs' patches.
        draws / seed: the check's random patch sets.
        method: force a method by name (default: the first that applies).

    Raises:
        UnsupportedOperationError: no method decomposes this backbone's embedding at this block.
    """
    s = backbone.spec.check_size(size or backbone.spec.input_size)
    block = resolve_layer(backbone.spec, "embedding", layer)
    x = backbone.preprocess([image_a, image_b], s)  # [2, 3, S, S]
    with torch.inference_mode():
        out = backbone.extract(x, block, want=("embedding", "patch_tokens"))
    fwd = Forward(x=x, block=block, embedding=out["embedding"], tokens=out["patch_tokens"])
    m = choose_method(backbone, fwd, method)
    ca, cb = m.decompose(backbone, fwd)
    terms = pair_terms(ca, cb)
    e = torch.nn.functional.normalize(fwd.embedding.double(), dim=-1)
    cosine = float(e[0] @ e[1])
    links = tuple(top_links(terms, top_k))
    dc = (deletion_check(backbone, x, block, top_links(terms, check_pairs), (ca.grid, cb.grid), draws=draws, seed=seed)
          if check else None)
    return WhyResult(backbone=backbone.spec.name, weights_id=backbone.spec.weights_id, size=s, block=block,
                     method=m.name, label=m.label, reference=m.reference, exact=m.exact, cosine=cosine,
                     terms=terms, links=links, check=dc)


@dataclass(frozen=True)
class PairExplanation:
    """What the page shows for a clicked pair: the numbers and the figure."""

    result: WhyResult
    figure: Image.Image


_RESULTS: OrderedDict[tuple, WhyResult] = OrderedDict()  # the expensive part, whatever the links shown
_FIGURES: OrderedDict[tuple, PairExplanation] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 32  # pairs (and figures) kept in memory (a figure is about 1 MB)


def _remember(store: OrderedDict, key: tuple, make: Callable[[], T]) -> T:
    """``store[key]``, made by ``make()`` on a miss; the last :data:`CACHE_SIZE` entries are kept."""
    with _CACHE_LOCK:
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = make()
    with _CACHE_LOCK:
        store[key] = value
        while len(store) > CACHE_SIZE:
            store.popitem(last=False)
    return value


def explain_pair(backbone: Backbone, record_a: ImageRecord, record_b: ImageRecord, *, size: int | None = None,
                 layer: LayerLike = None, top_k: int = TOP_K, check: bool = True, max_side: int = 320) -> PairExplanation:
    """The page's one call for a neighbour pair: :func:`why_neighbours` (with the deletion check) and
    :func:`core.relate.figure.why_figure` (pictures ``max_side`` px), shared by every session of the process.

    The decomposition is memoised by ``(weights id, sha a, sha b, size, layer, check)``, so another
    ``top_k`` only re-reads the top links from the pair matrix and redraws the figure (memoised with
    ``top_k`` and ``max_side``); the last :data:`CACHE_SIZE` of each are kept.
    """
    from core.relate.figure import why_figure

    s = backbone.spec.check_size(size or backbone.spec.input_size)
    block = resolve_layer(backbone.spec, "embedding", layer)
    key = (backbone.spec.weights_id, record_a.sha256, record_b.sha256, s, block, check)

    def draw() -> PairExplanation:
        img_a, img_b = record_a.decode(), record_b.decode()
        result = _remember(_RESULTS, key, lambda: why_neighbours(backbone, img_a, img_b, size=s, layer=block, check=check))
        result = dataclasses.replace(result, links=tuple(top_links(result.terms, top_k)))  # O(Na Nb), no forward
        fig = why_figure(img_a, img_b, result, max_side=max_side, title_a=record_a.name, title_b=record_b.name)
        return PairExplanation(result=result, figure=fig)

    return _remember(_FIGURES, (*key, top_k, max_side), draw)
