"""Which pair the neighbours tab explains: a pair handed over by another page's "Why?" control, the
link's ``?a=<index>&b=<index>`` (rows of the sidebar dataset, as the Embeddings and Compare pages number
them), or the two selectboxes, which open on the first image and its nearest neighbour. The chosen pair
is written back into the link, so the address bar can be shared."""
from __future__ import annotations

import streamlit as st

from core.geometry.neighbours import cosine_neighbours
from pages.shared.links import link_param
from pages.why.context import WhyContext

KEY_A, KEY_B = "why_a", "why_b"


def nearest(ctx: WhyContext, i: int) -> int:
    """Row of image ``i``'s nearest neighbour (cosine, full embedding space, ``i`` itself left out)."""
    return int(cosine_neighbours(ctx.X[[i]], ctx.X, k=1, exclude=[i]).indices[0][0])


def _from_link(n: int) -> tuple[int, int] | None:
    """The link's ``?a=&b=``, once per session, if both are rows of the dataset."""
    ss = st.session_state
    if ss.get("_why_link_used"):
        return None
    ss["_why_link_used"] = True
    a, b = link_param("a"), link_param("b")
    if a is None and b is None:
        return None
    if not (a and b and a.isdigit() and b.isdigit() and int(a) < n and int(b) < n):
        st.warning(f"The link's pair (a={a}, b={b}) is not two rows of this dataset's {n} images: showing the default pair.")
        return None
    return int(a), int(b)


def _arrival(ctx: WhyContext) -> tuple[int, int] | None:
    """The pair handed over by another page (found by content hash), else the link's."""
    h = ctx.handoff
    if h is None:
        return _from_link(len(ctx.records))
    rows = {r.sha256: i for i, r in enumerate(ctx.records)}
    if h.a in rows and h.b in rows:
        return rows[h.a], rows[h.b]
    st.warning(f"The pair from {h.origin} is not in the sidebar's dataset (it changed meanwhile): pick two images below.")
    return None


def _set_b_nearest(ctx: WhyContext) -> None:
    st.session_state[KEY_B] = nearest(ctx, st.session_state[KEY_A])


def choose_pair(ctx: WhyContext) -> tuple[int, int]:
    """Draw the pair's selectboxes (set first from a hand-off or the link) and return the rows ``(a, b)``."""
    ss = st.session_state
    n = len(ctx.records)
    got = _arrival(ctx)
    if got is None and (ss.get("_why_dataset") != ctx.sel.dataset_key or ss.get(KEY_A) not in range(n)
                        or ss.get(KEY_B) not in range(n)):
        got = 0, nearest(ctx, 0)  # a new dataset: the first image and its nearest neighbour
    if got is not None:
        ss[KEY_A], ss[KEY_B] = got
    ss["_why_dataset"] = ctx.sel.dataset_key

    def fmt(i: int) -> str:
        return f"{ctx.records[i].name}" + (f" ({ctx.label(i)})" if ctx.label(i) else "")

    c1, c2, c3 = st.columns([5, 5, 2], vertical_alignment="bottom")
    a = c1.selectbox("Image A", range(n), format_func=fmt, key=KEY_A, persist_state="session")
    b = c2.selectbox("Image B", range(n), format_func=fmt, key=KEY_B, persist_state="session")
    c3.button("B: A's nearest", key="why_nearest", on_click=_set_b_nearest, args=(ctx,),
              help="Make B image A's nearest neighbour (cosine, full embedding space).")
    if (st.query_params.get("a"), st.query_params.get("b")) != (str(a), str(b)):
        st.query_params.update({"a": str(a), "b": str(b)})  # the shareable link opens this pair
    return int(a), int(b)
