"""Report card tab: the randomisation cascade on this picture and the report card of every method."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.explain.methods import RANDOM, ROLLOUT, available_methods
from core.explain.sanity import mprt
from pages.saliency import cache, section_card
from pages.saliency.context import SalContext
from pages.saliency.targets import chosen_or_default
from pages.shared.progress import reporter


def draw(ctx: SalContext) -> None:
    spec, pic, size = ctx.spec, ctx.pic, ctx.size
    st.subheader("Does the map depend on the model? (model-parameter randomisation, this picture)")
    st.caption("The model is re-initialised from the top, one unit at a time (head, last block, …, stem), on a "
               "copy; each map on the randomised copy is compared with the map on the trained model. A map that "
               "explains the model loses its similarity as more of the model is randomised; the random control "
               "keeps a correlation of 1 by construction (Adebayo et al. 2018).")
    runnable = [m.name for m in available_methods(spec) if m.family != "prototype"]
    default_sanity = ([ROLLOUT] if spec.has_attention else []) + ["Grad-CAM", RANDOM]
    sanity_methods = st.multiselect("Methods", runnable, default=default_sanity, key="sal_sanity_methods")
    chosen = chosen_or_default(ctx)
    if sanity_methods and chosen is not None and st.button("Run the cascade on this picture", key="sal_sanity_go"):
        target, tkey = chosen
        bar = st.progress(0.0, text="Randomising the model, one unit at a time…")
        curves = mprt([cache.saliency_input(spec.name, pic.sha256, size, pic.image)], sanity_methods, [target],
                      progress=reporter(bar, lambda d, t: f"Randomised {d} of {t} units"))
        bar.empty()
        st.session_state["sal_sanity"] = ((spec.name, pic.sha256, size, tkey), curves)
    held = st.session_state.get("sal_sanity")
    if held is not None and held[0][:3] == (spec.name, pic.sha256, size):
        curves = held[1]
        c1, c2 = st.columns(2)
        for col, what in ((c1, "spearman"), (c2, "ssim")):
            fig = go.Figure([go.Scatter(x=c.depths, y=getattr(c, what), mode="lines+markers", name=k)
                             for k, c in curves.items()])
            fig.update_layout(title=f"{'Spearman rank correlation' if what == 'spearman' else 'SSIM'} with the "
                                    "trained model's map", height=360, yaxis_title=what,
                              xaxis_title="randomised down to (cumulative, from the top)", margin=dict(t=40, b=40))
            col.plotly_chart(fig, key=f"sanity_{what}")

    section_card.draw(ctx)
