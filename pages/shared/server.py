"""This server's rules (core.io.policy) as the pages apply them, and the one-line error convention:
the browser is shown one line, the details go to the server log."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from core.errors import CacheError
from core.io.policy import PolicyError, ServerPolicy

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_STAMPS = ROOT / "sample_data" / "stamps"
log = logging.getLogger("backbone_lens")


def policy() -> ServerPolicy:
    """This server's rules (data roots, weights folders, limits), from the environment and the
    address it listens on; a setting that cannot be parsed stops the page with one line."""
    try:
        return ServerPolicy.from_env(server_address=st.get_option("server.address"))
    except PolicyError as e:
        st.error(f"Server setting: {e}")
        st.stop()


def one_line(e: BaseException) -> str:
    """An exception's message on one line (what the browser is shown; details go to the log)."""
    return " ".join(str(e).split()) or type(e).__name__


@contextmanager
def stop_on_cache_error() -> Iterator[None]:
    """Run the block; a cache file or folder that cannot be used or healed here
    (:class:`core.errors.CacheError`: a read-only cache folder, a database locked by another process
    past the timeout, a full disk) stops the page with its one line, which says what to do; the
    details go to the server log."""
    try:
        yield
    except CacheError as e:
        log.warning("the cache cannot be used: %s", one_line(e), exc_info=True)
        st.error(one_line(e), icon=":material/database:")
        st.stop()
