"""A run's life on the page: the button that starts it, its progress while it runs on the worker (with a
Cancel button), and its failure as one line."""
from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import streamlit as st

from core.errors import Cancelled
from pages.discover import cache
from pages.shared.server import log, one_line

WAIT_S = 3.0  # wait this long for a run before showing its progress (small sets finish well within it)


def run_or_result(key: Hashable, start: Callable[[], Future], label: str, *, widget_key: str, help: str) -> Any | None:
    """The result of the run ``key``: at once when it already ran with these settings; else a button that
    starts it. While it runs, its progress is shown and the page stops there (it reruns by itself when the
    run ends). Bad input (``ValueError`` from core) is one line; a cancelled run shows the button again."""
    fut = cache.jobs().get(key)
    if fut is None:
        if not st.button(label, key=widget_key, type="primary", icon=":material/play_arrow:", help=help):
            return None
        fut = start()
    try:
        return fut.result(timeout=WAIT_S)
    except FutureTimeout:
        _running(key, fut)
        st.stop()
    except Cancelled:
        st.info("The run was cancelled.")
    except ValueError as e:  # core's one-line message for bad input (no labelled class, k too large ...)
        st.error(one_line(e))
    except Exception as e:  # a failure of the run itself: one line here, the trace in the log
        log.error("discovery run %r failed", key, exc_info=e)
        st.error(f"The run failed: {type(e).__name__}: {one_line(e)}")
    return None


@st.fragment(run_every=1.0)
def _running(key: Hashable, fut: Future) -> None:
    if fut.done():
        st.rerun()  # the whole page, now with the result
    prog = cache.progress(key)
    if prog is not None:
        st.progress(prog.fraction(), text=prog.text())
    if st.button("Cancel", key="disc_cancel", icon=":material/stop:",
                 help="Stops at the next step (a k candidate or a k-means seeding); nothing is kept."):
        cache.jobs().cancel(key)
        st.rerun()
