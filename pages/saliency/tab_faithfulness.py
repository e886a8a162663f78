"""Faithfulness tab: maps side by side and their deletion / insertion curves."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import render
from core.errors import UnsupportedOperationError
from core.explain.faithfulness import Baseline
from core.explain.maps import normalize01
from core.explain.methods import RANDOM, ROLLOUT, available_methods
from core.render import ColorScale
from pages.saliency import cache
from pages.saliency.context import SalContext
from pages.saliency.targets import chosen_or_default, prototypes
from pages.saliency.widgets import download


def draw(ctx: SalContext) -> None:
    sel, b, spec, pic, size, alpha, cmap, stem = ctx.sel, ctx.b, ctx.spec, ctx.pic, ctx.size, ctx.alpha, ctx.cmap, ctx.stem
    chosen = chosen_or_default(ctx)
    if chosen is not None:
        target, tkey = chosen
        st.caption(f"Deletion: the most salient pixels of the {size}-px model input are replaced by a blurred "
                   f"copy, step by step; the curve is the target score (**{target.label}**, "
                   f"{'softmax probability' if target.kind == 'class' else 'cosine similarity'}) divided by its "
                   "value on the intact picture. A faithful map makes it fall fast (low AUC). Insertion restores "
                   "the pixels into the blurred picture (high AUC is good). The target is the one chosen on the "
                   "Grad-CAM tab.")
        candidates = [m.name for m in available_methods(spec)]
        default = ([ROLLOUT] if spec.has_attention else []) + ["Grad-CAM", "EigenCAM", RANDOM]
        picks = st.multiselect("Maps to compare", candidates, default=default, key="sal_faith_maps",
                               help="Every method of the saliency table that runs on this backbone; attention "
                                    "is the mean of heads of the last block, rollout uses the default settings.")
        f1, f2 = st.columns(2)
        steps = f1.slider("Steps", 5, 20, 10, key="sal_faith_steps")
        baseline: Baseline = f2.radio("Removed pixels become", ["blur", "zero", "mean"], horizontal=True, key="sal_faith_base")

        def get_map(k: str) -> tuple[np.ndarray, str]:
            """The map called ``k`` with its default settings and an id saying everything it depends on."""
            family = next(m.family for m in available_methods(spec) if m.name == k)
            if family == "cam":
                return ctx.saliency(k, target, tkey), f"{k}:{tkey}"
            if family == "prototype":
                layer = b.resolve_layer(sel.layer)
                protos = prototypes(ctx, layer)
                if protos is None:
                    st.stop()
                pkey = f"{layer}:{sel.dataset_key}"
                return ctx.saliency(k, params_key=pkey, prototypes=protos, layer=layer), f"{k}:{pkey}"
            return ctx.saliency(k), k

        if picks:
            maps = {k: get_map(k) for k in picks}  # name -> (map, id)
            scale = ColorScale(0.0, 1.0, cmap, "saliency (each scaled to [0, 1])")
            norm = {k: normalize01(v) for k, (v, _) in maps.items()}
            panels = [render.heat_panel(pic.image, v, scale, alpha=alpha, title=k, max_side=240) for k, v in norm.items()]
            row = render.row(panels, scale)
            st.image(row)
            download(row, f"{stem}_compare.png", key="dl_compare")
            if st.toggle("Compute deletion / insertion scores", key="sal_faith_on",
                         help=f"About {2 * (steps + 1)} forward passes per map."):
                try:
                    res = {k: cache.faith(spec.name, pic.sha256, size, maps[k][1], tkey, steps, baseline, pic.image, v, target)
                           for k, v in norm.items()}
                except (ValueError, UnsupportedOperationError) as e:
                    st.error(f"Cannot score these maps: {e}")
                    st.stop()
                st.dataframe({"map": list(res),
                              "deletion AUC (lower is better)": [round(r["deletion_auc"], 3) for r in res.values()],
                              "insertion AUC (higher is better)": [round(r["insertion_auc"], 3) for r in res.values()]},
                             hide_index=True)
                if RANDOM in res:
                    rnd = res[RANDOM]
                    for k, r in res.items():
                        if k == RANDOM:
                            continue
                        d_ok = r["deletion_auc"] < rnd["deletion_auc"]
                        i_ok = r["insertion_auc"] > rnd["insertion_auc"]
                        st.markdown(f"- **{k}** against the random map: deletion {r['deletion_auc']:.3f} vs "
                                    f"{rnd['deletion_auc']:.3f} ({'better' if d_ok else 'not better'}), insertion "
                                    f"{r['insertion_auc']:.3f} vs {rnd['insertion_auc']:.3f} "
                                    f"({'better' if i_ok else 'not better'}).")
                    st.caption("One picture gives no interval: a difference here may not hold on the next picture. "
                               "The Report card tab scores every method on many pictures, with 95 % intervals and a "
                               "verdict against the random map.")
                else:
                    st.caption("Add the random map to the maps compared: a map is only worth reading where it beats it.")
                c1, c2 = st.columns(2)
                for col, curve in ((c1, "deletion"), (c2, "insertion")):
                    fig = go.Figure([go.Scatter(x=r["fractions"], y=r[f"{curve}_curve"], mode="lines+markers", name=k)
                                     for k, r in res.items()])
                    fig.update_layout(title=f"{curve.capitalize()} curves", height=340,
                                      xaxis_title=f"fraction of pixels {'removed' if curve == 'deletion' else 'restored'}",
                                      yaxis_title="target score / intact score", margin=dict(t=40, b=40))
                    col.plotly_chart(fig, key=f"faith_{curve}")
