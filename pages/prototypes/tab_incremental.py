"""Class-incremental tab: classes added task by task, exemplar-free."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import render
from core.classify import evaluation  # caps read at call time (tests lower them)
from core.classify.classifiers import classifier_info, classifier_names
from core.classify.incremental import class_order
from core.classify.tables import method_label
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import heatmap, pct


def draw(ctx: ProtoContext) -> None:
    classes_all, metric, seed, K = ctx.classes, ctx.metric, ctx.seed, ctx.K
    st.caption("Classes arrive in tasks. After each task its statistics are added from its training images only; "
               "no old image is revisited and none is kept. Accuracy is over the test images of every class seen so "
               "far. Cosine NMC = SimpleCIL, Euclidean = classic NMC on raw features (iCaRL's NME normalises them); "
               "the other methods keep second-order statistics (a shared or per-class covariance, or RanPAC's Gram "
               "matrix), updated class by class.")
    c1, c2, c3 = st.columns([1, 1, 2])
    n_tasks = c1.slider("Tasks", 1, K, min(4, K), key="cil_tasks", persist_state="session")
    mode = c2.radio("Class order", ["sorted", "shuffled", "custom"], key="cil_mode", persist_state="session",
                    help="shuffled uses the seed above; custom: pick every class once, in arrival order.")
    incremental = [m for m in classifier_names() if m != "nmc" and classifier_info(m).incremental]
    extra = c3.multiselect("Also run", incremental, default=[m for m in ("lda", "ranpac", "fecam") if m in incremental],
                           format_func=method_label, key="cil_methods", persist_state="session")
    if mode != "custom":
        order = class_order(list(classes_all), mode, seed)
    else:
        order = c3.multiselect("Arrival order", list(classes_all), default=list(classes_all), key="cil_order",
                               persist_state="session")
        missing = [c for c in classes_all if c not in order]
        if missing:
            st.warning(f"Add every class once; missing: {', '.join(missing)}.")
            return
    try:
        res = cache.incremental(ctx, n_tasks, tuple(str(c) for c in order), tuple(extra))
    except ValueError as e:
        st.error(str(e))
        return
    r = res[metric]
    runs = {"SimpleCIL (cosine)": res["cosine"], "NMC (Euclidean)": res["euclidean"],
            **{method_label(m).split(" (")[0]: res[m] for m in extra}}
    aia = "Mean of the accuracies after each task (average incremental accuracy)."
    fin = "Accuracy over all classes after the last task."
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("SimpleCIL: average incremental", pct(res["cosine"].average_incremental_accuracy), help=aia)
    m2.metric("SimpleCIL: final", pct(res["cosine"].final_accuracy), help=fin)
    best = max(runs, key=lambda n: runs[n].final_accuracy)
    m3.metric(f"Best final: {best}", pct(runs[best].final_accuracy), help=fin)
    m4.metric(f"{best}: average incremental", pct(runs[best].average_incremental_accuracy), help=aia)
    ticks = [f"task {t + 1}<br>+{', '.join(map(str, g))}" if len(g) <= 3 else f"task {t + 1}<br>+{len(g)} classes"
             for t, g in enumerate(r.task_classes)]
    fig = go.Figure()
    styles = [dict(color="#d62728", width=3), dict(color="#1f77b4", width=2, dash="dash")]
    others = render.hex_colours(8)
    for i, (name, run) in enumerate(runs.items()):
        style = styles[i] if i < 2 else dict(color=others[(i - 2) % len(others)], width=2)
        fig.add_trace(go.Scatter(x=ticks, y=run.step_accuracies, mode="lines+markers", name=name, line=style,
                                 customdata=run.n_seen_classes,
                                 hovertemplate="%{y:.1%} over %{customdata} classes<extra>" + name + "</extra>"))
    fig.update_layout(height=420, title=dict(text="Accuracy over all classes seen so far", x=0),
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(title=dict(text="classifier")))
    fig.update_yaxes(title_text="accuracy (seen classes)", range=[0, 1.02], tickformat=".0%")
    fig.update_xaxes(title_text="after task")
    c1, c2 = st.columns([3, 2], gap="medium")
    c1.plotly_chart(fig, key="cil_plot")
    acc = r.task_accuracy
    text = np.where(np.isnan(acc), "", np.vectorize(lambda v: f"{100 * v:.0f}%")(np.nan_to_num(acc)))
    c2.plotly_chart(heatmap(acc, [f"task {j + 1}" for j in range(n_tasks)], [f"after {t + 1}" for t in range(n_tasks)],
                             colorbar="accuracy", text=text, colorscale="Viridis", zmin=0, zmax=1,
                             title=f"Accuracy per task ({'SimpleCIL' if metric == 'cosine' else 'NMC'})",
                             xtitle="test images of task", ytitle="after training on task", height=420),
                    key="cil_heat")
    if extra:
        st.caption(" ".join(f"**{method_label(m)}**: {classifier_info(m).assumes}" for m in extra))
    full_train = r.n_train
    capped = [m for m in extra if res[m].n_train < full_train]
    if capped or r.n_test >= evaluation.INCREMENTAL_MAX_TEST:
        st.caption(f"At this size the runs use seeded stratified samples: every task is scored on the seen classes "
                   f"among {r.n_test:,} held-out images (at most {evaluation.INCREMENTAL_MAX_TEST:,})"
                   + ("; " + ", ".join(f"{method_label(m)} adds {res[m].n_train:,}" for m in capped)
                      + f" of the {full_train:,} training images" if capped else "") + ".")
    st.dataframe(pd.DataFrame({"task": range(1, n_tasks + 1), "classes": [", ".join(map(str, g)) for g in r.task_classes],
                               "seen classes": r.n_seen_classes,
                               **{name: run.step_accuracies for name, run in runs.items()}}), hide_index=True,
                 column_config={name: st.column_config.NumberColumn(name, format="percent") for name in runs})
