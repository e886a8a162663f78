"""The point-map component (``st.components.v2``): a level-of-detail canvas scatter for up to a few
million points, with hover thumbnails and click-to-open. The drawing lives in ``pointmap.js``.

Python sends the coordinates once per map as binary (8 bytes per point plus 2 for the class), then
only small JSON: the thumbnails the map asks for, the hovered point's picture, the opened point and
its neighbours, the selected region. The map reports back through its state (``loaded``: the map id it
holds, ``hover``: the point under the mouse, ``view``: the points in view that need a thumbnail) and
two triggers (``click``: the point clicked; ``select``: ``{kind, poly}`` a box or lasso drawn, its
corners in map coordinates, or ``{clear: true}``).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

_HERE = Path(__file__).parent
_CSS = """
.pm-wrap { position: relative; width: 100%; border: 1px solid #ddd; border-radius: 6px; overflow: hidden;
           background: #fff; user-select: none; }
.pm-canvas { position: absolute; inset: 0; cursor: crosshair; }
.pm-status { position: absolute; left: 6px; bottom: 4px; font: 12px sans-serif; color: #444;
             background: rgba(255,255,255,.85); padding: 1px 6px; border-radius: 4px; pointer-events: none; }
.pm-legend { position: absolute; right: 6px; top: 6px; max-width: 40%; max-height: 60%; overflow: auto;
             font: 12px sans-serif; background: rgba(255,255,255,.9); padding: 4px 6px; border-radius: 4px; }
.pm-key { display: inline-block; margin: 0 8px 2px 0; white-space: nowrap; }
.pm-key i { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 4px; }
.pm-tools { position: absolute; left: 6px; top: 6px; display: flex; gap: 4px; }
.pm-tools button { font: 12px sans-serif; padding: 2px 8px; cursor: pointer; background: #fff; border: 1px solid #bbb;
                   border-radius: 4px; }
.pm-tools button.pm-on { background: #1f77b4; border-color: #1f77b4; color: #fff; }
.pm-tools .pm-reset { margin-left: 6px; }
.pm-tip { position: absolute; display: none; pointer-events: none; background: #fff; border: 1px solid #999;
          border-radius: 4px; padding: 4px; font: 12px sans-serif; max-width: 170px; word-break: break-all; box-shadow: 0 2px 6px #0003; }
.pm-tip img { display: block; width: 96px; height: 96px; object-fit: contain; margin-bottom: 3px; }
.pm-noimg { width: 96px; height: 96px; background: #eee; color: #777; display: flex; align-items: center;
            justify-content: center; text-align: center; margin-bottom: 3px; }
"""
_component = st.components.v2.component("backbone_lens.pointmap", js=(_HERE / "pointmap.js").read_text(), css=_CSS)


def pack(meta: dict[str, Any], coords: np.ndarray | None = None, codes: np.ndarray | None = None) -> bytes:
    """The component's payload: ``[u32 json length][json][pad to 4][f32 x,y * N][u16 code * N]``.

    Args:
        meta: JSON-serialisable fields (``has_coords`` is set here).
        coords: ``[N, 2]`` map coordinates, or None to send only ``meta``.
        codes: ``[N]`` class index per point (< 65,536 classes).
    """
    meta = {**meta, "has_coords": coords is not None}
    js = json.dumps(meta).encode()
    head = struct.pack("<I", len(js)) + js
    if coords is None:
        return head
    if codes is None or len(codes) != len(coords) or coords.shape[1:] != (2,):
        raise ValueError(f"coords must be [N, 2] with one code per point, got {coords.shape} and "
                         f"{None if codes is None else len(codes)} codes")
    if len(codes) and int(codes.max()) > 65_535:
        raise ValueError("the point map colours at most 65,536 classes")
    pad = b"\0" * ((4 - len(head) % 4) % 4)
    return b"".join([head, pad, np.ascontiguousarray(coords, dtype="<f4").tobytes(),
                     np.ascontiguousarray(codes, dtype="<u2").tobytes()])


def map_state(key: str) -> dict[str, Any]:
    """The map's last reported state (``loaded``, ``hover``, ``view``) and this run's triggers (``click``,
    ``select``), read before the map is drawn in this run, so the answer goes out with it (no second rerun)."""
    raw = st.session_state.get(key)
    try:
        return {k: raw[k] for k in ("loaded", "hover", "view", "click", "select") if k in raw} if raw is not None else {}
    except (TypeError, KeyError):
        return {}


def point_map(payload: bytes, *, key: str, height: int, on_click=None) -> Any:
    """Mount the map; returns the component result (``.click``: the point clicked in this run)."""
    noop = lambda: None  # noqa: E731  (state keys need a callback to be reported)
    return _component(data=payload, key=key, height=height, on_loaded_change=noop, on_hover_change=noop,
                      on_view_change=noop, on_click_change=on_click or noop, on_select_change=noop)
