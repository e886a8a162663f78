"""Where Backbone Lens keeps its cache (features, converted weights, projections)."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "BACKBONE_LENS_CACHE"


def cache_dir(override: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """The cache root: ``override``, else ``$BACKBONE_LENS_CACHE``, else
    ``$XDG_CACHE_HOME/backbone-lens``, else ``~/.cache/backbone-lens``. Created if missing (unless
    ``create=False``)."""
    if override:
        root = Path(override)
    elif os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "backbone-lens"
    root = root.expanduser()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root
