"""Embedding sources for a comparison: an imported set (``backbone-lens import``) or a backbone run on a
folder, and their alignment on the images they share.

A source is what the Compare views need of a set of embeddings: ``X [N, D]``, the labels, the image
paths and (where known) each image file's sha256, plus the model when there is one (parameters, speed and
saliency exist only then). :func:`align_sources` finds the images every source holds and returns each
source's rows for them, in one order:

* by **content**, the sha256 of the image file, when every source carries it (a backbone run always
  does; an imported set when its table had a ``sha256`` column, as ``backbone-lens export`` writes);
* else by **path**, each compared after ``~`` expansion and ``os.path.abspath`` (a relative path is
  taken relative to the working directory), with no access to the disk.

An image listed twice in one source counts once (its first row). The order is the first source's, so
aligning a set with itself, or an exported set with the folder it came from, keeps that order and the
evaluation splits (which depend on the labels' order) stay the same. Fewer than :data:`MIN_SHARED`
shared images are refused with one line.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.compare.speed import Speed, measure_speed
from core.io.images import ImageRecord
from core.io.imports import ImportedSet, open_imported
from core.io.policy import ServerPolicy
from core.io.store import FeatureStore
from core.models.base import Backbone
from core.models.extract import FeatureSet, extract_features

MIN_SHARED = 10  # fewer shared images than this: no comparison (an index or a split means nothing)
MAX_SOURCES = 4
IMPORTED_PREFIX = "imported:"
SourceKind = Literal["backbone", "imported"]
AlignKey = Literal["sha256", "path"]


@dataclass(frozen=True)
class EmbeddingSource:
    """One set of embeddings of images, whatever made it.

    Attributes:
        name: display name: the backbone's registry name, or the imported set's name.
        kind: ``"backbone"`` (a model run on images here) or ``"imported"`` (vectors made elsewhere).
        X: ``[N, D]`` embeddings: an imported set's memory map (float16, or float32 for a small set),
            a backbone's float32 array.
        labels: ``[N]`` class labels (``""`` = unlabelled).
        paths: ``N`` image paths as recorded (the folder's files for a backbone).
        sha256: ``N`` hex sha256 of the image files, or None (an imported set without that column).
        names: ``N`` display names (path relative to the folder, or the recorded path).
        made_by: what made the vectors: the backbone's name, or what the import said.
        backbone: the model; None for an imported set (no parameters, speed or saliency).
        features: the :class:`FeatureSet` of a backbone source.
        speed: images per second of a backbone source (:func:`core.compare.speed.measure_speed`).
        records: ``N`` image records of a backbone source (validated files: thumbnails).
        imported: the :class:`ImportedSet` of an imported source.
    """

    name: str
    kind: SourceKind
    X: np.ndarray
    labels: np.ndarray
    paths: list[str]
    sha256: list[str] | None
    names: list[str]
    made_by: str
    backbone: Backbone | None = None
    features: FeatureSet | None = None
    speed: Speed | None = None
    records: list[ImageRecord] | None = None
    imported: ImportedSet | None = None

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def family(self) -> str:
        """The metrics table's family column: the spec's (vit, cnn, clip) or ``"imported"``."""
        return self.backbone.spec.family if self.backbone is not None else "imported"


def imported_source(name: str | ImportedSet, cache: str | os.PathLike | None = None) -> EmbeddingSource:
    """An imported set as a source: its vectors stay a memory map, its labels, paths and (when the set
    carries them) sha256 are read once.

    Raises:
        core.io.imports.UnknownImportedSetError: no set of that name (the message lists them).
    """
    s = name if isinstance(name, ImportedSet) else open_imported(name, cache)
    paths = s.paths()
    return EmbeddingSource(name=s.name, kind="imported", X=s.vectors, labels=np.asarray(s.labels(), dtype=str),
                           paths=paths, sha256=s.sha256s(), names=paths, made_by=s.backbone, imported=s)


def feature_source(backbone: Backbone, fs: FeatureSet, speed: Speed | None = None) -> EmbeddingSource:
    """A backbone's already extracted features (``fs["embedding"]``) as a source."""
    recs = list(fs.records)
    return EmbeddingSource(
        name=backbone.spec.name, kind="backbone", X=fs["embedding"], labels=np.asarray(fs.labels, dtype=str),
        paths=[str(r.path) if r.path is not None else r.name for r in recs], sha256=[r.sha256 for r in recs],
        names=fs.names, made_by=backbone.spec.name, backbone=backbone, features=fs, speed=speed, records=recs)


def backbone_source(backbone: Backbone, records: Sequence[ImageRecord], *, store: FeatureStore | None = None,
                    batch_size: int = 16, progress: Callable[[int, int], None] | None = None) -> EmbeddingSource:
    """Extract (or reload from the cache) ``backbone``'s embeddings of ``records`` at its spec's input
    size and default embedding block, and time it (:func:`core.compare.speed.measure_speed`)."""
    fs = extract_features(backbone, records, kinds=("embedding",), batch_size=batch_size, store=store,
                          progress=progress)
    return feature_source(backbone, fs, measure_speed(backbone, fs))


def split_source_names(text: str) -> list[str]:
    """``"A,B,imported:C"`` -> the names, checked: 2 to :data:`MAX_SOURCES`, each once.

    Raises:
        ValueError: fewer than 2, more than 4, or a name twice.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not 2 <= len(names) <= MAX_SOURCES or len(set(names)) != len(names):
        raise ValueError(f"--sources needs 2 to {MAX_SOURCES} different names separated by commas (imported sets "
                         f"or backbones), got {text!r}")
    return names


def source_kind(name: str) -> tuple[SourceKind, str]:
    """Whether ``name`` means a backbone or an imported set: ``imported:NAME`` is always the set; a
    registered backbone name or a hub pattern (``timm/...``, ``open_clip/...``) is the backbone;
    anything else an imported set. Returns ``(kind, bare name)``; reads nothing."""
    from core.errors import BackboneLensError
    from core.models.registry import check_backbone_name

    if name.startswith(IMPORTED_PREFIX):
        return "imported", name[len(IMPORTED_PREFIX):]
    try:
        check_backbone_name(name)
    except BackboneLensError:
        return "imported", name
    return "backbone", name


# ---- alignment ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignedSources:
    """Two to four sources restricted to the images they all hold, in one order.

    Attributes:
        sources: the sources, in the order given.
        key: ``"sha256"`` (file content) or ``"path"``, what matched the images.
        rows: per source, ``[M]`` its row of each shared image.
        features: per source, ``[M, D_b]`` those rows (the source's own array, memory map included, when
            it holds exactly the shared images in this order; else a copy of the M rows in its dtype).
        labels: ``[M]`` the shared images' labels (from the first labelled source; ``""`` when none is).
        names: ``M`` display names (the first source's).
        paths: ``M`` paths (the first source's, as recorded).
        label_source: the source whose labels are used (None when no source is labelled).
        duplicates: per source, rows left out because their image was listed before.
    """

    sources: list[EmbeddingSource]
    key: AlignKey
    rows: list[np.ndarray]
    features: list[np.ndarray]
    labels: np.ndarray
    names: list[str]
    paths: list[str]
    label_source: str | None = None
    duplicates: list[int] = field(default_factory=list)

    @property
    def n_shared(self) -> int:
        return len(self.labels)

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.sources]

    @property
    def labelled(self) -> bool:
        return self.n_shared > 0 and bool(np.all(self.labels != ""))

    def summary(self) -> str:
        """One line for a caption: how many images the sources share, and how they were matched."""
        each = ", ".join(f"{s.name} {s.n:,}" for s in self.sources)
        how = "file content (sha256)" if self.key == "sha256" else "image path"
        return (f"{self.n_shared:,} images shared by the {len(self.sources)} sources (of {each}), matched by {how}; "
                f"every number compares these images only.")

    def records(self) -> list[ImageRecord] | None:
        """``M`` validated image records of the shared images from the first backbone source, or None
        when every source is imported."""
        for s, r in zip(self.sources, self.rows):
            if s.records is not None:
                return [s.records[int(i)] for i in r]
        return None

    def image_bytes(self, i: int, policy: ServerPolicy) -> bytes | None:
        """Shared image ``i``'s file: a backbone source's record (a file this server read already), else
        the first imported set's path where ``policy`` lets the server read it; None otherwise."""
        for s, r in zip(self.sources, self.rows):
            if s.records is not None:
                try:
                    return s.records[int(r[i])].read_bytes(policy.limits.max_file_bytes)
                except (OSError, ValueError):
                    return None
        for s, r in zip(self.sources, self.rows):
            if s.imported is not None:
                return s.imported.image_bytes(int(r[i]), policy)
        return None

    def as_dict(self) -> dict:
        """The JSON of the alignment: key, n_shared, and each source's own image count."""
        return {"aligned_by": self.key, "n_shared": self.n_shared,
                "n_images_per_source": {s.name: s.n for s in self.sources}}


def _path_key(p: str) -> str:
    return os.path.abspath(os.path.expanduser(p))


def _first_rows(keys: Sequence[str]) -> tuple[dict[str, int], int]:
    """key -> first row holding it, and how many rows repeat an earlier key."""
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    return first, len(keys) - len(first)


def align_sources(sources: Sequence[EmbeddingSource], *, min_shared: int = MIN_SHARED) -> AlignedSources:
    """The images every source holds (see the module docstring), each source's rows for them, and one
    set of labels.

    Labels: the first source whose shared images are all labelled gives them; another fully labelled
    source must agree on every shared image.

    Raises:
        ValueError: fewer than 2 or more than :data:`MAX_SOURCES` sources, a name twice, fewer than
            ``min_shared`` shared images, or labelled sources that disagree (one line each).
    """
    if not 2 <= len(sources) <= MAX_SOURCES:
        raise ValueError(f"a comparison takes 2 to {MAX_SOURCES} sources, got {len(sources)}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"each source may appear once, got {names}")
    key: AlignKey = "sha256" if all(s.sha256 is not None for s in sources) else "path"
    keys = [list(s.sha256) if key == "sha256" else [_path_key(p) for p in s.paths]  # type: ignore[arg-type]
            for s in sources]
    firsts, dups = zip(*(_first_rows(k) for k in keys))
    shared = [k for k, i in firsts[0].items() if all(k in f for f in firsts[1:])]  # the first source's order
    if len(shared) < min_shared:
        each = ", ".join(f"{s.name} {s.n:,}" for s in sources)
        hint = "" if key == "sha256" else (" (matched by image path; give every set a sha256 column, as `backbone-lens "
                                            "export` writes, to match by file content)")
        raise ValueError(f"the sources share only {len(shared)} images ({each}){hint}; a comparison needs at least "
                         f"{min_shared} shared images")
    rows = [np.fromiter((f[k] for k in shared), np.int64, len(shared)) for f in firsts]  # [M] each
    features = [s.X if len(r) == s.n and np.array_equal(r, np.arange(s.n)) else s.X[r] for s, r in zip(sources, rows)]
    labels, label_source = np.full(len(shared), "", dtype=object), None
    for s, r in zip(sources, rows):
        lab = s.labels[r]
        if not np.all(lab != ""):
            continue
        if label_source is None:
            labels, label_source = lab, s.name
            continue
        differ = np.flatnonzero(lab != labels)
        if len(differ):
            j = int(differ[0])
            raise ValueError(f"{label_source} and {s.name} label {len(differ)} of the {len(shared)} shared images "
                             f"differently (e.g. {sources[0].names[rows[0][j]]}: {str(labels[j])!r} vs "
                             f"{str(lab[j])!r}); compare sets labelled the same way, or import one without labels")
    first = sources[0]
    return AlignedSources(list(sources), key, rows, features, np.asarray(labels, dtype=str),
                          [first.names[int(i)] for i in rows[0]], [first.paths[int(i)] for i in rows[0]],
                          label_source, list(dups))

