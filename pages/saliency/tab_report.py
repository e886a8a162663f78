"""Report card tab: the randomisation cascade on this picture and the report card of every method."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.errors import UnsupportedOperationError
from core.explain.methods import RANDOM, ROLLOUT, available_methods
from core.explain.report import ReportSettings, saliency_report
from core.explain.sanity import mprt
from pages.saliency import cache
from pages.saliency.context import SalContext
from pages.saliency.targets import chosen_or_default
from pages.shared.progress import reporter


def draw(ctx: SalContext) -> None:
    sel, b, spec, pic, size = ctx.sel, ctx.b, ctx.spec, ctx.pic, ctx.size
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

    st.subheader(f"Report card: {spec.name}")
    st.caption("Every method of the saliency table on a small sample of the dataset (round robin over the "
               "classes), each score as mean ± standard deviation over the images. mprt_spearman / mprt_ssim: "
               "similarity to the map of the fully re-initialised model (lower is better); road (remove and "
               "debias, higher is better); deletion AUC (lower is better) / insertion AUC (higher is better); "
               "pointing game and relevance mass against the alpha channel (higher is better; images without "
               "one are left out of those two). The same numbers as `backbone-lens saliency-report`.")
    n_sample = st.slider("Images in the sample", 1, 8, 1, key="sal_report_n",
                         help="About a minute per image on two CPU cores (ROAD's imputation and 22 forward passes "
                              "per method).")
    report_key = (spec.name, sel.dataset_key, size, n_sample)
    memo = cache.report_memo()
    if report_key not in memo and st.button(f"Compute the report card on {n_sample} image(s)", key="sal_report_go"):
        bar = st.progress(0.0, text="Scoring every method…")
        try:
            memo[report_key] = saliency_report(
                b, sel.dataset.records, settings=ReportSettings(size=size, limit=n_sample),
                progress=reporter(bar, lambda d, t, msg: f"{d} / {t}: {msg}"))
        except (ValueError, UnsupportedOperationError) as e:
            st.error(f"Cannot compute the report card: {e}")
            st.stop()
        bar.empty()
    card = memo.get(report_key)
    if card is not None:
        table = card.table()
        st.dataframe(table, hide_index=True, key="sal_report_table",
                     height=36 * (len(table["method"]) + 1) + 4)  # every method without scrolling
        st.caption(f"{len(card.images)} image(s) ({card.n_masks} with an object mask) at {card.size} px, "
                   f"{card.seconds:.0f} s: {', '.join(card.images)}. ROAD percentiles "
                   f"{list(card.settings.road_percentiles)}, deletion / insertion in {card.settings.deletion_steps} "
                   f"steps to a {card.settings.baseline} baseline."
                   + "".join(f" Skipped {m}: {why}." for m, why in card.skipped.items()))
        st.download_button("⬇ JSON", card.to_json(), f"saliency_report_{spec.name}_{size}.json", "application/json",
                           on_click="ignore", key="dl_report")
