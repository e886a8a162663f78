"""Progress callbacks for core's long work, drawn as a Streamlit progress bar."""
from __future__ import annotations

from collections.abc import Callable


def reporter(bar, text: Callable[..., str]) -> Callable[..., None]:
    """A ``progress(done, total, *rest)`` callback for core that moves ``bar`` (an ``st.progress``)
    with the caption ``text(done, total, *rest)``."""

    def update(done: int, total: int, *rest) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=text(done, total, *rest))

    return update
