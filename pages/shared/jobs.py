"""Long jobs a browser session owns: started with the session as their owner, cancelled from the page,
and released when the session's tab closes.

- :func:`submit` hands a job to a :class:`core.projection.jobs.JobPool` owned by this session (one
  job per key however many sessions ask; it runs while any of them wants it).
- :func:`cancel_button` / :func:`cancel`: this session no longer wants the job. The pool cancels it
  unless another session still waits for it, and the session remembers the key (:func:`cancelled`),
  so the page shows what it has instead of starting the job again, until :func:`resume`.
- :class:`ClosedSessionReleaser`: a daemon thread (one per server process) asks Streamlit's runtime
  every :data:`CHECK_S` seconds whether each owner of an unfinished job is still an active session;
  an owner found inactive at :data:`GRACE` checks in a row (a tab that reconnects meanwhile keeps its
  jobs) is released from every watched pool, which cancels what only it wanted.

A job on the session's own script thread (an extraction with its progress bar, a report card): a
Cancel click or a closed tab stops it through Streamlit itself. A click makes Streamlit start a new
run at once and stop the old one at its next ``st`` call (the progress update after the batch being
written); a closed tab stops it the same way. Such a job runs inside :func:`script_job` and its
page calls :func:`wait_for_previous_run` first, so the new run sees what the old one wrote::

    jobs.wait_for_previous_run(key)
    if jobs.cancelled(key):
        st.info("Cancelled: ...")  # what was kept
        jobs.resume_button(key)
        st.stop()
    with jobs.script_job(key):
        bar = st.progress(0.0)
        jobs.cancel_button(key)
        result = long_job(progress=reporter(bar, ...))
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.projection.jobs import JobPool
from pages.shared.server import log

CHECK_S = 5.0   # seconds between two checks for closed sessions
STOP_WAIT_S = 600.0  # at most this long for an older run to reach its next progress update
GRACE = 2       # checks in a row an owner must be found inactive before its jobs are released
_CANCELLED = "_cancelled_jobs"  # session state: the keys this session cancelled


class ClosedSessionReleaser:
    """Releases the jobs of sessions that are gone.

    Args:
        is_active: ``is_active(owner)``: whether that session is still connected.
        grace: an owner must be found inactive at this many checks in a row before it is released.
    """

    def __init__(self, is_active: Callable[[Hashable], bool], grace: int = GRACE):
        if grace < 1:
            raise ValueError(f"grace must be >= 1, got {grace}")
        self._is_active = is_active
        self._grace = grace
        self._pools: list[JobPool] = []
        self._misses: dict[Hashable, int] = {}  # owner -> inactive checks in a row
        self._lock = threading.Lock()

    def watch(self, pool: JobPool) -> None:
        """Check the owners of ``pool``'s jobs too (idempotent)."""
        with self._lock:
            if not any(p is pool for p in self._pools):
                self._pools.append(pool)

    def check(self) -> dict[Hashable, list[Hashable]]:
        """One round: owner -> the keys of the jobs cancelled because that owner was released (an owner
        released whose jobs other sessions still want maps to an empty list)."""
        with self._lock:
            pools = list(self._pools)
            owners = set().union(*(p.owners() for p in pools))
            released: dict[Hashable, list[Hashable]] = {}
            for owner in owners:
                if self._is_active(owner):
                    self._misses.pop(owner, None)
                    continue
                self._misses[owner] = self._misses.get(owner, 0) + 1
                if self._misses[owner] >= self._grace:
                    del self._misses[owner]
                    released[owner] = [k for p in pools for k in p.release(owner)]
            for owner in [o for o in self._misses if o not in owners]:  # its jobs ended by themselves
                del self._misses[owner]
            return released

    def run(self, interval_s: float = CHECK_S, stop: threading.Event | None = None) -> None:
        """Check every ``interval_s`` seconds until ``stop`` is set (the watcher thread's body)."""
        stop = stop or threading.Event()
        while not stop.wait(interval_s):
            try:
                released = self.check()
            except Exception:  # a failed round must not end the watcher: the next one tries again
                log.exception("checking for closed browser sessions failed")
                continue
            for owner, keys in released.items():
                if keys:
                    log.warning("browser session %s closed: cancelled %d background job(s) only it wanted: %s",
                                owner, len(keys), ", ".join(map(_describe, keys)))


def _describe(key: Hashable) -> str:
    """A job key for the log: its parts, long identities shortened."""
    parts = key if isinstance(key, tuple) else (key,)
    return "(" + ", ".join(p if len(p) <= 40 else p[:37] + "…" for p in map(str, parts)) + ")"


def _is_active_session(session_id: Hashable) -> bool:
    return Runtime.instance().is_active_session(str(session_id))


@st.cache_resource
def _releaser() -> ClosedSessionReleaser:
    """The server process's releaser; its thread starts only under a running server (not in AppTest,
    where there is no runtime and no session ever closes)."""
    releaser = ClosedSessionReleaser(_is_active_session)
    if Runtime.exists():
        threading.Thread(target=releaser.run, name="backbone-lens-session-release", daemon=True).start()
    return releaser


def session_id() -> str | None:
    """This browser session's id (None outside a script run)."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return None if ctx is None else ctx.session_id


def submit(pool: JobPool, key: Hashable, fn: Callable[..., Any], *args: Any, pass_cancel: bool = False,
           **kwargs: Any) -> Future:
    """``pool.submit(key, fn, *args, **kwargs)`` owned by this session: the job is cancelled when every
    session that asked for it has cancelled it or closed its tab. ``pass_cancel``: see
    :meth:`JobPool.submit` (a job that checks its ``cancel`` event really stops)."""
    _releaser().watch(pool)
    return pool.submit(key, fn, *args, owner=session_id(), pass_cancel=pass_cancel, **kwargs)


def cancel(key: Hashable, pool: JobPool | None = None) -> None:
    """This session no longer wants the job ``key``: remembered (see :func:`cancelled`), and with
    ``pool``, the job is cancelled there unless another session still wants it."""
    st.session_state.setdefault(_CANCELLED, set()).add(key)
    if pool is not None:
        pool.release(session_id(), keys=[key])


def cancelled(key: Hashable) -> bool:
    """Whether this session cancelled ``key`` (and has not resumed it)."""
    return key in st.session_state.get(_CANCELLED, ())


def resume(key: Hashable) -> None:
    """Forget that this session cancelled ``key`` (the page starts it again on its next run)."""
    st.session_state.get(_CANCELLED, set()).discard(key)


def widget_key(prefix: str, key: Hashable) -> str:
    """A widget key for job ``key`` (stable across runs, unique per job)."""
    return f"{prefix}_{hashlib.sha1(repr(key).encode()).hexdigest()[:16]}"


def cancel_button(key: Hashable, pool: JobPool | None = None, label: str = "Cancel", help: str | None = None) -> None:
    """A button that calls :func:`cancel` (``key``, ``pool``) when clicked."""
    st.button(label, key=widget_key("_cancel", key), on_click=cancel, args=(key, pool), icon=":material/cancel:",
              help=help)


def resume_button(key: Hashable, label: str = "Resume", help: str | None = None) -> None:
    """A button that calls :func:`resume` (``key``) when clicked."""
    st.button(label, key=widget_key("_resume", key), on_click=resume, args=(key,), icon=":material/play_arrow:",
              help=help)


# ---- jobs on the script thread --------------------------------------------------------------------
@st.cache_resource
def _script_runs() -> dict[tuple, threading.Event]:
    """(session id, job key) -> an event set when the script run doing that job has left it."""
    return {}


@contextmanager
def script_job(key: Hashable) -> Iterator[None]:
    """Mark ``key`` as being done by this session's current script run until the block ends."""
    runs, rk, ended = _script_runs(), (session_id(), key), threading.Event()
    runs[rk] = ended
    try:
        yield
    finally:
        ended.set()
        if runs.get(rk) is ended:
            del runs[rk]


def wait_for_previous_run(key: Hashable, text: str = "Stopping after the batch being computed…") -> None:
    """Wait (with a spinner saying ``text``) until an older run of this session has left the job
    ``key``: what it wrote is then counted (after Cancel) or read back (after any other click)
    instead of being computed twice."""
    ended = _script_runs().get((session_id(), key))
    if ended is not None and not ended.is_set():
        with st.spinner(text):
            ended.wait(timeout=STOP_WAIT_S)
