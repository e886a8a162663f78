"""What a browser user of a shared server may read and load: data roots, weights folders, limits.

The app is one process serving every browser session, so anything a text box accepts is read with
the server's rights. This module decides, without Streamlit, what is allowed:

* **Data roots** (``BACKBONE_LENS_DATA_ROOTS``, folders separated by ``os.pathsep``): image folders
  are read only under them. The bundled ``sample_data`` is always one. A typed path is resolved
  (``~``, ``..`` and every symlink) before the check, and a path outside the roots is refused with
  the same message whether or not it exists, so the box cannot probe the disk. A loopback server
  without that variable (one person on their own machine, who can read any of their folders anyway)
  reads **any folder** typed in (``any_folder``); its roots (the home folder) only fill the picker.
* **Weights folders** (``BACKBONE_LENS_WEIGHTS_DIRS``): ``timm/<arch>@<file>`` and
  ``open_clip/<arch>@<file>`` read checkpoint files only from there, same rules.
* **Any model** (``BACKBONE_LENS_ALLOW_ANY_MODEL``): hub names and ``open_clip/<arch>/random``
  (which builds a model of any size in memory) only when allowed.
* **Team mode**: the server is reachable by others when it listens on a non-loopback address
  (``server.address``) or ``BACKBONE_LENS_TEAM=1`` says so (a reverse proxy in front of a loopback
  server). Then the defaults are strict: the sample data only, no checkpoint files, no hub or
  random models. On a loopback server used by one person the defaults are any folder (the home
  folder listed), the home folder as a weights folder, and any model.
* **Limits** (:class:`Limits`): pixels per image, bytes per file, files per folder or upload batch,
  models kept loaded, and the upload store's bounds (bytes per session and in all, days kept).

Every refusal is a :class:`PolicyError` (a :class:`~core.errors.BackboneLensError`) whose message is
one line and says which setting allows more.
"""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BackboneLensError, UnknownBackboneError
from core.io.names import BackboneName

ENV_DATA_ROOTS = "BACKBONE_LENS_DATA_ROOTS"
ENV_WEIGHTS_DIRS = "BACKBONE_LENS_WEIGHTS_DIRS"
ENV_TEAM = "BACKBONE_LENS_TEAM"
ENV_ALLOW_ANY_MODEL = "BACKBONE_LENS_ALLOW_ANY_MODEL"
ENV_MAX_PIXELS = "BACKBONE_LENS_MAX_PIXELS"
ENV_MAX_FILE_MB = "BACKBONE_LENS_MAX_FILE_MB"
ENV_MAX_FILES = "BACKBONE_LENS_MAX_FILES"
ENV_MAX_MODELS = "BACKBONE_LENS_MAX_MODELS"
ENV_UPLOAD_SESSION_MB = "BACKBONE_LENS_UPLOAD_SESSION_MB"
ENV_UPLOAD_TOTAL_MB = "BACKBONE_LENS_UPLOAD_TOTAL_MB"
ENV_UPLOAD_TTL_HOURS = "BACKBONE_LENS_UPLOAD_TTL_HOURS"

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class PolicyError(BackboneLensError):
    """Something the server's policy does not allow (a path, a model, a size)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one server.

    Attributes:
        max_pixels: pixels per decoded image (width x height), checked from the header.
        max_file_bytes: bytes read from one file or upload.
        max_files: image files in one folder or one session's uploads.
        max_models: backbones kept loaded in the process (least recently used evicted).
        upload_session_bytes: bytes of uploads kept for one session (:mod:`core.io.uploads`).
        upload_total_bytes: bytes of uploads kept for all sessions together.
        upload_ttl_hours: an upload session unused this long is deleted.
    """

    max_pixels: int = 40_000_000
    max_file_bytes: int = 100 * 2**20
    max_files: int = 5000
    max_models: int = 4
    upload_session_bytes: int = 1024 * 2**20
    upload_total_bytes: int = 8 * 1024 * 2**20
    upload_ttl_hours: int = 24


@dataclass(frozen=True)
class ServerPolicy:
    """The resolved rules of one server (see the module docstring).

    Attributes:
        data_roots: resolved folders images may be read from (the sample data first).
        weights_dirs: resolved folders checkpoint files may be read from.
        team: True when others can reach the server.
        allow_any_model: hub names and random-init models allowed from the browser.
        limits: resource limits.
        any_folder: read any folder typed in (a loopback server without ``BACKBONE_LENS_DATA_ROOTS``);
            ``data_roots`` then only fill the picker.
    """

    data_roots: tuple[Path, ...]
    weights_dirs: tuple[Path, ...] = ()
    team: bool = False
    allow_any_model: bool = True
    limits: Limits = field(default_factory=Limits)
    any_folder: bool = False

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, server_address: str | None = None) -> ServerPolicy:
        """The policy from environment variables and the address the server listens on.

        Args:
            environ: defaults to ``os.environ``.
            server_address: Streamlit's ``server.address``; empty or None means all interfaces
                (team mode).

        Raises:
            PolicyError: a setting that cannot be parsed (named in the message).
        """
        env = os.environ if environ is None else environ
        team = _flag(env, ENV_TEAM, default=False) or not is_loopback(server_address)
        home = Path.home()
        roots = _paths(env.get(ENV_DATA_ROOTS)) if env.get(ENV_DATA_ROOTS) else ([] if team else [home])
        weights = _paths(env.get(ENV_WEIGHTS_DIRS)) if env.get(ENV_WEIGHTS_DIRS) else ([] if team else [home])
        limits = Limits(
            max_pixels=_int(env, ENV_MAX_PIXELS, Limits.max_pixels),
            max_file_bytes=_int(env, ENV_MAX_FILE_MB, Limits.max_file_bytes // 2**20) * 2**20,
            max_files=_int(env, ENV_MAX_FILES, Limits.max_files),
            max_models=_int(env, ENV_MAX_MODELS, Limits.max_models),
            upload_session_bytes=_int(env, ENV_UPLOAD_SESSION_MB, Limits.upload_session_bytes // 2**20) * 2**20,
            upload_total_bytes=_int(env, ENV_UPLOAD_TOTAL_MB, Limits.upload_total_bytes // 2**20) * 2**20,
            upload_ttl_hours=_int(env, ENV_UPLOAD_TTL_HOURS, Limits.upload_ttl_hours),
        )
        return cls(data_roots=_dedupe([SAMPLE_DATA.resolve(), *roots]), weights_dirs=_dedupe(weights), team=team,
                   allow_any_model=_flag(env, ENV_ALLOW_ANY_MODEL, default=not team), limits=limits,
                   any_folder=not team and not env.get(ENV_DATA_ROOTS))

    # ---- data folders ----------------------------------------------------------------------------
    def resolve_data_folder(self, text: str) -> Path:
        """The folder ``text`` names, resolved and checked to lie under a data root (any folder with
        ``any_folder``).

        A relative path is taken relative to each data root in turn (the first that holds it).

        Raises:
            PolicyError: outside every root (same message whether or not it exists), or not a
                folder (said only for paths inside a root, or anywhere with ``any_folder``).
        """
        text = text.strip()
        if not text:
            raise PolicyError("No folder given: pick one from the list.")
        p = Path(text).expanduser()
        candidates = [p] if p.is_absolute() else [r / p for r in self.data_roots]
        if self.any_folder:  # the user's own machine: say plainly what is wrong with the path
            for c in candidates:
                if c.is_dir():
                    return Path(os.path.realpath(c))
            if any(c.exists() for c in candidates):
                raise PolicyError(f"Not a folder: {text} (pick a folder that holds the images).")
            where = "" if p.is_absolute() else f" (a relative path is looked up under {', '.join(map(str, self.data_roots))})"
            raise PolicyError(f"No folder {text}{where}.")
        inside, not_dir = False, False
        for c in candidates:
            real = Path(os.path.realpath(c))
            if self._root_of(real, self.data_roots) is None:
                continue
            if real.is_dir():
                return real
            inside, not_dir = True, not_dir or real.exists()
        if not_dir:  # said only for paths inside a root
            raise PolicyError(f"Not a folder: {text} (pick a folder that holds the images).")
        if inside:
            raise PolicyError(f"No folder {text} under the data roots: pick one from the list.")
        raise PolicyError(f"{text} is not under the data roots this server reads; pick a folder from the list "
                          f"(the server's {ENV_DATA_ROOTS} sets the roots).")

    def is_within_data_roots(self, path: str | os.PathLike) -> bool:
        """True when ``path``, resolved (symlinks included), lies under a data root (always with ``any_folder``)."""
        if self.any_folder:
            return True
        return self._root_of(Path(os.path.realpath(path)), self.data_roots) is not None

    def readable_file(self, path: str | os.PathLike) -> Path | None:
        """``path`` resolved (``~``, ``..``, symlinks) when this server may show it: it lies under a data
        root, is a regular file and can be read; else None, for every reason alike (a path recorded
        in an imported set is never read outside the roots, and the answer does not tell whether it
        exists). Relative paths are taken relative to the working directory."""
        try:
            real = Path(os.path.realpath(Path(path).expanduser()))
        except (OSError, ValueError):
            return None  # e.g. a NUL byte in the path
        if self._root_of(real, self.data_roots) is None:
            return None
        try:
            ok = real.is_file() and os.access(real, os.R_OK)
        except OSError:
            return None
        return real if ok else None

    def data_folders(self, max_depth: int = 2, max_count: int = 500) -> list[Path]:
        """Folders a user may pick: each root and its subfolders down to ``max_depth`` levels
        (hidden folders skipped; symlinked folders only when they resolve inside a root)."""
        out: list[Path] = []
        seen: set[Path] = set()

        def visit(d: Path, depth: int) -> None:
            if len(out) >= max_count or d in seen:
                return
            seen.add(d)
            out.append(d)
            if depth >= max_depth:
                return
            try:
                subs = sorted((e for e in os.scandir(d) if not e.name.startswith(".") and e.is_dir()),
                              key=lambda e: e.name)
            except OSError:
                return
            for e in subs:
                real = Path(os.path.realpath(e.path))
                if self._root_of(real, self.data_roots) is not None:
                    visit(real, depth + 1)

        for r in self.data_roots:
            if r.is_dir():
                visit(r, 0)
        return out

    def display_name(self, folder: Path) -> str:
        """A short name for a folder under a root: ``<root folder name>/<relative path>``."""
        root = self._root_of(folder, self.data_roots)
        if root is None:
            return str(folder)
        rel = folder.relative_to(root).as_posix()
        return root.name if rel == "." else f"{root.name}/{rel}"

    # ---- models ----------------------------------------------------------------------------------
    def check_backbone_name(self, name: str, registered: frozenset[str] | set[str] = frozenset()) -> str:
        """The backbone name a browser user may load, with a checkpoint path made absolute.

        Args:
            name: registry name, ``timm/<arch>@<file>``, ``open_clip/<arch>@<file>`` or a hub name.
            registered: the built-in names (always allowed).

        Raises:
            PolicyError: a checkpoint outside the weights folders (same message whether or not it
                exists), a file that is not a checkpoint, or a hub / random model not allowed here.
        """
        name = name.strip()
        try:
            parsed = BackboneName.parse(name, registered)
        except UnknownBackboneError as e:
            raise PolicyError(f"Unknown backbone {name!r}: use a built-in name, timm/<arch>@<file> or "
                              "open_clip/<arch>@<file>.") from e
        if parsed.is_builtin:
            return name
        if parsed.file is not None:
            return str(parsed.with_file(str(self.resolve_checkpoint(parsed.file))))
        if not self.allow_any_model:
            raise PolicyError(f"{name}: this server loads only its built-in backbones and checkpoint files from its "
                              f"weights folders (the server's {ENV_ALLOW_ANY_MODEL}=1 allows hub and random-init models).")
        return name

    def resolve_checkpoint(self, text: str) -> Path:
        """A checkpoint file under a weights folder, resolved (relative names: in each folder in turn).

        Raises:
            PolicyError: outside the weights folders or missing (one message for both), or not a
                checkpoint file.
        """
        p = Path(text.strip()).expanduser()
        candidates = [p] if p.is_absolute() else [d / p for d in self.weights_dirs]
        for c in candidates:
            real = Path(os.path.realpath(c))
            if self._root_of(real, self.weights_dirs) is not None and real.is_file():
                check_checkpoint_file(real)
                return real
        raise PolicyError(f"{text.strip()} is not a checkpoint file in this server's weights folders "
                          f"(the server's {ENV_WEIGHTS_DIRS} sets them).")

    @staticmethod
    def _root_of(real: Path, roots: tuple[Path, ...]) -> Path | None:
        for r in roots:
            if real == r or real.is_relative_to(r):
                return r
        return None


# ---- checks shared with the CLI --------------------------------------------------------------------
_CHECKPOINT_KINDS = "safetensors, a torch.save zip archive or a pickled state dict (.pth / .pt / .bin)"


def check_checkpoint_file(path: str | os.PathLike) -> str:
    """The kind of checkpoint file ``path`` is, from its first bytes (nothing is unpickled).

    Returns:
        ``"safetensors"``, ``"torch-zip"`` or ``"pickle"``.

    Raises:
        PolicyError: not a regular file, or none of those formats.
    """
    import stat

    path = Path(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise PolicyError(f"{path.name} is not a regular file; a checkpoint is {_CHECKPOINT_KINDS}.")
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise PolicyError(f"cannot read the checkpoint {path.name} ({e.strerror or e}).") from e
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= min(st.st_size - 8, 100 * 2**20) and head[8:9] == b"{":
            return "safetensors"
    raise PolicyError(f"{path.name} is not a checkpoint file ({_CHECKPOINT_KINDS}).")


def is_loopback(address: str | None) -> bool:
    """True for addresses only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if not address:
        return False  # Streamlit's default: every interface
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _paths(value: str | None) -> list[Path]:
    out = []
    for part in (value or "").split(os.pathsep):
        if part.strip():
            out.append(Path(os.path.realpath(Path(part.strip()).expanduser())))
    return out


def _dedupe(paths: list[Path]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(paths))


def _flag(env: Mapping[str, str], key: str, *, default: bool) -> bool:
    v = env.get(key, "").strip().lower()
    if not v:
        return default
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise PolicyError(f"{key}={env[key]!r}: expected 1 or 0.")


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    v = env.get(key, "").strip()
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n <= 0:
        raise PolicyError(f"{key}={env[key]!r}: expected a positive whole number.")
    return n
