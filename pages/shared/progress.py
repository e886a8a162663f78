"""Progress callbacks for core's long work, drawn as a Streamlit progress bar."""
from __future__ import annotations

import time
from collections.abc import Callable


def reporter(bar, text: Callable[..., str]) -> Callable[..., None]:
    """A ``progress(done, total, *rest)`` callback for core that moves ``bar`` (an ``st.progress``)
    with the caption ``text(done, total, *rest)``."""

    def update(done: int, total: int, *rest) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=text(done, total, *rest))

    return update


def eta_reporter(bar, text: Callable[..., str]) -> Callable[..., None]:
    """As :func:`reporter`, with ``", about N s left"`` appended once a step is done (the rate of the steps
    so far; ``text(done, total, *rest)`` names the step now running)."""
    start = time.perf_counter()

    def update(done: int, total: int, *rest) -> None:
        elapsed = time.perf_counter() - start
        eta = f", about {elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
        bar.progress(min(done / max(total, 1), 1.0), text=text(done, total, *rest) + eta)

    return update
