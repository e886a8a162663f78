"""The concept atlas of a dataset for one backbone: fit, encode, score, cache. One call for a page or the CLI.

:func:`concept_atlas` extracts (or reads from the feature cache) the patch tokens and embeddings of
the block the embedding comes from, fits ``k`` concepts on a sample of at most
:data:`core.concepts.tokens.MAX_SAMPLE` patch vectors (and 512 MB of them), encodes every image chunk by chunk, and
scores the result: the per-class contribution table, the share of the pooled features' variance the
concepts reconstruct, and the deletion test. Everything is stored under
``<cache>/concepts/<key>/`` (``key`` = the weights, preprocessing, block, method, k, sample size,
seed and the images' sha256 and labels), so opening the same atlas again computes nothing; the
per-patch codes are a float16 memory map there. The names a user gives the concepts are kept in
``names.json`` beside them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.concepts.apply import TOP_PATCHES, ConceptCodes, TopPatches, apply_concepts, encode_tokens
from core.concepts.contributions import ClassTable, class_contributions, label_problem
from core.concepts.fidelity import DeletionResult, deletion_problem, deletion_test, loo_nmc_correct, variance_explained
from core.concepts.methods import ConceptBasis, fit_basis
from core.concepts.tokens import MAX_SAMPLE, StoreTokens, sample_patches
from core.io.images import Failure, ImageRecord
from core.io.paths import cache_dir
from core.io.store import FeatureKey, FeatureStore
from core.models.base import Backbone
from core.models.extract import extract_features, preprocessing_id

DEFAULT_K = 12
ATLAS_VERSION = "concepts-v1"  # part of the cache key: bump when what is stored changes meaning
HINT_MIN = 0.05  # a concept is labelled with a class in legends when it adds at least this to the class's mean cosine
EXACT_TOL = 1e-2  # pooled tokens equal the embedding when no image differs by more than this share of its norm
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class AtlasStats:
    """How the atlas was made and what it cost (seconds; zeros when it was read from the cache)."""

    n_images: int
    sample_vectors: int
    sample_images: int
    extract_seconds: float = 0.0
    fit_seconds: float = 0.0
    apply_seconds: float = 0.0
    score_seconds: float = 0.0
    from_cache: bool = False


@dataclass
class ConceptAtlas:
    """``k`` concepts of a dataset and everything a view of them needs.

    Attributes:
        backbone / weights_id / layer / size / grid: what the patch vectors are (block ``layer`` at
            ``size`` px, a ``grid = (h, w)`` of patches).
        basis: the concepts (``basis.method`` says how they were found).
        names: the user's name of each concept (``""``: unnamed; :meth:`save_names`).
        image_names / image_paths / labels: the encoded images, in order (``image_paths`` None for uploads).
        codes: per-image codes, pooled features, per-patch maps ``[N, h, w, k]`` and typical patches.
        table / table_note: the per-class contribution table, or None and why.
        deletion / deletion_note: the deletion test, or None and why.
        variance_explained: share of the pooled features' variance the concepts reconstruct.
        exact: the pooled features are the backbone's embedding (global average pooling), so the table
            splits the project's own NMC score; False: the split is of the NMC on mean-pooled tokens.
        embedding_gap: the largest ``|e - embedding| / |embedding|`` over the images (None: other dimensions), i.e.
            how far the pooled (float16-cached) tokens are from the backbone's embedding.
        embedding_accuracy: balanced leave-one-out NMC accuracy of the backbone's embedding (None without labels).
        failures: images that could not be used.
        path: the cache folder (None when not cached).
    """

    backbone: str
    weights_id: str
    layer: int
    size: int
    grid: tuple[int, int]
    basis: ConceptBasis
    names: list[str]
    image_names: list[str]
    image_paths: list[str | None]
    labels: np.ndarray
    codes: ConceptCodes
    table: ClassTable | None
    table_note: str | None
    deletion: DeletionResult | None
    deletion_note: str | None
    variance_explained: float
    exact: bool
    embedding_gap: float | None
    embedding_accuracy: float | None
    stats: AtlasStats
    failures: list[Failure] = field(default_factory=list)
    path: Path | None = None

    @property
    def k(self) -> int:
        return self.basis.k

    def patch_share(self, j: int) -> float:
        """Share of all patches whose main concept (largest coefficient) is ``j``."""
        return float(self.codes.dominant[j] / max(1, self.stats.n_images * self.grid[0] * self.grid[1]))

    def label(self, j: int) -> str:
        """``"C3 beaks"`` (number and name) or ``"C3"``."""
        return f"C{j} {self.names[j]}".strip()

    def short_label(self, j: int) -> str:
        """For legends: ``"C3 beaks"`` when named, else ``"C3 [birds]"`` when the concept carries one class (adds at
        least :data:`HINT_MIN` to its mean score, and twice what it adds to any other class), else ``"C3"``."""
        if self.names[j]:
            return self.label(j)
        tops = self.table.top_classes(j, 2) if self.table is not None else []
        if tops and tops[0][1] >= HINT_MIN and (len(tops) == 1 or tops[0][1] >= 2 * tops[1][1]):
            return f"C{j} [{tops[0][0]}]"
        return f"C{j}"

    def concept_map(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Which concept each patch of image ``i`` belongs to: ``(labels [h, w]`` int, -1 where every
        coefficient is 0, ``coef [h, w]`` float32 its coefficient)."""
        return main_concepts(np.asarray(self.codes.maps[i], np.float32))

    def map_of_image(self, backbone: Backbone, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`concept_map` of any picture (e.g. an upload): its patch tokens at the atlas's block and size,
        encoded on the atlas's concepts.

        Raises:
            ValueError: ``backbone`` is not the one the atlas was made with.
        """
        if backbone.spec.weights_id != self.weights_id:
            raise ValueError(f"this atlas was made with {self.backbone}, not {backbone.spec.name}")
        x = backbone.preprocess([image], self.size)
        tokens = backbone.extract(x, self.layer, want=("patch_tokens",))["patch_tokens"][0].float().numpy()  # [h, w, D]
        return main_concepts(encode_tokens(self.basis, tokens))

    def decomposition(self) -> str:
        """One sentence: what the class table splits."""
        if self.exact:
            return ("exact: the embedding is the mean of the patch vectors (global average pooling), so each image's cosine "
                    "NMC score to its class prototype is the sum of the concept terms, the offset and the residual")
        return ("the embedding (e.g. a ViT's CLS token) is not a sum over patches: the table splits, exactly, the cosine NMC "
                "score of the mean-pooled patch tokens of the same block (a proxy; compare the two accuracies)")

    def save_names(self, names: Sequence[str]) -> None:
        """Store the user's concept names (``names.json`` in the atlas's cache folder).

        Raises:
            ValueError: not one name per concept, or the atlas is not cached.
        """
        if len(names) != self.k:
            raise ValueError(f"{len(names)} names for {self.k} concepts")
        clean = [" ".join(str(s).split())[:60] for s in names]
        if self.path is None:
            raise ValueError("this atlas is not cached, so its names cannot be stored; build it with cache=True")
        _write_json(self.path / "names.json", clean)
        self.names = clean

    def to_json(self, top: int = 8) -> dict:
        """Everything the CLI's ``--json`` prints: concepts with typical patches (paths), the class table, fidelity."""
        t = self.codes.top
        concepts = []
        for j in range(self.k):
            patches = [{"image": self.image_names[i], "path": self.image_paths[i], "image_index": int(i),
                        "row": int(r), "col": int(c), "coefficient": float(v)}
                       for i, r, c, v in zip(t.image[j, :top], t.row[j, :top], t.col[j, :top], t.coef[j, :top]) if i >= 0]
            concepts.append({"index": j, "name": self.names[j], "mean_coefficient": float(self.codes.u[:, j].mean()),
                             "patch_share": self.patch_share(j),
                             "top_classes": ([{"class": c, "contribution": v} for c, v in self.table.top_classes(j)]
                                             if self.table is not None else []),
                             "typical_patches": patches})
        table = None
        if self.table is not None:
            tb = self.table
            table = {"classes": tb.classes.tolist(), "images": tb.counts.tolist(),
                     "concepts": tb.contributions.round(6).tolist(), "offset": tb.offset.round(6).tolist(),
                     "residual": tb.residual.round(6).tolist(), "score": tb.score.round(6).tolist(),
                     "top_concept": tb.top_concept.tolist()}
        deletion = None
        if self.deletion is not None:
            d = self.deletion
            deletion = {**d.summary(), "per_class": [
                {"class": str(c), "top_concept": int(j), "accuracy": float(a), "accuracy_top_deleted": float(at),
                 "accuracy_other_deleted": float(ao)}
                for c, j, a, at, ao in zip(d.classes, d.top_concept, d.accuracy, d.accuracy_top, d.accuracy_other)]}
        s = self.stats
        return {
            "backbone": self.backbone, "layer": self.layer, "size": self.size, "grid": list(self.grid),
            "method": self.basis.method, "k": self.k, "images": s.n_images,
            "sample": {"vectors": s.sample_vectors, "images": s.sample_images},
            "exact": self.exact, "embedding_gap": self.embedding_gap, "decomposition": self.decomposition(),
            "fidelity": {"variance_explained": self.variance_explained,
                         "patch_variance_explained": self.codes.patch_variance_explained,
                         "embedding_nmc_accuracy": self.embedding_accuracy,
                         "deletion": deletion, "deletion_note": self.deletion_note},
            "concepts": concepts, "class_table": table, "class_table_note": self.table_note,
            "seconds": {"extract": s.extract_seconds, "fit": s.fit_seconds, "apply": s.apply_seconds,
                        "score": s.score_seconds},
            "from_cache": s.from_cache, "failures": [{"name": f.name, "reason": f.reason} for f in self.failures],
            "cache": str(self.path) if self.path else None,
        }


def main_concepts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``codes [h, w, k]`` -> ``(labels [h, w]`` the largest coefficient's concept, -1 where all are 0,
    ``coef [h, w]`` float32 that coefficient)."""
    lab = codes.argmax(axis=-1)
    coef = codes.max(axis=-1).astype(np.float32)
    return np.where(coef > 0, lab, -1), coef


# ---- building ---------------------------------------------------------------------------------------
def atlas_key(weights_id: str, preprocessing: str, layer: int, method: str, k: int, sample: int, seed: int,
              top: int, records: Sequence[ImageRecord]) -> str:
    """The cache key of an atlas: everything its numbers depend on."""
    h = hashlib.sha256()
    head = json.dumps([ATLAS_VERSION, weights_id, preprocessing, layer, method, k, sample, seed, top])
    h.update(head.encode())
    for r in records:
        h.update(f"\n{r.sha256}\t{r.label}".encode())
    return h.hexdigest()[:32]


def concept_atlas(backbone: Backbone, records: Sequence[ImageRecord], *, k: int = DEFAULT_K, method: str = "auto",
                  layer: int | None = None, size: int | None = None, sample: int = MAX_SAMPLE, seed: int = 0,
                  top: int = TOP_PATCHES, batch_size: int = 16, store: FeatureStore | None = None,
                  cache: bool = True, progress: ProgressFn | None = None) -> ConceptAtlas:
    """The concept atlas of ``records`` (read from the cache when it was made before).

    Args:
        backbone: the model (its patch tokens and embedding come from the feature cache where cached).
        records: the dataset's images (labelled for the class table and the deletion test).
        k: number of concepts (at least 2).
        method: ``"auto"`` or a registered method (:mod:`core.concepts.methods`).
        layer: block index (None: the block the embedding comes from, ``spec.embed_layer``).
        size: input side in pixels (None: the spec's).
        sample: patch vectors the concepts are fitted on, at most.
        seed: seeds the sample and the fit.
        top: typical patches kept per concept.
        batch_size: images per forward pass when features must be extracted.
        store: the feature cache (default: the user's).
        cache: read and write ``<cache>/concepts/``.
        progress: ``progress(stage, done, total)`` with stages ``features``, ``fit``, ``encode``, ``scores``.

    Raises:
        ValueError: ``k < 2``, no images, or too few patch vectors for ``k``.
    """
    if k < 2:
        raise ValueError(f"k = {k}: a concept atlas needs at least 2 concepts")
    if not records:
        raise ValueError("a concept atlas needs at least one image")
    spec = backbone.spec
    size = spec.check_size(size or spec.input_size)
    L = backbone.resolve_layer(layer, "embedding")
    prep = preprocessing_id(spec, size)
    key = atlas_key(spec.weights_id, prep, L, method, k, sample, seed, top, records)
    folder = cache_dir() / "concepts" / key
    if cache and (folder / "meta.json").is_file():
        try:
            return _load(folder)
        except (OSError, KeyError, ValueError, TypeError) as e:  # damaged or from an older layout: made again
            warnings.warn(f"the cached concept atlas {folder} could not be read ({e}); computing it again", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    store = store or FeatureStore()

    def report(stage: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: progress(stage, done, total)) if progress else None

    t0 = time.perf_counter()
    fs = extract_features(backbone, records, kinds=("embedding", "patch_tokens"), layer=L, size=size,
                          batch_size=batch_size, store=store, keep=False, half_tokens=True, progress=report("features"))
    kept = fs.records
    if not kept:
        raise ValueError(f"none of the {len(records)} images could be used: " + "; ".join(f"{f.name}: {f.reason}" for f in fs.failures[:3]))
    tok_keys = [FeatureKey.prefix(spec.weights_id, prep, L, "patch_tokens") + r.sha256 for r in kept]
    first, _ = store.read_rows(tok_keys[:1])
    h, w, D = first.shape[1:]
    source = StoreTokens(store, tok_keys, (h, w), D)
    t1 = time.perf_counter()

    if progress:
        progress("fit", 0, 1)
    X, n_sample_img = sample_patches(source, sample, seed)
    basis = fit_basis(X, k, method, seed)
    n_sample = len(X)
    del X
    if progress:
        progress("fit", 1, 1)
    t2 = time.perf_counter()

    tmp = folder.with_name(f".{key}-{uuid.uuid4().hex[:8]}") if cache else None
    maps = None
    if tmp is not None:
        tmp.mkdir(parents=True)
        maps = np.lib.format.open_memmap(tmp / "maps.npy", mode="w+", dtype=np.float16, shape=(len(kept), h, w, k))
    try:
        codes = apply_concepts(source, basis, maps=maps, top=top, progress=report("encode"))
        t3 = time.perf_counter()
        emb_keys = [FeatureKey.prefix(spec.weights_id, prep, L, "embedding") + r.sha256 for r in kept]
        emb, _ = store.read_rows(emb_keys, np.dtype(np.float32))
        labels = np.array([r.label for r in kept])
        scored = _score(codes, basis, labels, emb, progress)
        stats = AtlasStats(len(kept), n_sample, n_sample_img, t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
        atlas = ConceptAtlas(spec.name, spec.weights_id, L, size, (h, w), basis, [""] * k, [r.name for r in kept],
                             [str(r.path) if r.path is not None else None for r in kept], labels, codes, stats=stats,
                             failures=list(fs.failures), **scored)
        if tmp is not None:
            _save(atlas, tmp)
            if maps is not None:
                maps.flush()
            del maps, codes
            atlas.codes.maps = np.zeros((0,), np.float16)  # release the writable map before the folder moves
            try:
                os.replace(tmp, folder)
            except OSError:  # another process stored the same atlas meanwhile: use that one
                shutil.rmtree(tmp, ignore_errors=True)
            tmp = None
            return _load(folder, stats=stats)
        return atlas
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _score(codes: ConceptCodes, basis: ConceptBasis, labels: np.ndarray, emb: np.ndarray,
           progress: ProgressFn | None) -> dict:
    """The class table, the deletion test, the variance share, exactness and the embedding's accuracy."""
    if progress:
        progress("scores", 0, 1)
    diff = np.linalg.norm(codes.e - emb, axis=1) / np.maximum(np.linalg.norm(emb, axis=1), 1e-12) if emb.shape == codes.e.shape else None
    gap = None if diff is None else float(diff.max())
    exact = bool(gap is not None and gap < EXACT_TOL)
    table = deletion = None
    table_note = label_problem(labels)
    deletion_note = deletion_problem(labels)
    emb_acc = None
    if table_note is None:
        table = class_contributions(codes.u, codes.e, basis, labels)
    if deletion_note is None and table is not None:
        deletion = deletion_test(codes.e, codes.u, basis, labels, table)
        yi = np.unique(labels, return_inverse=True)[1]
        emb_acc = float((np.bincount(yi, weights=loo_nmc_correct(emb, labels)) / np.bincount(yi)).mean())
    if progress:
        progress("scores", 1, 1)
    return {"table": table, "table_note": table_note, "deletion": deletion, "deletion_note": deletion_note,
            "variance_explained": variance_explained(codes.e, codes.u, basis), "exact": exact, "embedding_gap": gap,
            "embedding_accuracy": emb_acc}


# ---- the cache folder -----------------------------------------------------------------------------
def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _save(a: ConceptAtlas, folder: Path) -> None:
    """Arrays as .npz / .npy, the rest as meta.json (written last: its presence marks a complete atlas)."""
    t = a.codes.top
    np.savez(folder / "arrays.npz", W=a.basis.W, offset=a.basis.offset, u=a.codes.u, e=a.codes.e, labels=a.labels,
             top_image=t.image, top_row=t.row, top_col=t.col, top_coef=t.coef, dominant=a.codes.dominant)
    tb, d = a.table, a.deletion
    if tb is not None:
        np.savez(folder / "table.npz", classes=tb.classes, counts=tb.counts, contributions=tb.contributions,
                 offset=tb.offset, residual=tb.residual, score=tb.score)
    if d is not None:
        np.savez(folder / "deletion.npz", classes=d.classes, top_concept=d.top_concept, accuracy=d.accuracy,
                 accuracy_top=d.accuracy_top, accuracy_other=d.accuracy_other)
    s = a.stats
    meta = {"version": ATLAS_VERSION, "backbone": a.backbone, "weights_id": a.weights_id, "layer": a.layer,
            "size": a.size, "grid": list(a.grid), "method": a.basis.method, "image_names": a.image_names,
            "image_paths": a.image_paths, "table_note": a.table_note, "deletion_note": a.deletion_note,
            "variance_explained": a.variance_explained, "exact": a.exact, "embedding_gap": a.embedding_gap,
            "embedding_accuracy": a.embedding_accuracy,
            "patch_sse": a.codes.patch_sse, "patch_sst": a.codes.patch_sst,
            "stats": {"n_images": s.n_images, "sample_vectors": s.sample_vectors, "sample_images": s.sample_images,
                      "extract_seconds": s.extract_seconds, "fit_seconds": s.fit_seconds,
                      "apply_seconds": s.apply_seconds, "score_seconds": s.score_seconds},
            "failures": [[f.name, f.reason] for f in a.failures]}
    _write_json(folder / "meta.json", meta)


def _load(folder: Path, stats: AtlasStats | None = None) -> ConceptAtlas:
    """An atlas from its cache folder; the per-patch maps stay on disk (a read-only memory map)."""
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "arrays.npz") as z:
        arr = {name: z[name] for name in z.files}
    basis = ConceptBasis(meta["method"], arr["W"], arr["offset"])
    maps = np.load(folder / "maps.npy", mmap_mode="r")
    top = TopPatches(arr["top_image"], arr["top_row"], arr["top_col"], arr["top_coef"])
    codes = ConceptCodes(arr["u"], arr["e"], maps, top, arr["dominant"], meta["patch_sse"], meta["patch_sst"])
    table = deletion = None
    if (folder / "table.npz").is_file():
        with np.load(folder / "table.npz") as z:
            table = ClassTable(**{name: z[name] for name in z.files})
    if (folder / "deletion.npz").is_file():
        with np.load(folder / "deletion.npz") as z:
            deletion = DeletionResult(**{name: z[name] for name in z.files})
    names_file = folder / "names.json"
    names = json.loads(names_file.read_text()) if names_file.is_file() else [""] * basis.k
    if stats is None:
        stats = AtlasStats(**meta["stats"], from_cache=True)
        stats.extract_seconds = stats.fit_seconds = stats.apply_seconds = stats.score_seconds = 0.0
    return ConceptAtlas(meta["backbone"], meta["weights_id"], meta["layer"], meta["size"], tuple(meta["grid"]), basis,
                        names, meta["image_names"], meta["image_paths"], arr["labels"], codes, table,
                        meta["table_note"], deletion, meta["deletion_note"], meta["variance_explained"], meta["exact"],
                        meta["embedding_gap"], meta["embedding_accuracy"], stats, [Failure(n, r) for n, r in meta["failures"]], folder)
