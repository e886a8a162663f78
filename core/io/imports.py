"""Bring your own embeddings: named sets imported from files, and feature shards merged into the cache.

Two kinds of input:

* **A table of (path, label, vector)** from ``backbone-lens export`` (``.npz`` with ``embeddings``,
  ``paths``, ``labels``) or from any other tool (Parquet with columns ``path``, ``label``,
  ``vector`` = list<float>; CSV with ``path``, ``label`` and either a ``vector`` column holding
  numbers separated by commas or spaces, optionally in brackets, or columns ``vector_0`` ...
  ``vector_{D-1}``). It becomes a *named set* stored durably under ``<cache>/imported/<name>/``:

  =====================  ====================================================================
  ``vectors.f16``        ``[N, D]`` float16 (``vectors.f32``: float32, see *precision*), C order,
                         no header (shape in ``meta.json``): read back as a memory map (never all
                         in RAM), written once with no copy
  ``norms.npy``          ``[N]`` float32 L2 norms of the stored rows (cosine without a pass)
  ``codes.npy``          ``[N]`` int32 index into ``meta.json``'s ``classes``
  ``paths.bin``          the paths, UTF-8, concatenated; ``paths_offsets.npy`` ``[N + 1]`` int64
  ``sha256.npy``         ``[N, 32]`` uint8 sha256 of each image file, only when the table has a
                         ``sha256`` column (hex); sets are then aligned by content, not by path
  ``meta.json``          name, n, dim, dtype, classes, has_sha256, source file, backbone, created
  ``proj/``              projections computed later, one ``.npy`` per parameter key
  =====================  ====================================================================

  A set is written under a temporary name and renamed into place, so a crash never leaves a
  half set and re-importing a name replaces it whole. Each set is checked when listed or opened
  (:func:`set_problem`: every file present, of the size and shape ``meta.json`` says): lost or
  damaged norms are recomputed from the vectors; any other damage (a truncated vectors file, a
  missing ``meta.json``, codes or paths that do not fit) leaves the set out of the list, and
  :func:`imported_problems` / :class:`ImportedSetDamagedError` name it in one line with the
  command that re-imports it. Nothing of a damaged set is deleted.

  *Precision*: float16 halves the bytes of a large set (a relative error of about 5e-4 per value),
  enough for maps, neighbours and accuracies, but not to reproduce a float32 computation to 1e-6
  (linear CKA of the stamps' MobileNetV2 embeddings moves by 1.6e-6). ``precision="auto"`` (the
  default) therefore keeps float32 while the set holds at most :data:`AUTO_FLOAT32_MAX_VALUES`
  numbers (64 MB as float32) and stores float16 above; ``"float16"`` / ``"float32"`` force one.

* **A directory of Parquet shards** with the schema of :data:`SHARD_SCHEMA` (one row per image,
  written by a batch engine): every row is merged into the :class:`~core.io.store.FeatureStore`
  under its own key, so the pages, ``export`` and ``evaluate`` read those images' features with
  no forward pass.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import BackboneLensError
from core.io.heal import CacheRecoveredWarning, ensure_dir, npy_header, os_error
from core.io.paths import cache_dir
from core.io.policy import ServerPolicy
from core.io.store import FeatureKey, FeatureStore

IMPORTED_DIR = "imported"
FORMAT_VERSION = 2  # 2: dtype and has_sha256 in meta.json (a version-1 set is float16 without sha256)
PRECISIONS = ("auto", "float16", "float32")
AUTO_FLOAT32_MAX_VALUES = 1 << 24  # N * D at most this: "auto" keeps float32 (64 MB); above: float16
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_BATCH = 65_536  # rows per read / write block: [65536, D] float32 at most in memory at once
SHARD_SCHEMA: dict[str, str] = {
    "sha256": "string", "path": "string", "label": "string", "weights_id": "string",
    "preprocessing_id": "string", "layer": "int", "kind": "string", "vector": "list<float32>",
}
ProgressFn = Callable[[int, int], None]  # (rows done, rows total or 0 when unknown)


class ImportFormatError(BackboneLensError, ValueError):
    """A file or directory that cannot be imported; the message says what is wrong and what is expected."""


class ImportedSetDamagedError(BackboneLensError):
    """An imported set whose files are missing or do not fit its ``meta.json``; the message names
    what is wrong and the command that imports it again."""


class UnknownImportedSetError(BackboneLensError, KeyError):
    """No imported set of that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# ---- the stored set ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportedSet:
    """One imported set, read lazily from its directory.

    Attributes:
        name: the set's name (the directory name).
        root: its directory.
        n: number of points N.
        dim: vector dimension D.
        classes: the distinct labels, sorted (``""`` = unlabelled).
        source: the file it was imported from.
        backbone: what made the vectors, as given at import (``"imported"`` when unknown).
        dtype: ``"float16"`` or ``"float32"``, how the vectors are stored (see *precision* above).
        has_sha256: whether every point carries its image file's sha256.
        created: when the set was written (seconds since the epoch).
    """

    name: str
    root: Path
    n: int
    dim: int
    classes: tuple[str, ...]
    source: str
    backbone: str
    dtype: str = "float16"
    has_sha256: bool = False
    created: float = 0.0

    @property
    def fid(self) -> str:
        """Identity of this version of the set (a re-import under the same name gets a new one): a cache key."""
        return f"imported:{self.name}:{self.created!r}"

    @property
    def vectors(self) -> np.ndarray:
        """``[N, D]`` memory map (read-only) of the stored dtype (float16, or float32 for small sets)."""
        return np.memmap(self.root / _vector_file(self.dtype), dtype=np.dtype(self.dtype), mode="r",
                         shape=(self.n, self.dim))

    @property
    def norms(self) -> np.ndarray:
        """``[N]`` float32 L2 norms of the stored float16 rows."""
        return np.load(self.root / "norms.npy", mmap_mode="r")

    @property
    def codes(self) -> np.ndarray:
        """``[N]`` int32 class index into :attr:`classes`."""
        return np.load(self.root / "codes.npy")

    def labels(self) -> np.ndarray:
        """``[N]`` label strings."""
        return np.asarray(self.classes, dtype=object)[self.codes] if self.classes else np.full(self.n, "", object)

    @property
    def labelled(self) -> bool:
        """True when every point has a class (the classifier, few-shot, incremental, TEEN, OOD views need it)."""
        return bool(self.classes) and "" not in self.classes

    def sha256s(self) -> list[str] | None:
        """``N`` hex sha256 of the image files, or None when the imported table had no ``sha256`` column."""
        if not self.has_sha256:
            return None
        raw = np.load(self.root / "sha256.npy", mmap_mode="r")  # [N, 32] uint8
        return [bytes(r).hex() for r in raw]

    def image_bytes(self, i: int, policy: ServerPolicy) -> bytes | None:
        """The image file of point ``i`` when ``policy`` lets the server read it
        (:meth:`~core.io.policy.ServerPolicy.readable_file`: under a data root, a regular file, at most
        ``policy.limits.max_file_bytes``), else None (not there, not allowed, or not readable)."""
        from core.io.images import read_regular_file

        f = policy.readable_file(self.path(i))
        if f is None:
            return None
        try:
            return read_regular_file(f, policy.limits.max_file_bytes)
        except OSError:
            return None  # vanished, unreadable or too large since the check

    def path(self, i: int) -> str:
        """The path recorded for point ``i``."""
        if not 0 <= i < self.n:
            raise IndexError(f"point {i} is not in {self.name!r} (0..{self.n - 1})")
        off = np.load(self.root / "paths_offsets.npy", mmap_mode="r")
        with open(self.root / "paths.bin", "rb") as f:
            f.seek(int(off[i]))
            return f.read(int(off[i + 1] - off[i])).decode("utf-8")

    def paths(self) -> list[str]:
        """All N paths (reads the whole path file: use :meth:`path` for a few)."""
        off = np.load(self.root / "paths_offsets.npy")
        blob = (self.root / "paths.bin").read_bytes()
        return [blob[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:])]


def imported_root(cache: str | os.PathLike | None = None) -> Path:
    """The folder of imported sets (made if missing; a file in its place is moved aside)."""
    return ensure_dir(cache_dir(cache) / IMPORTED_DIR, "imported-sets folder")


def _scan(cache: str | os.PathLike | None) -> tuple[list[ImportedSet], list[str]]:
    """The sound imported sets, and one line per damaged one."""
    sets, problems = [], []
    for d in sorted(imported_root(cache).iterdir()):
        if not d.is_dir() or d.name.startswith("."):  # .tmp-* / .old-*: an import in progress
            continue
        try:
            sets.append(_checked(d))
        except ImportedSetDamagedError as e:
            problems.append(str(e))
    return sets, problems


def list_imported(cache: str | os.PathLike | None = None) -> list[ImportedSet]:
    """The imported sets in the cache, by name. Damaged sets are left out (see :func:`imported_problems`);
    lost norms are recomputed on the way."""
    return _scan(cache)[0]


def imported_problems(cache: str | os.PathLike | None = None) -> list[str]:
    """One line per damaged imported set: what is wrong and the command that imports it again."""
    return _scan(cache)[1]


def open_imported(name: str, cache: str | os.PathLike | None = None) -> ImportedSet:
    """The imported set ``name``.

    Raises:
        UnknownImportedSetError: no such set (the message lists the known ones).
        ImportedSetDamagedError: its files are missing or do not fit its ``meta.json``.
    """
    d = imported_root(cache) / name
    if not _NAME_RE.match(name) or not d.is_dir():
        known = ", ".join(s.name for s in list_imported(cache)) or "none yet"
        raise UnknownImportedSetError(f"no imported set named {name!r} (imported: {known}); "
                                      f"create one with `backbone-lens import FILE --name {name}`")
    return _checked(d)


def _read_meta(d: Path) -> ImportedSet:
    m = json.loads((d / "meta.json").read_text())
    classes = tuple(m["classes"])
    n, dim = int(m["n"]), int(m["dim"])
    if n < 1 or dim < 1 or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"n={n}, dim={dim}, classes {classes[:3]}")
    dtype = str(m.get("dtype", "float16"))
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype {dtype!r}")
    return ImportedSet(d.name, d, n, dim, classes, str(m["source"]), str(m["backbone"]), dtype=dtype,
                       has_sha256=bool(m.get("has_sha256", False)), created=float(m.get("created", 0.0)))


def set_problem(s: ImportedSet) -> str | None:
    """What is wrong with the files of ``s`` (beside its norms), or None. Reads headers, sizes, the
    codes and the last path offset: no vector."""
    r = s.root
    vec = _vector_file(s.dtype)
    want = s.n * s.dim * np.dtype(s.dtype).itemsize
    try:
        got = (r / vec).stat().st_size
        if not (r / vec).is_file() or got != want:
            return f"{vec} holds {got:,} bytes where meta.json says {s.n:,} x {s.dim} {s.dtype} = {want:,}"
        shape, dtype = npy_header(r / "codes.npy")
        if shape != (s.n,) or dtype.kind not in "iu":
            return f"codes.npy is {dtype} {shape}, expected [{s.n}] integers"
        codes = np.load(r / "codes.npy", mmap_mode="r")
        if s.n and (int(codes.min()) < 0 or int(codes.max()) >= max(len(s.classes), 1)):
            return f"codes.npy points outside the {len(s.classes)} classes"
        shape, dtype = npy_header(r / "paths_offsets.npy")
        if shape != (s.n + 1,) or dtype.kind not in "iu":
            return f"paths_offsets.npy is {dtype} {shape}, expected [{s.n + 1}] integers"
        off = np.load(r / "paths_offsets.npy", mmap_mode="r")
        size = (r / "paths.bin").stat().st_size
        if int(off[0]) != 0 or int(off[-1]) != size:
            return f"paths.bin holds {size:,} bytes where paths_offsets.npy says {int(off[-1]):,}"
    except FileNotFoundError as e:
        return f"{Path(e.filename or '?').name} is missing"
    except (OSError, ValueError) as e:
        return f"unreadable: {type(e).__name__}: {e}"
    return None


def _norms_ok(s: ImportedSet) -> bool:
    try:
        shape, dtype = npy_header(s.root / "norms.npy")
    except (OSError, ValueError):
        return False
    return shape == (s.n,) and dtype == np.float32


def _rewrite_norms(s: ImportedSet) -> None:
    """Recompute ``norms.npy`` from the vectors, a block at a time, and write it whole."""
    V = s.vectors
    norms = np.concatenate([np.linalg.norm(np.asarray(V[a:a + _BATCH], np.float32), axis=1)
                            for a in range(0, s.n, _BATCH)]).astype(np.float32)  # [N]
    tmp = s.root / f".norms-{uuid.uuid4().hex[:8]}.npy"
    np.save(tmp, norms)
    os.replace(tmp, s.root / "norms.npy")


def _checked(d: Path) -> ImportedSet:
    """The set in ``d`` after :func:`set_problem` (norms recomputed if lost), or the one-line error."""
    def damaged(why: str, source: str = "FILE") -> ImportedSetDamagedError:
        return ImportedSetDamagedError(f"the imported set {d.name!r} ({d}) is damaged: {why}; import it again with "
                                       f"`backbone-lens import {source} --name {d.name}` (or delete that folder)")

    try:
        s = _read_meta(d)
    except FileNotFoundError:
        raise damaged("meta.json is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise damaged(f"meta.json is unreadable ({type(e).__name__})") from None
    why = set_problem(s)
    if why:
        raise damaged(why, s.source)
    if not _norms_ok(s):
        try:
            _rewrite_norms(s)
        except OSError as e:
            raise damaged(f"norms.npy is damaged and cannot be rewritten here ({e.strerror or e})", s.source) from e
        warnings.warn(f"the imported set {d.name!r} had lost its norms (norms.npy): recomputed from its vectors",
                      CacheRecoveredWarning, stacklevel=3)
    return s


def _vector_file(dtype: str) -> str:
    return {"float16": "vectors.f16", "float32": "vectors.f32"}[dtype]


# Views of the pages that need the model itself, not only its vectors: what they say for an imported set.
MODEL_ONLY_VIEWS: dict[str, str] = {
    "upload": "Classifying a new image needs the model that made these vectors, to embed that image the same way; "
              "an imported set has only the vectors (run the same model on the new images and import them too).",
    "saliency": "Saliency maps need the model itself (its gradients or attention over an image's patches); an "
                "imported set has only one vector per image.",
    "segmentation": "Segmentation needs the model's patch tokens of each image; an imported set has only one vector "
                    "per image.",
    "zero_shot": "Zero-shot prototypes need the text tower of the CLIP model that made the vectors; an imported set "
                 "has only the image vectors.",
    "side_by_side": "The side-by-side views (saliency, the click mask, one column per model) need the model's "
                    "attention, gradients and patch tokens; an imported set has only one vector per image.",
    "layer_cka": "Block-by-block CKA needs every block of the model; an imported set has only its final vectors.",
}


# ---- reading tables ----------------------------------------------------------------------------
def _parse_vector_text(s: str, row: int) -> np.ndarray:
    parts = [p for p in re.split(r"[,\s;]+", s.strip().strip("[]()")) if p]
    try:
        return np.asarray([float(p) for p in parts], dtype=np.float32)
    except ValueError:
        raise ImportFormatError(f"row {row}: the vector {s[:60]!r} is not a list of numbers "
                                f"(expected e.g. '0.1, -0.3, 2e-2')") from None


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha_block(H: list[str] | None, start: int, where: str) -> np.ndarray | None:
    """``[n, 32]`` uint8 digests of a block's ``sha256`` column (hex, any case), or None without one."""
    if H is None:
        return None
    out = np.empty((len(H), 32), np.uint8)
    for j, h in enumerate(H):
        h = ("" if h is None else str(h)).strip().lower()
        if not _HEX64.match(h):
            raise ImportFormatError(f"{where}: row {start + j} has sha256 {h[:70]!r}; the sha256 column needs the file's "
                                    "digest as 64 hex digits in every row (or leave the column out)")
        out[j] = np.frombuffer(bytes.fromhex(h), np.uint8)
    return out


def _check_block(P: list[str], L: list[str], V: np.ndarray, where: str) -> None:
    if V.ndim != 2 or V.shape[1] == 0:
        raise ImportFormatError(f"{where}: vectors must form an [N, D] array, got shape {V.shape}")
    if not (len(P) == len(L) == len(V)):
        raise ImportFormatError(f"{where}: {len(P)} paths, {len(L)} labels and {len(V)} vectors: one of each per row")
    if not np.all(np.isfinite(V)):
        bad = int(np.flatnonzero(~np.isfinite(V).all(axis=1))[0])
        raise ImportFormatError(f"{where}: the vector of row {bad} ({P[bad]}) has NaN or inf")
    for p in P:
        if "\n" in p or "\r" in p:
            raise ImportFormatError(f"{where}: a path contains a line break: {p[:80]!r}")


Block = tuple[list[str], list[str], np.ndarray, "list[str] | None"]  # paths, labels, [n, D] vectors, sha256 hex


def _blocks_npz(path: Path) -> Iterator[Block]:
    with np.load(path, allow_pickle=False) as z:
        missing = {"embeddings", "paths"} - set(z.files)
        if missing:
            raise ImportFormatError(f"{path}: an .npz needs arrays 'embeddings' [N, D] and 'paths' [N] "
                                    f"(and optionally 'labels' [N] and 'sha256' [N] hex digests), as written by "
                                    f"`backbone-lens export`; it has {sorted(z.files)}")
        E = z["embeddings"]
        P = [str(p) for p in z["paths"]]
        L = [str(v) for v in z["labels"]] if "labels" in z.files else [""] * len(P)
        H = [str(h) for h in z["sha256"]] if "sha256" in z.files else None
    if H is not None and len(H) != len(P):
        raise ImportFormatError(f"{path}: {len(H)} sha256 digests for {len(P)} paths: one per row")
    for s in range(0, max(len(P), 1), _BATCH):
        yield (P[s:s + _BATCH], L[s:s + _BATCH], np.asarray(E[s:s + _BATCH], dtype=np.float32),
               None if H is None else H[s:s + _BATCH])


def _blocks_parquet(path: Path) -> Iterator[Block]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    names = set(f.schema_arrow.names)
    if not {"path", "vector"} <= names:
        raise ImportFormatError(f"{path}: a Parquet file needs columns 'path' (string), 'vector' (list of floats) "
                                f"and optionally 'label' (string) and 'sha256' (hex string); it has {sorted(names)}")
    cols = ["path", "vector"] + [c for c in ("label", "sha256") if c in names]
    for b in f.iter_batches(batch_size=_BATCH, columns=cols):
        P = [str(p) for p in b.column("path").to_pylist()]
        L = [("" if v is None else str(v)) for v in b.column("label").to_pylist()] if "label" in names else [""] * len(P)
        H = b.column("sha256").to_pylist() if "sha256" in names else None
        yield P, L, _list_column_to_matrix(b.column("vector"), f"{path}: column 'vector'", pa), H


def _list_column_to_matrix(col, where: str, pa) -> np.ndarray:
    """A list<float> Arrow column of equal-length lists as ``[n, D]`` float32."""
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise ImportFormatError(f"{where} must be a list of floats per row, got Arrow type {col.type}")
    if col.null_count:
        raise ImportFormatError(f"{where} has {col.null_count} empty (null) vectors")
    n = len(col)
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if n == 0:
        return np.zeros((0, 0), np.float32)
    if len(flat) % n:
        raise ImportFormatError(f"{where}: vectors have different lengths ({len(flat)} numbers for {n} rows)")
    V = flat.reshape(n, len(flat) // n)
    lengths = np.diff(col.offsets.to_numpy()) if hasattr(col, "offsets") else None
    if lengths is not None and np.any(lengths != V.shape[1]):
        raise ImportFormatError(f"{where}: vectors have different lengths ({sorted(set(lengths.tolist()))[:5]})")
    return V


def _blocks_csv(path: Path) -> Iterator[Block]:
    import pandas as pd

    for chunk in pd.read_csv(path, chunksize=_BATCH, dtype={"path": str, "label": str, "sha256": str},
                             keep_default_na=False):
        if "path" not in chunk.columns:
            raise ImportFormatError(f"{path}: a CSV needs a 'path' column, a 'label' column (optional), a 'sha256' "
                                    f"column (optional) and the vector as a 'vector' column or as columns "
                                    f"vector_0 .. vector_(D-1); "
                                    f"it has {list(chunk.columns)[:10]}")
        P = chunk["path"].astype(str).tolist()
        L = chunk["label"].astype(str).tolist() if "label" in chunk.columns else [""] * len(P)
        vcols = sorted((c for c in chunk.columns if re.fullmatch(r"vector_\d+", str(c))), key=lambda c: int(c[7:]))
        if "vector" in chunk.columns:
            rows = [_parse_vector_text(str(s), int(i)) for i, s in zip(chunk.index, chunk["vector"])]
            if len({len(r) for r in rows}) > 1:
                raise ImportFormatError(f"{path}: vectors have different lengths ({sorted({len(r) for r in rows})[:5]})")
            V = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
        elif vcols:
            if [int(c[7:]) for c in vcols] != list(range(len(vcols))):
                raise ImportFormatError(f"{path}: vector columns must be vector_0 .. vector_{len(vcols) - 1} without gaps")
            V = chunk[vcols].to_numpy(dtype=np.float32)
        else:
            raise ImportFormatError(f"{path}: no vector: add a 'vector' column ('0.1, 0.2, ...') or columns "
                                    f"vector_0 .. vector_(D-1); found {list(chunk.columns)[:10]}")
        yield P, L, V, (chunk["sha256"].astype(str).tolist() if "sha256" in chunk.columns else None)


_READERS = {".npz": _blocks_npz, ".parquet": _blocks_parquet, ".pq": _blocks_parquet, ".csv": _blocks_csv}


def _count_rows(path: Path) -> int:
    """Rows of a table without parsing its vectors (a CSV: its line breaks less the header, which
    overcounts only a quoted field holding a line break)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return len(z["paths"]) if "paths" in z.files else 0
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines + (last != b"\n") - 1, 0)


def _choose_dtype(precision: str, n: int, dim: int) -> str:
    """The stored dtype: ``precision`` unless ``"auto"``, which keeps float32 for at most
    :data:`AUTO_FLOAT32_MAX_VALUES` numbers."""
    if precision != "auto":
        return precision
    return "float32" if n * dim <= AUTO_FLOAT32_MAX_VALUES else "float16"


# ---- writing a set -----------------------------------------------------------------------------
def import_table(file: str | os.PathLike, name: str | None = None, *, backbone: str = "imported",
                 cache: str | os.PathLike | None = None, progress: ProgressFn | None = None,
                 precision: str = "auto") -> ImportedSet:
    """Import a table of (path, label, vector[, sha256]) as the named set ``name`` (default: the file's stem).

    The vectors are written in blocks (their norms as float32), so a million 384-D rows need about
    one block of memory, not the whole table. Re-importing a name replaces that set.

    Args:
        precision: ``"auto"`` (float32 up to :data:`AUTO_FLOAT32_MAX_VALUES` numbers, else float16),
            ``"float16"`` or ``"float32"``: how the vectors are stored (see the module docstring).

    Raises:
        ImportFormatError: unsupported suffix, missing columns, ragged or non-finite vectors, a bad
            sha256, a bad name or precision.
        FileNotFoundError: ``file`` does not exist.
    """
    if precision not in PRECISIONS:
        raise ImportFormatError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    src = Path(file).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"no such file: {src}")
    reader = _READERS.get(src.suffix.lower())
    if reader is None:
        raise ImportFormatError(f"{src}: cannot import '{src.suffix}' files; use .npz (from `backbone-lens export`), "
                                f".parquet or .csv with columns path, label, vector, or a directory of feature shards")
    name = name or src.stem
    if not _NAME_RE.match(name):
        raise ImportFormatError(f"set name {name!r}: use letters, digits, '.', '_' or '-' (at most 100, "
                                f"starting with a letter or digit); pass --name NAME")
    root = imported_root(cache)
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        meta = _write_set(tmp, name, src, reader, backbone, _count_rows(src), progress, precision)
        final = root / name
        if final.exists():  # replace whole: move the old set aside, then drop it
            old = root / f".old-{name}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        err = os_error(e, root) if isinstance(e, OSError) else None  # a full disk, a read-only cache: one line
        if err is not None:
            raise err from e
        raise
    return _read_meta(root / meta["name"])


def _write_set(d: Path, name: str, src: Path, reader, backbone: str, total: int, progress: ProgressFn | None,
               precision: str = "auto") -> dict:
    n = 0
    dim: int | None = None
    dtype = "float16"
    classes: dict[str, int] = {}
    codes: list[np.ndarray] = []
    norms: list[np.ndarray] = []
    shas: list[np.ndarray] = []
    offsets = [np.zeros(1, np.int64)]
    pos = 0
    with contextlib.ExitStack() as files:
        fp = files.enter_context(open(d / "paths.bin", "wb"))
        fv = None
        for P, L, V, S in reader(src):
            where = f"{src} rows {n}..{n + len(P) - 1}"
            if len(P) == 0:
                continue
            _check_block(P, L, V, where)
            if dim is None:  # the first block fixes D, the stored dtype and whether digests come
                dim = V.shape[1]
                dtype = _choose_dtype(precision, max(total, len(P)), dim)
                fv = files.enter_context(open(d / _vector_file(dtype), "wb"))
            elif V.shape[1] != dim:
                raise ImportFormatError(f"{where}: vectors of length {V.shape[1]}, earlier rows have {dim}")
            sha = _sha_block(S, n, str(src))
            if n > 0 and (sha is not None) != bool(shas):
                raise ImportFormatError(f"{where}: the sha256 column is missing in some blocks")
            if sha is not None:
                shas.append(sha)
            H = V.astype(dtype)  # [b, D]
            if not np.all(np.isfinite(H)):
                raise ImportFormatError(f"{where}: values beyond float16's range (|x| > 65504); rescale the vectors "
                                        "or import with precision float32")
            assert fv is not None
            fv.write(H.tobytes())
            norms.append(np.linalg.norm(H.astype(np.float32, copy=False), axis=1))
            codes.append(np.asarray([classes.setdefault(lab, len(classes)) for lab in L], np.int32))
            enc = [p.encode("utf-8") for p in P]
            fp.write(b"".join(enc))
            lens = np.fromiter((len(e) for e in enc), np.int64, len(enc))
            offsets.append(pos + np.cumsum(lens))
            pos += int(lens.sum())
            n += len(P)
            if progress:
                progress(n, max(total, n) if total else 0)
    if n == 0 or dim is None:
        raise ImportFormatError(f"{src}: no rows to import")
    ordered = sorted(classes)  # stored codes index the sorted class list
    remap = np.empty(len(classes), np.int32)
    for lab, c in classes.items():
        remap[c] = ordered.index(lab)
    np.save(d / "codes.npy", remap[np.concatenate(codes)])
    np.save(d / "norms.npy", np.concatenate(norms).astype(np.float32))
    np.save(d / "paths_offsets.npy", np.concatenate(offsets))
    if shas:
        np.save(d / "sha256.npy", np.concatenate(shas))
    meta = dict(format=FORMAT_VERSION, name=name, n=n, dim=dim, dtype=dtype, classes=ordered, has_sha256=bool(shas),
                source=str(src.resolve()), backbone=backbone, created=time.time())
    (d / "meta.json").write_text(json.dumps(meta))
    return meta


# ---- shards into the feature store -------------------------------------------------------------
@dataclass(frozen=True)
class ShardMerge:
    """What :func:`merge_shards` wrote.

    Attributes:
        files: shard files read.
        rows: entries written to the FeatureStore.
        groups: rows per (weights_id, preprocessing_id, layer, kind).
    """

    files: int
    rows: int
    groups: dict[tuple[str, str, int, str], int]


def _arrow_kind(t, pa) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t):
        return "int"
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and \
            pa.types.is_float32(t.value_type):
        return "list<float32>"
    return str(t)


def merge_shards(directory: str | os.PathLike, store: FeatureStore | None = None,
                 progress: ProgressFn | None = None) -> ShardMerge:
    """Merge every ``*.parquet`` shard in ``directory`` into the FeatureStore.

    Each row must have exactly the columns of :data:`SHARD_SCHEMA`; it is stored under
    ``FeatureKey(weights_id, preprocessing_id, layer, kind, sha256)`` as float32, one transaction
    per Arrow batch. Existing entries with the same key are replaced.

    Raises:
        ImportFormatError: no shards, or a shard whose columns or types differ from the schema.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = Path(directory).expanduser()
    if not d.is_dir():
        raise NotADirectoryError(f"not a directory of shards: {d}")
    files = sorted(d.rglob("*.parquet"))
    if not files:
        raise ImportFormatError(f"{d}: no *.parquet shards in this directory")
    store = FeatureStore() if store is None else store  # (an empty store is falsy: it has __len__)
    for f in files:  # check every schema before writing anything
        sch = pq.ParquetFile(f).schema_arrow
        got = {n: _arrow_kind(sch.field(n).type, pa) for n in sch.names}
        if got != SHARD_SCHEMA:
            diff = [f"{k}: expected {v}, got {got.get(k, 'missing')}" for k, v in SHARD_SCHEMA.items() if got.get(k) != v]
            diff += [f"{k}: unexpected column" for k in got if k not in SHARD_SCHEMA]
            raise ImportFormatError(f"{f}: not a feature shard ({'; '.join(diff)}). Shards need exactly the columns "
                                    + ", ".join(f"{k} ({v})" for k, v in SHARD_SCHEMA.items()))
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    groups: Counter = Counter()
    rows = 0
    for f in files:
        pf = pq.ParquetFile(f)
        for b in pf.iter_batches(batch_size=8_192):
            V = _list_column_to_matrix(b.column("vector"), f"{f}: column 'vector'", pa)  # [b, D]
            if not np.all(np.isfinite(V)):
                raise ImportFormatError(f"{f}: a vector has NaN or inf")
            cols = {k: b.column(k).to_pylist() for k in ("sha256", "weights_id", "preprocessing_id", "layer", "kind")}
            items = {}
            for j in range(len(V)):
                key = FeatureKey(cols["weights_id"][j], cols["preprocessing_id"][j], int(cols["layer"][j]),
                                 cols["kind"][j], cols["sha256"][j])
                items[key] = V[j]
                groups[(key.weights_id, key.preprocessing, key.layer, key.kind)] += 1
            store.put_many(items)
            rows += len(V)
            if progress:
                progress(rows, total)
    return ShardMerge(len(files), rows, dict(groups))
