"""This server's rules (core.io.policy) as the pages apply them, and the one-line error convention:
the browser is shown one line, the details go to the server log."""
from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

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
