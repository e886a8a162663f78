"""The Discover page's runs, on a worker thread and memoised by (features key, settings): a second visit
with the same settings shows the finished result at once; a run in progress reports its stage and steps
(:class:`Progress`) and can be cancelled between steps (``core.cancel``)."""
from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import Future

import numpy as np
import streamlit as st

from core.discover import discover, evaluate_discovery
from core.discover.api import STAGE_K, STAGE_KMEANS, STAGE_SSK, K
from core.projection.jobs import JobPool
from pages.shared.resources import BoundedMemo

THUMB = 96  # px, the central images of a cluster


class Progress:
    """What a run reports (from its worker thread) and the page reads: ``stage`` among ``stages``, and
    ``done`` of ``total`` steps of it (candidates of the k search, k-means seedings)."""

    def __init__(self, stages: Sequence[str]):
        self.stages = tuple(stages)
        self.stage, self.done, self.total = self.stages[0], 0, 0
        self.t0 = time.time()
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int, stage: str) -> None:
        with self._lock:
            self.stage, self.done, self.total = stage, done, total

    def fraction(self) -> float:
        """Of the whole run: finished stages, plus the share of the current one."""
        with self._lock:
            i = self.stages.index(self.stage) if self.stage in self.stages else 0
            return min(1.0, (i + (self.done / self.total if self.total else 0.0)) / len(self.stages))

    def text(self) -> str:
        unit = "candidates" if self.stage == STAGE_K else "seedings"
        with self._lock:
            i = self.stages.index(self.stage) + 1 if self.stage in self.stages else 1
            steps = f": {self.done} / {self.total} {unit}" if self.total else ""
            return (f"Step {i} of {len(self.stages)}, {self.stage}{steps} · {time.time() - self.t0:.0f} s so far")


@st.cache_resource
def jobs() -> JobPool:
    """One worker per server process for discovery runs (SS-k-means keeps both cores of a small machine busy)."""
    return JobPool(max_workers=1, max_done=16)


@st.cache_resource
def _progress() -> BoundedMemo:
    return BoundedMemo()


def progress(key: Hashable) -> Progress | None:
    """The progress of the run ``key`` (None if it was never started in this process)."""
    return _progress().get(key)


def _start(key: Hashable, fn, stages: Sequence[str], *args, **kwargs) -> Future:
    pool = jobs()
    fut = pool.get(key)
    if fut is not None:  # queued, running or finished: the same run
        return fut
    prog = Progress(stages)
    _progress()[key] = prog
    return pool.submit(key, fn, *args, pass_cancel=True, progress=prog, **kwargs)


def discover_key(fid: str, k: K, seed: int) -> tuple:
    """The identity of a discovery run: the features and the settings."""
    return ("discover", fid, k, seed)


def start_discover(fid: str, X: np.ndarray, labels: np.ndarray, k: K, seed: int) -> Future:
    """``core.discover.discover`` on the worker (or the run already made with these settings)."""
    stages = (STAGE_K, STAGE_SSK) if k == "auto" else (STAGE_SSK,)
    return _start(discover_key(fid, k, seed), discover, stages, X, labels, k, seed=seed)


def evaluate_key(fid: str, hidden: tuple[str, ...], k: K | None, share: float, seed: int) -> tuple:
    return ("evaluate", fid, hidden, k, share, seed)


def start_evaluate(fid: str, X: np.ndarray, y: np.ndarray, hidden: tuple[str, ...], k: K | None, share: float,
                   seed: int) -> Future:
    """``core.discover.evaluate_discovery`` on the worker (or the run already made with these settings)."""
    stages = (STAGE_K, STAGE_SSK, STAGE_KMEANS) if k == "auto" else (STAGE_SSK, STAGE_KMEANS)
    return _start(evaluate_key(fid, hidden, k, share, seed), evaluate_discovery, stages, X, y, list(hidden), k,
                  labelled_share=share, seed=seed)

