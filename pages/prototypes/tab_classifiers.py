"""Classifiers tab: every registered classifier's held-out accuracy, its confusion matrix and mistakes."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.classify import evaluation  # caps read at call time (tests lower them)
from core.classify.classifiers import classifier_info, classifier_names
from core.classify.margins import misclassified
from core.classify.tables import method_label
from pages.prototypes import cache
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import THUMB, accuracy_table, heatmap, pct, show_accuracies
from pages.shared.items import show_thumb

MAX_WRONG = 24       # misclassified images shown


def draw(ctx: ProtoContext) -> None:
    X, y, items, sel, metric, test_size, seed = ctx.X, ctx.y, ctx.items, ctx.sel, ctx.metric, ctx.test_size, ctx.seed
    names = classifier_names()
    head = st.empty()
    slot = st.empty()  # the whole width: every column of the table visible
    c1, c2 = st.columns([3, 2], gap="medium")
    try:
        results, not_run = cache.evaluations(ctx, names, slot)
    except ValueError as e:  # e.g. leave-one-out with a class of one image
        slot.empty()
        st.error(f"Cannot evaluate the classifiers on this dataset: {e}")
        return
    if not results:
        slot.empty()
        st.error("No classifier can be evaluated on this dataset: " + "; ".join(f"{method_label(m)}: {e}"
                                                                              for m, e in not_run.items()))
        return
    names = tuple(r.method for r in results)
    proto = results[0].protocol
    head.caption(("Stratified hold-out: " + pct(test_size) + f" of each class is the test set (seed {seed})."
                if proto == "split" else "Leave-one-out: the set is too small for a hold-out split "
                "(under 20 images, or a class with under 3); every image is predicted by a model that never saw it.")
               + " k-NN uses k = 5 and cosine; the linear probe is logistic regression on L2-normalised features "
                 "(C = 1); the linear SVM is Razavian et al.'s off-the-shelf protocol (L2-normalised features, "
                 "C = 1) without their crop and flip augmentation; NMC uses the distance chosen above (Euclidean on "
                 "raw features, where iCaRL's NME normalises them first). The other methods follow their authors' "
                 "code (docs/METHODS.md), with two departures: FeCAM's Tukey transform keeps the sign of negative "
                 "features (the paper's x^0.5 assumes non-negative ones), and RanPAC here is its closed-form head "
                 "only, without the first-session adaptation of the backbone.")
    table = accuracy_table(results)
    show_accuracies(slot, table)
    shell = f"--imported {ctx.imported}" if ctx.imported else \
        f"--backbone {sel.backbone} --train {sel.dataset.root}" if sel.dataset.root is not None else None
    if shell:
        c1.caption(f"Same numbers from a shell: `backbone-lens evaluate {shell} --method nmc` (or `--method "
                   f"{'|'.join(classifier_names()[1:])}`; add `--json` for one JSON object).")
    full_train = max(r.n_train for r in results)
    capped = [r for r in results if r.n_train < full_train]
    if capped or results[0].n_test >= evaluation.MAX_TEST:
        c1.caption(f"At this size the scores use seeded stratified samples: at most {evaluation.MAX_TEST:,} held-out images are "
                   "scored (an accuracy within about ±1 % at 95 %)"
                   + ("; " + ", ".join(f"{method_label(r.method)} is fitted on {r.n_train:,}" for r in capped)
                      + f" of the {full_train:,} training images (its cost grows faster than the data helps)"
                      if capped else "") + ".")
    for m, why in not_run.items():
        c1.caption(f"Not run: **{method_label(m)}**: {why}")
    with c1.expander("What each method assumes", expanded=True):
        st.markdown("\n".join(f"- **{method_label(m)}**: {classifier_info(m).assumes}" for m in classifier_names()))
    c1.download_button("Download accuracies (CSV)", table.to_csv(index=False).encode(), file_name="accuracies.csv",
                       mime="text/csv", icon=":material/download:")
    method = c2.selectbox("Confusion matrix and mistakes of", names, format_func=method_label,
                          key="proto_cm_method", persist_state="session")
    r = results[list(names).index(method)]
    cm = r.confusion
    c2.plotly_chart(heatmap(cm, list(r.classes), list(r.classes), colorbar="test images", text=cm.astype(str),
                             colorscale="Blues", zmin=0, dtick=max(1, int(np.ceil(cm.max() / 5))),
                             title=f"Confusion: {method_label(method)} ({pct(r.accuracy)})",
                             xtitle="predicted class", ytitle="true class", height=460), key="cm_heat")

    mis = misclassified(X, y, r, metric)
    wrong = mis.rows
    st.subheader(f"Misclassified by {method_label(method)}: {len(wrong)} of {r.n_test}")
    if not len(wrong):
        st.success("No test image is misclassified.")
        return
    st.caption("Next to each image: the nearest prototype of another class, shown by the training image closest "
               "to that prototype (" + ("prototypes of the training part" if r.protocol == "split"
                                        else "prototypes of all images") + ").")
    cols = st.columns(4)
    for j, i in enumerate(wrong[:MAX_WRONG]):
        box = cols[j % 4].container(border=True)
        a, b = box.columns(2)
        show_thumb(a, items, i, THUMB, caption="image")
        show_thumb(b, items, mis.exemplar[j], THUMB, caption=f"{mis.wrong_label[j]} prototype")
        box.markdown(f"**{items.names[i].split('/')[-1]}**  \ntrue :green[{y[i]}] · predicted :red[{mis.predicted[j]}]  \n"
                     f"nearest wrong prototype **{mis.wrong_label[j]}**: d = {mis.d_wrong[j]:.3f} (own {mis.d_own[j]:.3f})")
    if len(wrong) > MAX_WRONG:
        st.caption(f"First {MAX_WRONG} of {len(wrong)} shown.")
