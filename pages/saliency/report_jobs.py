"""The report card (core.explain.report) as a background job: one worker per server process, owned by the
browser sessions that asked for it (:mod:`pages.shared.jobs`: Cancel, and a closed tab releases it), with the
progress it reports kept for the page's bar. A session can leave the page while its card runs and find the
card (or its progress) when it comes back; the scores of every picture are cached in the feature store as
they are made, so a cancelled or larger card computes only the pictures it has not scored."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace

import streamlit as st

from core.explain.report import ReportCard, ReportSettings, saliency_report
from core.io.images import ImageRecord
from core.models.base import Backbone
from core.projection.jobs import JobPool
from pages.shared import jobs
from pages.shared.resources import get_store

DONE_KEPT = 8  # finished cards the pool keeps (each a few kB of scores)


@dataclass(frozen=True)
class CardKey:
    """What a card is made of: the backbone's weights, the images, the input size and the sample size."""

    backbone: str
    weights_id: str
    dataset_key: str
    size: int
    limit: int

    def settings(self) -> ReportSettings:
        return ReportSettings(size=self.size, limit=self.limit)


@dataclass(frozen=True)
class Progress:
    """The last ``progress(done, total, message)`` of a running card, when it started, and how many
    pictures the cache held when it began (they take no time, so the ETA leaves them out)."""

    done: int
    total: int
    message: str
    started: float
    cached: int

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the rate of the pictures scored so far (None before the first one)."""
        scored = self.done - self.cached
        if scored <= 0:
            return None
        return (now - self.started) / scored * (self.total - self.done)


class _Progresses:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: dict[CardKey, Progress] = {}

    def reporter(self, key: CardKey) -> Callable[[int, int, str], None]:
        """A fresh ``progress`` for a new job of ``key`` (its first report counts the pictures read back)."""
        with self.lock:
            self.state.pop(key, None)

        def update(done: int, total: int, message: str) -> None:
            with self.lock:
                old = self.state.get(key)
                self.state[key] = (Progress(done, total, message, time.time(), done) if old is None
                                   else replace(old, done=done, total=total, message=message))

        return update

    def get(self, key: CardKey) -> Progress | None:
        with self.lock:
            return self.state.get(key)


@st.cache_resource
def _pool() -> tuple[JobPool, _Progresses]:
    return JobPool(max_workers=1, max_done=DONE_KEPT), _Progresses()


def pool() -> JobPool:
    return _pool()[0]


def progress(key: CardKey) -> Progress | None:
    return _pool()[1].get(key)


def _run(b: Backbone, records: Sequence[ImageRecord], key: CardKey, report: Callable, cancel) -> ReportCard:
    """On the worker thread (no Streamlit call here)."""
    return saliency_report(b, records, settings=key.settings(), store=get_store(), progress=report, cancel=cancel)


def start(b: Backbone, records: Sequence[ImageRecord], key: CardKey) -> Future:
    """Queue the card (or join the running or finished job of the same key), owned by this session."""
    p, progresses = _pool()
    fut = p.get(key)
    if fut is not None and not fut.done():
        return jobs.submit(p, key, _run)  # already running: this session becomes one more owner
    return jobs.submit(p, key, _run, b, list(records), key, progresses.reporter(key), pass_cancel=True)


def job(key: CardKey) -> Future | None:
    """The job of this key, if one was started and is still known."""
    return pool().get(key)
