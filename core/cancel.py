"""Cooperative cancellation of long jobs: what a caller passes, and how a job asks.

A job (feature extraction, placing the rest of a large map, a background fit that checks) takes
``cancel``: a ``threading.Event`` or any callable returning True to stop, e.g. a page's "the user
pressed Cancel or closed the tab". The job asks :func:`should_stop` at safe points (between batches)
and raises :class:`~core.errors.Cancelled` there, keeping what it has already written.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from core.errors import Cancelled

CancelLike = Callable[[], bool] | threading.Event

__all__ = ["CancelLike", "Cancelled", "raise_if_cancelled", "should_stop"]


def should_stop(cancel: CancelLike | None) -> bool:
    """Whether ``cancel`` (None: never) says stop."""
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


def raise_if_cancelled(cancel: CancelLike | None, what: str) -> None:
    """Raise :class:`Cancelled` with ``what`` (e.g. "extraction cancelled after 32 of 48 images") when
    ``cancel`` says stop."""
    if should_stop(cancel):
        raise Cancelled(what)
