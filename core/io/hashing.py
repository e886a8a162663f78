"""sha256 of files and bytes, with a sidecar cache so large weight files are hashed once."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_CHUNK = 1 << 20


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (image records and uploads are keyed by it)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike, sidecar_dir: Path | None = None) -> str:
    """Hex sha256 of a file. With ``sidecar_dir``, the digest is remembered there keyed by
    (absolute path, size, mtime) and reused while the file is unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo = None
    if sidecar_dir is not None:
        memo = sidecar_dir / f"sha256-{hashlib.sha1(str(path).encode()).hexdigest()[:16]}.json"
        try:
            rec = json.loads(memo.read_text())
            if rec.get("key") == key:
                return rec["sha256"]
        except (OSError, ValueError, KeyError):
            pass  # no or stale memo: hash below
    digest = _hash_file(path)
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "sha256": digest}))
            os.replace(tmp, memo)
        except OSError:
            pass  # a read-only cache only costs hashing the file again next time
    return digest


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
