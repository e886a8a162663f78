"""Zero-shot tab: CLIP text prototypes against image prototypes, and their mix."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.classify.tables import zero_shot_mix_curve
from core.classify.zeroshot import CLIP_TEMPLATES
from core.errors import BackboneLensError
from core.io.policy import PolicyError
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import pct
from pages.shared.resources import features, get_backbone
from pages.shared.server import one_line

CLIP_OFFLINE = "open_clip/ViT-B-32/random"
CLIP_ONLINE = "open_clip/ViT-B-32/laion2b_s34b_b79k"


def _clip_backbone(ctx: ProtoContext):
    """The CLIP model this tab uses: the sidebar's backbone when it has a text tower, else one chosen here
    for this tab only (the sidebar's backbone, and every other page, stay as they are); None until chosen."""
    b = get_backbone(ctx.sel.backbone)
    if b.spec.has_text:
        return b
    st.info(f"Zero-shot needs a backbone with a **text tower** (CLIP): **{ctx.sel.backbone}** is a "
            f"{b.spec.family.upper()} image model without one. Choose a CLIP model for this tab: `{CLIP_OFFLINE}` works "
            "offline (random weights: it exercises the code, its accuracy is chance); "
            f"`{CLIP_ONLINE}` has real weights and downloads once where there is a network. The sidebar's backbone "
            "stays as it is.", icon=":material/text_fields:")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.selectbox("CLIP model for this tab", [CLIP_OFFLINE, CLIP_ONLINE], key="zs_clip", accept_new_options=True,
                        help="Any open_clip name (open_clip/<arch>/<tag>, or open_clip/<arch>@<file> in a weights folder).")
    if c2.button("Run zero-shot", key="zs_run"):
        st.session_state["zs_chosen"] = name
    chosen = st.session_state.get("zs_chosen")
    if not chosen:
        return None
    try:
        clip = get_backbone(chosen)
    except (BackboneLensError, PolicyError) as e:
        st.error(f"Cannot load **{chosen}**: {one_line(e)}")
        st.session_state.pop("zs_chosen", None)
        return None
    if not clip.spec.has_text:
        st.error(f"**{chosen}** has no text tower: choose an open_clip model.")
        return None
    return clip


def draw(ctx: ProtoContext) -> None:
    sel, classes_all, test_size, seed, K = ctx.sel, ctx.classes, ctx.test_size, ctx.seed, ctx.K
    b = _clip_backbone(ctx)
    if b is None:
        return
    if "random" in b.spec.weights_name:
        st.warning(f"{b.spec.name} has random weights ({b.spec.weights_name}): the numbers below only show that "
                   "the pipeline runs; expect chance accuracy.")
    st.caption("Text prototypes: every class name is put into each prompt template, encoded by the text tower, "
               "normalised and averaged over templates (CLIP's prompt ensemble). Image prototypes: class means of the "
               "training images. Both are compared by cosine on the same held-out images; the mix blends them. "
               "Images use the final CLIP image embedding whatever layer the sidebar selects.")
    c1, c2 = st.columns([1, 2])
    names_df = c1.data_editor(pd.DataFrame({"class": classes_all, "name in prompts": [str(c).replace("_", " ")
                                                                                     for c in classes_all]}),
                              disabled=["class"], hide_index=True, key="zs_names")
    templates_txt = c2.text_area("Prompt templates, one per line ({} = class name)", "\n".join(CLIP_TEMPLATES),
                                 height=200, key="zs_templates", persist_state="session")
    templates = tuple(t.strip() for t in templates_txt.splitlines() if t.strip())
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        st.error("Every template needs exactly one {} for the class name" + (f"; fix: {bad}" if bad else "."))
        return
    names = tuple(str(n).strip() or str(c) for c, n in zip(names_df["class"], names_df["name in prompts"]))
    mix = st.slider("Mix (0 = text prototypes only, 1 = image prototypes only)", 0.0, 1.0, 0.5, 0.05, key="zs_mix",
                    persist_state="session")
    T = cache.text_prototypes(b.spec.name, b.spec.weights_id, names, templates)  # [K, E]
    zfs = features(sel, backbone=b.spec.name, layer=-1)
    E = zfs["embedding"]
    ye = np.asarray(zfs.labels)
    mixes = tuple(sorted({*np.round(np.linspace(0, 1, 11), 2), mix}))
    try:
        curve, nmc = zero_shot_mix_curve(E, ye, list(classes_all), T, mixes, test_size=test_size, seed=seed)
    except ValueError as e:
        st.error(f"{e}.")
        return
    acc = dict(zip(curve["mix"], curve["accuracy"]))
    m1, m2, m3 = st.columns(3)
    m1.metric("Text prototypes (zero-shot)", pct(acc[0.0]))
    m2.metric("Image prototypes (NMC)", pct(acc[1.0]))
    m3.metric(f"Mix {mix:.2f}", pct(acc[mix]))
    fig = go.Figure(go.Scatter(x=curve["mix"], y=curve["accuracy"], mode="lines+markers", name="accuracy"))
    fig.add_hline(y=1 / K, line_dash="dot", line_color="gray", annotation_text=f"chance (1/{K})")
    fig.add_vline(x=mix, line_dash="dot", line_color="red")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"Held-out accuracy on {int(curve['n_test'].iloc[0])} images", x=0))
    fig.update_xaxes(title_text="mix (0 = text only, 1 = image only)")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], tickformat=".0%")
    st.plotly_chart(fig, key="zs_curve")
