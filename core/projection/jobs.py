"""Slow, pure computations (UMAP / t-SNE fits) on worker threads, keyed and memoised, so a page
never blocks on them: it asks for a key, gets a ``Future``, shows something else while it runs and
picks the result up on a later run. A second request for the same key returns the same future
(running or done), which is what makes a second visit instant.

Cancelling (:meth:`JobPool.cancel`, :meth:`JobPool.release`): a job that has not started is dropped
and never runs. A running job cannot be stopped from outside (a thread cannot be killed, and a UMAP
or t-SNE fit has no way to be interrupted mid-call), so it is *abandoned*: its future fails at once
with :class:`~core.errors.Cancelled`, its slot goes to the next job, it leaves the memo, and its thread
runs on to the end of the call, its result discarded; a new request for the same key while that thread
still runs takes the running job back (with a new future) instead of starting a second copy of the
same fit beside it (a user who cancels and then asks again). A job
submitted with ``pass_cancel=True`` receives a ``threading.Event`` as ``cancel=`` and stops at its
next check (e.g. :func:`core.projection.sampled.project_sampled` between blocks), which also frees the
CPU. Jobs can be *owned* (e.g. by a browser session): :meth:`release` drops an owner and cancels the
jobs nobody else wants, which is how a closed tab stops its own work.

Nothing here imports Streamlit; a page keeps one :class:`JobPool` per server process
(``st.cache_resource``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from core.errors import Cancelled

__all__ = ["JobPool"]


@dataclass(eq=False)
class _Job:
    key: Hashable
    call: Callable[[], Any]
    future: Future = field(default_factory=Future)
    event: threading.Event = field(default_factory=threading.Event)  # set on cancel (cooperative jobs read it)
    owners: set[Hashable] = field(default_factory=set)
    pinned: bool = False  # requested at least once without an owner: never released by owners
    started: bool = False
    finished: bool = False  # its thread returned (the future is settled just after, outside the lock)
    abandoned: bool = False  # cancelled while running: its thread's outcome is discarded


class JobPool:
    """Keyed background jobs with a bounded memo of finished results.

    Args:
        max_workers: jobs running at once (1 keeps a 2-core machine responsive and numba
            single-threaded); abandoned jobs do not count.
        max_done: finished jobs kept; the least recently used finished ones are dropped beyond it
            (running jobs are never dropped).
    """

    def __init__(self, max_workers: int = 1, max_done: int = 32):
        if max_workers < 1 or max_done < 1:
            raise ValueError(f"max_workers and max_done must be >= 1, got {max_workers}, {max_done}")
        self._max_workers = max_workers
        self._max_done = max_done
        self._jobs: OrderedDict[Hashable, _Job] = OrderedDict()
        self._queue: deque[_Job] = deque()
        self._running = 0  # started, not finished, not abandoned
        self._abandoned: dict[Hashable, _Job] = {}  # cancelled while running, thread not yet returned
        self._lock = threading.Lock()

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any, owner: Hashable | None = None,
               pass_cancel: bool = False, **kwargs: Any) -> Future:
        """The future for ``key``: the existing one (queued, running or finished), else
        ``fn(*args, **kwargs)`` queued for a worker. A job that raised stays failed until
        :meth:`forget` is called, so its error can be shown instead of being retried on every rerun.

        Args:
            owner: who wants it (e.g. a session id), for :meth:`release`; None: anyone (never released).
            pass_cancel: call ``fn(*args, cancel=event, **kwargs)`` with an event set when the job is
                cancelled (a cooperative job stops at its next check).
        """
        with self._lock:
            job = self._jobs.get(key) or self._take_back(key)
            if job is None:
                job = _Job(key, lambda: None)
                job.call = (lambda: fn(*args, cancel=job.event, **kwargs)) if pass_cancel else (lambda: fn(*args, **kwargs))
                self._jobs[key] = job
                self._queue.append(job)
            if owner is None:
                job.pinned = True
            else:
                job.owners.add(owner)
            self._jobs.move_to_end(key)
            self._start_ready()
            self._evict()
            return job.future

    def get(self, key: Hashable) -> Future | None:
        """The future for ``key`` if one was submitted and not yet dropped."""
        with self._lock:
            job = self._jobs.get(key)
            return None if job is None else job.future

    def forget(self, key: Hashable) -> None:
        """Drop ``key`` (e.g. to retry a failed job); a running job finishes but is not kept."""
        with self._lock:
            self._jobs.pop(key, None)

    def cancel(self, key: Hashable) -> bool:
        """Cancel the job of ``key``: one not started never runs; a running one is abandoned (see the
        module docstring). Its future raises :class:`~core.errors.Cancelled`. Returns False when there
        was no unfinished job for ``key``."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.finished or job.future.done():
                return False
            future, error = job.future, self._cancel(job)  # the future now: a later request may take the job back
            self._start_ready()
        future.set_exception(error)  # outside the lock: done-callbacks run here
        return True

    def release(self, owner: Hashable, keys: Iterable[Hashable] | None = None) -> list[Hashable]:
        """``owner`` no longer wants its jobs (e.g. its browser tab closed), or only those of ``keys``
        (e.g. it pressed Cancel): each unfinished job that no other owner wants is cancelled. Returns
        their keys."""
        only = None if keys is None else set(keys)
        settle = []
        with self._lock:
            for job in list(self._jobs.values()):
                if owner not in job.owners or (only is not None and job.key not in only):
                    continue
                job.owners.discard(owner)
                if not job.owners and not job.pinned and not job.finished and not job.future.done():
                    settle.append((job.key, job.future, self._cancel(job)))
            self._start_ready()
        for _, future, error in settle:
            future.set_exception(error)
        return [key for key, _, _ in settle]

    def owners(self) -> set[Hashable]:
        """Every owner of an unfinished job (what a watcher checks for closed sessions)."""
        with self._lock:
            return {o for j in self._jobs.values() if not j.future.done() for o in j.owners}

    @property
    def running(self) -> int:
        """Jobs running now, abandoned ones not counted."""
        with self._lock:
            return self._running

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    # ---- internals (called with the lock held) --------------------------------------------------
    def _take_back(self, key: Hashable) -> _Job | None:
        """The abandoned job of ``key`` whose thread still runs, running again under a new future (its
        cancel event cleared: a cooperative job that has not yet looked goes on), or None."""
        job = self._abandoned.pop(key, None)
        if job is None:
            return None
        job.abandoned = False
        job.event.clear()
        job.owners, job.pinned = set(), False
        job.future = Future()
        job.future.set_running_or_notify_cancel()
        self._running += 1  # may pass max_workers for a while: it runs anyway, and nothing else starts meanwhile
        self._jobs[key] = job
        return job

    def _cancel(self, job: _Job) -> Cancelled:
        """Take ``job`` out (queue, memo, running count); returns the error its future is to be given."""
        job.event.set()
        self._jobs.pop(job.key, None)
        if not job.started:
            self._queue.remove(job)
            return Cancelled(f"job {job.key!r} cancelled before it started")
        job.abandoned = True
        self._abandoned[job.key] = job
        self._running -= 1
        return Cancelled(f"job {job.key!r} cancelled while running; its result will be discarded")

    def _start_ready(self) -> None:
        while self._queue and self._running < self._max_workers:
            job = self._queue.popleft()
            job.started = True
            job.future.set_running_or_notify_cancel()
            self._running += 1
            threading.Thread(target=self._work, args=(job,), name="backbone-lens-job", daemon=True).start()

    def _work(self, job: _Job) -> None:
        try:
            result, error = job.call(), None
        except BaseException as e:  # the job's own failure is its result (shown by the page)
            result, error = None, e
        with self._lock:
            job.finished = True
            if job.abandoned:
                if self._abandoned.get(job.key) is job:
                    del self._abandoned[job.key]
                return  # its future says Cancelled; its slot was given away
            self._running -= 1
            self._start_ready()
        if error is None:  # outside the lock: done-callbacks run here
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
        with self._lock:
            self._evict()

    def _evict(self) -> None:
        done = [k for k, j in self._jobs.items() if j.future.done()]  # oldest first
        for k in done[: max(0, len(done) - self._max_done)]:
            del self._jobs[k]
