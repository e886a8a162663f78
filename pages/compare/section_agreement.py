"""Agreement section: where the backbones' nearest-mean predictions disagree."""
from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from core.compare.comparison import Comparison
from pages.compare import widgets
from pages.compare.context import CmpContext
from pages.compare.figures import NEUTRAL, OTHER, SAME, captioned_thumb, thumb_grid

MAX_DISAGREEMENTS = 12


def draw(ctx: CmpContext, cmp: Comparison | None) -> None:
    st.header("Agreement of the NMC predictions", divider="gray")
    if cmp is None:
        st.info("Agreement needs the metrics above (a labelled dataset).")
    else:
        n_test = cmp.agreement[0].n_test if cmp.agreement else 0
        st.caption(f"On the {n_test:,} test images of the split above: the share where two sources' nearest-mean "
                   "predictions agree, how often each is right, and the images where they differ.")
        st.dataframe(pd.DataFrame([{
            "A": p.a, "B": p.b, "agree": p.agree, "both right": p.both_correct, "only A right": p.only_a,
            "only B right": p.only_b, "both wrong": p.both_wrong, "disagree": len(p.disagreements)} for p in cmp.agreement]),
            hide_index=True, column_config={"agree": st.column_config.NumberColumn(format="percent")}, key="cmp_agree")
        pairs = [f"{p.a} vs {p.b}" for p in cmp.agreement]
        pi = st.selectbox("Disagreements of", range(len(pairs)), format_func=lambda j: pairs[j], key="cmp_pair") \
            if len(pairs) > 1 else 0
        p = cmp.agreement[pi]
        if not p.disagreements:
            st.success(f"{p.a} and {p.b} predict the same class for every test image.")
        else:
            shown_d = p.disagreements[:MAX_DISAGREEMENTS]
            thumbs = [captioned_thumb(ctx.items.thumb(d.index, 224),
                                      [f"true: {d.true}", f"A: {d.pred_a}", f"B: {d.pred_b}"],
                                      border=SAME if d.pred_a == d.true else OTHER if d.pred_b == d.true else NEUTRAL)
                      for d in shown_d]
            st.markdown(f"**A = {p.a}, B = {p.b}**: {len(p.disagreements)} images" +
                        (f" (first {MAX_DISAGREEMENTS} shown)" if len(p.disagreements) > MAX_DISAGREEMENTS else "") +
                        ". Border: green = A right, red = B right, grey = both wrong.")
            st.image(thumb_grid(thumbs, per_row=6), width="content")
            dis_df = pd.DataFrame([dataclasses.asdict(d) for d in p.disagreements]).rename(
                columns={"pred_a": f"pred_{p.a}", "pred_b": f"pred_{p.b}"})
            st.download_button("⬇ Disagreements (CSV)", widgets.csv(dis_df), f"disagreements_{p.a}_{p.b}.csv".replace("/", "_"),
                               "text/csv", on_click="ignore", key="dl_dis")
