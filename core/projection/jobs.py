"""Slow, pure computations (UMAP / t-SNE fits) on a worker thread, keyed and memoised, so a page
never blocks on them: it asks for a key, gets a ``Future``, shows something else while it runs and
picks the result up on a later run. A second request for the same key returns the same future
(running or done), which is what makes a second visit instant.

Nothing here imports Streamlit; a page keeps one :class:`JobPool` per server process
(``st.cache_resource``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["JobPool"]


class JobPool:
    """Keyed background jobs with a bounded memo of finished results.

    Args:
        max_workers: worker threads (1 keeps a 2-core machine responsive and numba single-threaded).
        max_done: finished jobs kept; the least recently used finished ones are dropped beyond it
            (running jobs are never dropped).
    """

    def __init__(self, max_workers: int = 1, max_done: int = 32):
        if max_workers < 1 or max_done < 1:
            raise ValueError(f"max_workers and max_done must be >= 1, got {max_workers}, {max_done}")
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="backbone-lens-job")
        self._jobs: OrderedDict[Hashable, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._max_done = max_done

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """The future for ``key``: the existing one (running or finished), else ``fn(*args, **kwargs)``
        started on the worker. A job that raised stays failed until :meth:`forget` is called, so its
        error can be shown instead of being retried on every rerun."""
        with self._lock:
            fut = self._jobs.get(key)
            if fut is None:
                fut = self._pool.submit(fn, *args, **kwargs)
                self._jobs[key] = fut
            self._jobs.move_to_end(key)
            self._evict()
            return fut

    def get(self, key: Hashable) -> Future | None:
        """The future for ``key`` if one was submitted and not yet dropped."""
        with self._lock:
            return self._jobs.get(key)

    def forget(self, key: Hashable) -> None:
        """Drop ``key`` (e.g. to retry a failed job); a running job finishes but is not kept."""
        with self._lock:
            self._jobs.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _evict(self) -> None:
        done = [k for k, f in self._jobs.items() if f.done()]  # oldest first
        for k in done[: max(0, len(done) - self._max_done)]:
            del self._jobs[k]
