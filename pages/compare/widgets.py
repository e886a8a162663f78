"""Small helpers the Compare sections share: table widths, downloads, the clicked point, choosing an
image from any map."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from PIL import ImageDraw

from core import render


def sample_note(n: int, total: int) -> str:
    """Caption text for a view computed on a seeded sample of ``n`` of ``total`` images."""
    return f"all {total:,} images" if n >= total else f"a seeded sample of n = {n:,} of the {total:,} images"


def pick_from_chart(chart_key: str) -> None:
    """A click on a point of any embedding map chooses that image for every column."""
    ss = st.session_state
    pts = ss.get(chart_key, {}).get("selection", {}).get("points", [])
    if pts and "customdata" in pts[0]:
        cd = pts[0]["customdata"]
        ss["cmp_image"] = int(cd[0] if isinstance(cd, (list, tuple)) else cd)


def col_width(key: str) -> int:
    """Pixel width of a metrics-table column (all 14 fit a 1600-px window with the sidebar open)."""
    fixed = {"backbone": 125, "family": 70, "dim": 50, "params": 66, "images_per_s": 52, "speed_source": 98,
             "linear_accuracy": 80}
    return fixed.get(key, 60 if key.endswith("_std") else 78)


def missing_as_text(df: pd.DataFrame, fmt: dict) -> tuple[pd.DataFrame, dict]:
    """Columns holding a missing value (NaN) as text, formatted with ``fmt`` and "n/a" where missing, and
    ``fmt`` without them: the table shows a null cell as "None" whatever the Styler says."""
    out, rest = df.copy(), dict(fmt)
    for col in df.columns[df.isna().any()]:
        f = rest.pop(col, "{}")
        out[col] = ["n/a" if pd.isna(v) else f(v) if callable(f) else f.format(v) for v in df[col]]
    return out, rest


def csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def png(image) -> bytes:
    return render.png_bytes(image)


def mark_point(image, uv: tuple[float, float]):
    """A copy of ``image`` with a cyan ring at the relative point ``uv = (x/W, y/H)``."""
    out = image.copy()
    d = ImageDraw.Draw(out)
    x, y = uv[0] * out.width, uv[1] * out.height
    for r, col, w in ((9, (0, 0, 0), 4), (9, (0, 255, 255), 2)):
        d.ellipse([x - r, y - r, x + r, y + r], outline=col, width=w)
    return out
