"""The concept atlas (core.concepts) as a background job, shared by the Concepts page and the Saliency page's
concept-map tab: one worker per server process (at scale an atlas takes minutes, so no page blocks on it),
a progress bar that follows its four stages, and a bounded memo of the atlases found or made.

An atlas is looked up without computing anything (:func:`find`: the memo, a finished job, then the cache
folder through :func:`core.concepts.atlas.cached_atlas`); :func:`obtain` returns it, or starts it (or offers a
button that does) and draws its progress until it is done, then reruns the page."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass

import streamlit as st
from PIL import Image

from core.concepts.atlas import DEFAULT_K, ConceptAtlas, cached_atlas, concept_atlas, estimate_seconds
from core.errors import Cancelled
from core.io.images import ImageRecord
from core.io.store import FeatureStore
from core.models.base import Backbone
from core.projection.jobs import JobPool
from pages.shared.resources import get_store
from pages.shared.server import one_line, policy

STAGES = {"features": "patch features", "fit": "fitting the concepts", "encode": "encoding every image",
          "scores": "class table and fidelity"}  # core's progress stages, in order
WAIT_S = 0.5  # a job that finishes this fast (an atlas read back from the cache) is shown without a progress bar
MEMO = 4      # atlases kept in memory (each holds its [N, D] pooled features; the patch maps stay on disk)


@dataclass(frozen=True)
class AtlasSettings:
    """What an atlas is made of, as a key: the backbone's weights, the images and the settings."""

    weights_id: str
    dataset_key: str
    k: int = DEFAULT_K
    method: str = "auto"
    seed: int = 0
    layer: int | None = None  # None: the block the embedding comes from
    size: int | None = None   # None: the backbone's input size

    def kwargs(self) -> dict:
        """The keyword arguments of :func:`core.concepts.atlas.concept_atlas`."""
        d = asdict(self)
        del d["weights_id"], d["dataset_key"]
        return d


class _Progress:
    """The last ``(stage, done, total)`` each running job reported, and when it started (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: dict[AtlasSettings, tuple[str, int, int, float]] = {}

    def report(self, key: AtlasSettings) -> Callable[[str, int, int], None]:
        t0 = time.time()

        def update(stage: str, done: int, total: int) -> None:
            with self.lock:
                self.state[key] = (stage, done, total, t0)

        return update

    def get(self, key: AtlasSettings) -> tuple[str, int, int, float] | None:
        with self.lock:
            return self.state.get(key)


class _Memo(OrderedDict):
    def put(self, key: AtlasSettings, atlas: ConceptAtlas) -> ConceptAtlas:
        self[key] = atlas
        self.move_to_end(key)
        while len(self) > MEMO:
            self.popitem(last=False)
        return atlas


@st.cache_resource
def _jobs() -> tuple[JobPool, _Progress, _Memo]:
    return JobPool(max_workers=1, max_done=MEMO), _Progress(), _Memo()


def _build(b: Backbone, records: Sequence[ImageRecord], s: AtlasSettings, store: FeatureStore, progress: Callable,
           cancel) -> ConceptAtlas:
    """On the worker thread (no Streamlit call here)."""
    return concept_atlas(b, records, store=store, progress=progress, cancel=cancel, **s.kwargs())


def find(b: Backbone, records: Sequence[ImageRecord], s: AtlasSettings) -> ConceptAtlas | None:
    """The atlas of these settings if it is made (in memory, a finished job, or the cache folder); computes nothing."""
    pool, _, memo = _jobs()
    if s in memo:
        memo.move_to_end(s)
        return memo[s]
    fut = pool.get(s)
    if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
        return memo.put(s, fut.result())
    found = cached_atlas(b, records, **s.kwargs())
    return memo.put(s, found) if found is not None else None


def start(b: Backbone, records: Sequence[ImageRecord], s: AtlasSettings) -> Future:
    """Queue the atlas's computation on the worker (the running or finished job of the same settings if any)."""
    pool, progress, _ = _jobs()
    return pool.submit(s, _build, b, list(records), s, get_store(), progress.report(s), pass_cancel=True)


def job(s: AtlasSettings) -> Future | None:
    """The job of these settings, if one was started and is still known."""
    return _jobs()[0].get(s)


def cancel(s: AtlasSettings) -> None:
    """Stop the job of these settings (at its next check; the features it extracted stay cached)."""
    _jobs()[0].cancel(s)


def estimate(b: Backbone, records: Sequence[ImageRecord], s: AtlasSettings) -> float:
    """A rough duration in seconds (forward passes of the images not cached yet, the fit, the encoding)."""
    return estimate_seconds(b, records, layer=s.layer, size=s.size, store=get_store())


def obtain(b: Backbone, records: Sequence[ImageRecord], s: AtlasSettings, *, what: str, key: str,
           auto: bool) -> ConceptAtlas | None:
    """The atlas if it is made; else its job's progress, or (``auto`` False, or this session cancelled it) a button
    "Compute the concept atlas (about N s)" that starts it. None until the atlas is there.

    While the job runs: a progress bar of the four stages (redrawn every second; the page reruns when the job
    ends) with a Cancel button. A failed job: one line and a Retry button.

    Args:
        what: names the atlas in the messages (e.g. "mobilenetv2, k = 12").
        key: widget key prefix.
        auto: start the job without asking (the Concepts page; not a tab that only shows a picture's map).
    """
    found = find(b, records, s)
    if found is not None:
        return found
    cancelled: set = st.session_state.setdefault("_atlas_cancelled", set())
    fut = job(s)
    if fut is None:
        if not auto or s in cancelled:
            if st.button(f"Compute the concept atlas (about {estimate(b, records, s):.0f} s)", key=f"{key}_compute",
                         icon=":material/play_arrow:", help=f"{what}; on a machine busy with other work it takes longer. "
                         "It runs in the background and is cached: the next visit reads it back."):
                cancelled.discard(s)
                start(b, records, s)
                st.rerun()
            return None
        fut = start(b, records, s)
    return _follow(fut, s, what, key, cancelled)


def _follow(fut: Future, s: AtlasSettings, what: str, key: str, cancelled: set) -> ConceptAtlas | None:
    pool, progress, memo = _jobs()
    try:
        return memo.put(s, fut.result(timeout=WAIT_S))
    except TimeoutError:
        pass
    except Cancelled:
        st.rerun()  # dropped from the pool: the next run offers to compute it again
    except Exception as e:  # the job raised (too few patches for k, NMF of signed tokens, ...): say so, offer a retry
        st.error(f"The concept atlas ({what}) could not be made: {one_line(e)}")
        if st.button("Retry", key=f"{key}_retry"):
            pool.forget(s)
            st.rerun()
        return None

    @st.fragment(run_every=1.0)
    def _bar() -> None:
        if fut.done():
            st.rerun()  # the whole page, now with the atlas
        now = progress.get(s)
        stage, done, total, t0 = now if now is not None else ("features", 0, 1, time.time())
        n = list(STAGES).index(stage) + 1
        count = f": {done:,} / {total:,} images" if stage in ("features", "encode") else ""
        st.progress(min(done / max(total, 1), 1.0),
                    text=f"Concept atlas ({what}), step {n} of {len(STAGES)}, {STAGES[stage]}{count} "
                         f"({time.time() - t0:.0f} s so far)")
        if st.button("Cancel", key=f"{key}_cancel", icon=":material/stop:"):
            cancelled.add(s)
            pool.cancel(s)
            st.rerun(scope="app")

    _bar()
    return None


def picture_loader(atlas: ConceptAtlas, records: Sequence[ImageRecord]) -> Callable[[int], Image.Image]:
    """``load(i)``: picture ``i`` of the atlas, decoded from the dataset's record of the same name (uploads have no
    path on disk), within the server's pixel limit."""
    by_name = {r.name: r for r in records}
    limit = policy().limits.max_pixels

    def load(i: int) -> Image.Image:
        return by_name[atlas.image_names[i]].decode(limit).convert("RGB")

    return load
