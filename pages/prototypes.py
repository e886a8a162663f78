"""Prototypes: class means of frozen features as a classifier. Distances between prototypes and from
every image to every prototype with per-class margins; every registered classifier (NMC, k-NN,
linear probe, two naive Bayes, LDA, RanPAC, FeCAM) with a confusion matrix and the misclassified
images; the few-shot "two regimes" curve; exemplar-free class-incremental learning; TEEN
calibration of few-shot prototypes; CLIP text prototypes (zero-shot); out-of-distribution scores
with an unknown class; and classifying an uploaded image.

Each tab computes only while it is open, and every result is cached by (features, parameters).
The maths lives in core.classify.prototypes (and core.classify.tables for repeats and tables).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import render
from core.classify.classifiers import classifier_info, classifier_names
from core.classify.evaluation import FEW_SHOT_MAX_TEST, INCREMENTAL_MAX_TEST, MAX_TEST, few_shot_curve
from core.classify.incremental import class_incremental, class_order
from core.classify.margins import PrototypeDistances, misclassified, new_image_distances, prototype_distances
from core.classify.ood import OOD_SCORES, ood_scores, unknown_class_ood
from core.classify.tables import evaluate_methods, method_label, teen_alpha_sweep, teen_repeated, two_regimes, zero_shot_mix_curve
from core.classify.teen import max_new_class_shots
from core.classify.zeroshot import CLIP_TEMPLATES, prompt_prototypes
from core.errors import ImageDecodeError
from core.geometry.vectors import METRICS
from core.io.images import ImageRecord, thumbnail
from core.projection.projectors import ProjectionParams, make_projector
from pages.common import CLASS_DEFAULT, checked_uploads, choose_backbone, features, get_backbone, show_failures, sidebar

TABS = ["Prototypes", "Classifiers", "Few-shot", "Class-incremental", "TEEN", "Zero-shot", "Out-of-distribution",
        "Classify an upload"]
CLIP_OFFLINE = "open_clip/ViT-B-32/random"
THUMB = 120
MAX_WRONG = 24       # misclassified images shown
MAX_TICKS = 80       # image-name ticks on the image-to-prototype matrix
HEAT_MAX_ROWS = 2_000  # image rows drawn in the image-to-prototype heat map (evenly spaced above)
DIST_LABEL = {"cosine": "cosine distance (1 − cos)", "euclidean": "Euclidean distance"}


# ---- cached computations (keyed by the features identity ``fid`` and the parameters) -----------
@st.cache_data(max_entries=16, show_spinner=False)
def _prototypes(fid: str, metric: str, _X: np.ndarray, _y: np.ndarray) -> PrototypeDistances:
    return prototype_distances(_X, _y, metric)


@st.cache_data(max_entries=128, show_spinner=False)
def _evaluation(fid: str, metric: str, test_size: float, seed: int, method: str, _X: np.ndarray, _y: np.ndarray):
    """One classifier's ``([result], {})``, or ``([], {method: why})`` where it cannot be fitted."""
    return evaluate_methods(_X, _y, (method,), metric=metric, test_size=test_size, seed=seed)


def _evaluations(methods: tuple[str, ...], slot):
    """Every method's result, each cached on its own, with a progress bar while they run (a large set
    takes most of a minute on a small CPU); the table in ``slot`` fills in as each method finishes."""
    bar = st.progress(0.0)
    results, not_run = [], {}
    for i, m in enumerate(methods):
        bar.progress(i / len(methods), text=f"Training and testing {method_label(m)} ({i + 1} of {len(methods)})…")
        got, why = _evaluation(fid, metric, test_size, seed, m, X, y)
        results += got
        not_run.update(why)
        if results and i + 1 < len(methods):
            _show_accuracies(slot, _accuracy_table(results))
    bar.empty()
    return results, not_run


def _accuracy_table(results) -> pd.DataFrame:
    return pd.DataFrame([{"method": method_label(r.method), "accuracy": r.accuracy,
                          "correct": f"{int(round(r.accuracy * r.n_test))} / {r.n_test}",
                          "protocol": r.protocol, "n_train": r.n_train, "n_test": r.n_test} for r in results])


def _show_accuracies(slot, table: pd.DataFrame) -> None:
    slot.dataframe(table, hide_index=True, column_config={
        "accuracy": st.column_config.ProgressColumn("accuracy", format="percent", min_value=0, max_value=1)})


@st.cache_data(max_entries=16, show_spinner="Few-shot draws (each method on the same draws)…")
def _few_shot(fid: str, shots: tuple, methods: tuple, draws: int, seed: int, _X, _y):
    return few_shot_curve(_X, _y, shots=shots, methods=methods, draws=draws, seed=seed)


@st.cache_data(max_entries=64, show_spinner=False)
def _incremental_run(fid: str, n_tasks: int, order: tuple, test_size: float, seed: int, method: str, _X, _y):
    """One class-incremental run; ``method`` is a metric name for NMC, else a classifier name."""
    kw = {"metric": method} if method in METRICS else {"method": method}
    return class_incremental(_X, _y, n_tasks, order, test_size, seed, **kw)


def _incremental(n_tasks: int, order: tuple, methods: tuple):
    """NMC with both metrics and every method in ``methods``, each cached on its own, with a progress bar."""
    names = (*METRICS, *methods)
    bar = st.progress(0.0)
    runs = {}
    for i, m in enumerate(names):
        label = f"NMC ({m})" if m in METRICS else method_label(m)
        bar.progress(i / len(names), text=f"Adding the classes task by task: {label} ({i + 1} of {len(names)})…")
        runs[m] = _incremental_run(fid, n_tasks, order, test_size, seed, m, X, y)
    bar.empty()
    return runs


@st.cache_data(max_entries=16, show_spinner="Scoring images against the known classes…")
def _unknown(fid: str, unknown: tuple, test_size: float, seed: int, _X, _y):
    return unknown_class_ood(_X, _y, list(unknown), test_size=test_size, seed=seed)


@st.cache_data(max_entries=32, show_spinner="TEEN over random draws…")
def _teen(fid: str, base: tuple, k: int, alpha: float, tau: float, draws: int, seed: int, test_size: float, _X, _y):
    return teen_repeated(_X, _y, list(base), k, alpha, tau, draws=draws, seed=seed, test_size=test_size)


@st.cache_data(max_entries=32, show_spinner="TEEN fusion-weight sweep…")
def _teen_sweep(fid: str, base: tuple, k: int, tau: float, draws: int, seed: int, test_size: float, _X, _y):
    return teen_alpha_sweep(_X, _y, list(base), k, tau, draws=draws, seed=seed, test_size=test_size)


@st.cache_data(max_entries=16, show_spinner="Encoding the prompts with the text tower…")
def _text_prototypes(backbone: str, weights_id: str, names: tuple, templates: tuple) -> np.ndarray:
    b = get_backbone(backbone)
    texts = sorted({t.format(n) for t in templates for n in names})
    emb = dict(zip(texts, b.encode_text(texts).float().cpu().numpy()))  # one batch for all prompts
    return prompt_prototypes(lambda batch: np.stack([emb[t] for t in batch]), list(names), list(templates))


@st.cache_resource(max_entries=8, show_spinner=False)
def _pca_map(fid: str, _X: np.ndarray):
    return make_projector(ProjectionParams("pca", n_components=2)).fit(_X)


@st.cache_data(max_entries=1024, show_spinner=False)
def _thumb(sha: str, name: str, side: int, _rec: ImageRecord):
    return thumbnail(_rec.decode(), side)


def _show(where, rec: ImageRecord, side: int = THUMB, caption: str | None = None) -> None:
    try:
        where.image(_thumb(rec.sha256, rec.name, side, rec), caption=caption)
    except (ImageDecodeError, OSError) as e:  # changed or removed since the dataset was listed
        where.warning(f"Cannot show **{rec.name}**: {getattr(e, 'reason', e)}")


def _heatmap(z, x, y, *, colorbar: str, title: str, text=None, colorscale="Viridis", height=480,
             xtitle="", ytitle="", show_y=True, zmin=None, zmax=None, dtick=None) -> go.Figure:
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=y, colorscale=colorscale, zmin=zmin, zmax=zmax,
        colorbar=dict(title=dict(text=colorbar, side="right"), dtick=dtick),
        text=text, texttemplate="%{text}" if text is not None else None, textfont=dict(size=11),
        hovertemplate=f"{ytitle or 'row'}: %{{y}}<br>{xtitle or 'column'}: %{{x}}<br>{colorbar}: %{{z:.3f}}<extra></extra>"))
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)), height=height, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title_text=xtitle, side="bottom", tickangle=-40)
    fig.update_yaxes(title_text=ytitle, autorange="reversed", showticklabels=show_y)
    return fig


def _pct(a: float) -> str:
    return f"{100 * a:.1f}%"


# ---- page ---------------------------------------------------------------------------------------
sel = sidebar(CLASS_DEFAULT)
st.title("Prototypes")
st.caption("A prototype is the mean embedding of a class. The nearest-mean classifier (NMC) sends an image to the "
           "nearest prototype: no training, new classes are added by adding a mean (SimpleCIL).")

fs = features(sel)
show_failures(fs)
X = fs["embedding"]  # [N, D]
y = np.asarray(fs.labels)  # [N]
if len(y) == 0 or not all(y):
    st.info("Prototypes need class labels: use a folder with one subfolder per class, or upload images with a class "
            "name in the sidebar.")
    st.stop()
classes_all, counts_all = np.unique(y, return_counts=True)
if len(classes_all) < 2:
    st.info(f"Prototypes need at least 2 classes; this dataset has only {classes_all[0]!s}.")
    st.stop()
fid = f"{sel.backbone}|{sel.size}|{sel.layer}|{sel.dataset_key}"
K = len(classes_all)

c_metric, c_test, c_seed = st.columns([2, 2, 1])
metric = c_metric.radio("Distance to prototypes", METRICS, horizontal=True, key="proto_metric", persist_state="session",
                        format_func=lambda m: {"cosine": "cosine (SimpleCIL)", "euclidean": "Euclidean (classic NMC)"}[m])
test_size = c_test.slider("Held-out fraction per class", 0.1, 0.5, 0.3, 0.05, key="proto_test", persist_state="session",
                          help="Stratified split for accuracies; sets under 20 images or with a class under 3 "
                               "images use leave-one-out instead.")
seed = int(c_seed.number_input("Seed", 0, 2**31 - 1, 0, key="proto_seed", persist_state="session"))

tabs = dict(zip(TABS, st.tabs(TABS, key="proto_tab", on_change="rerun")))


# ---- Prototypes -----------------------------------------------------------------------------------
def tab_prototypes() -> None:
    pd_ = _prototypes(fid, metric, X, y)
    classes, order, D_pp, D_ip, margin = pd_.classes, pd_.order, pd_.D_pp, pd_.D_ip, pd_.margin
    st.caption(f"{K} prototypes from all {len(y)} images (in-sample: the held-out accuracies are on the Classifiers tab).")
    c1, c2 = st.columns([2, 3], gap="medium")
    text = np.vectorize(lambda v: f"{v:.2f}")(np.maximum(D_pp, 0.0)) if K <= 12 else None  # no "-0.00"
    c1.plotly_chart(_heatmap(D_pp, list(classes), list(classes), colorbar=DIST_LABEL[metric], text=text,
                             title="Prototype to prototype", xtitle="prototype", ytitle="prototype", height=520),
                    key="pp_heat")
    names = [fs.records[i].name for i in order]
    # a heat map of 100,000 rows would not draw: show HEAT_MAX_ROWS rows evenly spaced in class order
    rows = np.unique(np.linspace(0, len(order) - 1, HEAT_MAX_ROWS).round().astype(int)) if len(order) > HEAT_MAX_ROWS \
        else np.arange(len(order))
    ys = [names[i] for i in rows]
    shown = "" if len(rows) == len(order) else f"; {len(rows):,} of {len(order):,} images shown, evenly spaced"
    fig = _heatmap(D_ip[rows], list(classes), ys, colorbar=DIST_LABEL[metric],
                   title=f"Image to prototype (images sorted by class{shown})",
                   xtitle="prototype", ytitle="image", height=max(520, min(1400, 14 * len(ys) + 120)),
                   show_y=len(ys) <= MAX_TICKS)
    wrong = pd_.wrong_rows
    if len(wrong):
        fig.add_trace(go.Scatter(x=classes[pd_.nearest[wrong]], y=[ys[i] for i in wrong], mode="markers",
                                 marker=dict(symbol="x", size=9, color="red", line=dict(width=1, color="white")),
                                 name="nearest prototype is another class", hoverinfo="skip"))
    bounds = np.flatnonzero(y[order][rows][1:] != y[order][rows][:-1])  # last shown row of each class
    for b in bounds:
        fig.add_shape(type="line", xref="paper", x0=0, x1=1, y0=b + 0.5, y1=b + 0.5, yref="y",
                      line=dict(color="white", width=2))
    fig.update_yaxes(type="category", dtick=1, tickfont=dict(size=10))
    fig.update_layout(legend=dict(orientation="h", y=-0.08, x=0))
    c2.plotly_chart(fig, key="ip_heat")

    st.subheader("Per-class margin")
    st.caption("Margin of an image = distance to the nearest other prototype − distance to its own prototype. "
               "Positive: NMC gets it right, with that much room.")
    df = pd.DataFrame({"image": names, "class": y[order], "margin": margin})
    fig = go.Figure()
    colours = render.class_colours(list(classes))
    for c in classes:
        d = df[df["class"] == c]
        fig.add_trace(go.Box(y=d["margin"], name=str(c), marker_color=colours[c],
                             boxpoints="all" if len(df) <= 2000 else "outliers", jitter=0.4, pointpos=0, text=d["image"],
                             hovertemplate="%{text}<br>margin %{y:.3f}<extra></extra>", showlegend=False))
    fig.add_hline(y=0, line_dash="dash", line_color="gray")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=10, b=10))
    fig.update_yaxes(title_text=f"margin ({DIST_LABEL[metric]})")
    fig.update_xaxes(title_text="class")
    c1, c2 = st.columns([3, 2], gap="medium")
    c1.plotly_chart(fig, key="margins")
    summary = df.groupby("class")["margin"].agg(images="size", mean_margin="mean", min_margin="min",
                                                correct=lambda m: float((m > 0).mean()))
    c2.dataframe(summary, column_config={
        "mean_margin": st.column_config.NumberColumn("mean margin", format="%.3f"),
        "min_margin": st.column_config.NumberColumn("min margin", format="%.3f"),
        "correct": st.column_config.ProgressColumn("margin > 0", format="percent", min_value=0, max_value=1)})
    out = pd.DataFrame(D_ip, columns=[f"d_{c}" for c in classes])
    out.insert(0, "margin", margin)
    out.insert(0, "label", y[order])
    out.insert(0, "path", [str(fs.records[i].path or "") for i in order])
    out.insert(0, "name", names)
    c2.download_button("Download image-to-prototype distances (CSV)", out.to_csv(index=False).encode(),
                       file_name=f"prototype_distances_{metric}.csv", mime="text/csv", icon=":material/download:")


# ---- Classifiers ----------------------------------------------------------------------------------
def tab_classifiers() -> None:
    names = classifier_names()
    head = st.empty()
    c1, c2 = st.columns([3, 2], gap="medium")
    slot = c1.empty()
    try:
        results, not_run = _evaluations(names, slot)
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
    head.caption(("Stratified hold-out: " + _pct(test_size) + f" of each class is the test set (seed {seed})."
                if proto == "split" else "Leave-one-out: the set is too small for a hold-out split "
                "(under 20 images, or a class with under 3); every image is predicted by a model that never saw it.")
               + " k-NN uses k = 5 and cosine; the linear probe is logistic regression on L2-normalised features "
                 "(C = 1); the linear SVM is Razavian et al.'s off-the-shelf protocol (L2-normalised features, "
                 "C = 1) without their crop and flip augmentation; NMC uses the distance chosen above (Euclidean on "
                 "raw features, where iCaRL's NME normalises them first). The other methods follow their authors' "
                 "code (docs/METHODS.md), with two departures: FeCAM's Tukey transform keeps the sign of negative "
                 "features (the paper's x^0.5 assumes non-negative ones), and RanPAC here is its closed-form head "
                 "only, without the first-session adaptation of the backbone.")
    table = _accuracy_table(results)
    _show_accuracies(slot, table)
    if sel.dataset.root is not None:
        c1.caption(f"Same numbers from a shell: `backbone-lens evaluate --backbone {sel.backbone} --train "
                   f"{sel.dataset.root} --method nmc` (or `--method {'|'.join(classifier_names()[1:])}`; add `--json` for one "
                   "JSON object).")
    full_train = max(r.n_train for r in results)
    capped = [r for r in results if r.n_train < full_train]
    if capped or results[0].n_test >= MAX_TEST:
        c1.caption(f"At this size the scores use seeded stratified samples: at most {MAX_TEST:,} held-out images are "
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
    c2.plotly_chart(_heatmap(cm, list(r.classes), list(r.classes), colorbar="test images", text=cm.astype(str),
                             colorscale="Blues", zmin=0, dtick=max(1, int(np.ceil(cm.max() / 5))),
                             title=f"Confusion: {method_label(method)} ({_pct(r.accuracy)})",
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
        _show(a, fs.records[i], caption="image")
        _show(b, fs.records[mis.exemplar[j]], caption=f"{mis.wrong_label[j]} prototype")
        box.markdown(f"**{fs.records[i].name.split('/')[-1]}**  \ntrue :green[{y[i]}] · predicted :red[{mis.predicted[j]}]  \n"
                     f"nearest wrong prototype **{mis.wrong_label[j]}**: d = {mis.d_wrong[j]:.3f} (own {mis.d_own[j]:.3f})")
    if len(wrong) > MAX_WRONG:
        st.caption(f"First {MAX_WRONG} of {len(wrong)} shown.")


# ---- Few-shot ---------------------------------------------------------------------------------------
def tab_few_shot() -> None:
    st.caption(f"k random training images per class, the rest (at most {FEW_SHOT_MAX_TEST:,} of it, a stratified sample) is "
               "the test set; repeated draws give the error bars "
               "(± one standard deviation). Generative classifiers (naive Bayes, NMC, LDA) need few images to near "
               "their best; the discriminative linear probe catches up as shots grow: the two regimes (Ng & Jordan "
               "2001, revisited for pre-trained features by Zheng et al. 2023). LDA and FeCAM need 2 images per "
               "class for a covariance and have no point at 1 shot.")
    c1, c2, c3 = st.columns([2, 2, 1])
    shots = c1.multiselect("Shots per class", [1, 2, 3, 4, 5, 8, 10, 15, 20, 30, 50, 100], default=[1, 2, 3, 5],
                           key="fs_shots", persist_state="session")
    names = classifier_names()
    methods = c2.multiselect("Methods", names, default=["nb", "linear", "nmc", "nb_per_class"], format_func=method_label,
                             key="fs_methods", persist_state="session")
    draws = c3.slider("Draws", 1, 30, 10, key="fs_draws", persist_state="session")
    if not shots or not methods:
        st.info("Pick at least one shot value and one method.")
        return
    smallest = int(counts_all.min())
    skipped = [k for k in sorted(shots) if k >= smallest]
    if skipped:
        st.caption(f"Skipped {skipped}: the smallest class has {smallest} image{'s' * (smallest != 1)}, so k must be "
                   f"below {smallest} "
                   "to leave a test image in every class.")
    try:
        rows = _few_shot(fid, tuple(sorted(shots)), tuple(methods), draws, seed, X, y)
    except ValueError as e:
        st.error(f"Cannot draw few-shot training sets: {e}")
        return
    if not rows:
        st.warning(f"No shot value is below the smallest class size ({smallest}).")
        return
    df = pd.DataFrame([r.__dict__ for r in rows])
    fig = go.Figure()
    colours = dict(zip(names, render.hex_colours(len(names))))
    for m in methods:
        d = df[df.method == m]
        bold = m in ("nb", "linear")
        fig.add_trace(go.Scatter(x=d.shots, y=d.mean_acc, error_y=dict(type="data", array=d.std_acc, visible=True),
                                 mode="lines+markers", name=method_label(m),
                                 line=dict(color=colours[m], width=3 if bold else 1.5, dash=None if bold else "dot")))
    fig.add_hline(y=1 / K, line_dash="dot", line_color="gray", annotation_text=f"chance (1/{K})",
                  annotation_position="bottom right")
    regimes = two_regimes(rows, "nb", "linear") if {"nb", "linear"} <= set(methods) else None
    if regimes is not None and regimes.crossing is not None:
        fig.add_vline(x=regimes.crossing, line_dash="dash", line_color="black")
        fig.add_trace(go.Scatter(x=[regimes.crossing], y=[regimes.crossing_accuracy], mode="markers",
                                 marker=dict(symbol="x", size=14, color="black"), name="NB and LR cross",
                                 hovertemplate="curves cross at %{x:.1f} shots<extra></extra>"))
        first, then = ("NB", "LR") if regimes.pattern == "both" else ("LR", "NB")
        fig.add_annotation(x=np.log10(regimes.crossing), y=1.0, text=f"← {first} ahead | {then} ahead →",
                           showarrow=False, yanchor="bottom", font=dict(size=12))  # log axis: x in log10
    ks = sorted(df.shots.unique())
    fig.update_layout(height=460, title=dict(text=f"Few-shot accuracy, {draws} draws per point", x=0),
                      legend=dict(title=dict(text="classifier")), margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title_text="training images per class (shots, log scale)", type="log", tickvals=ks,
                     ticktext=[str(k) for k in ks])
    fig.update_yaxes(title_text="accuracy on the remaining images", range=[0, 1.06], tickformat=".0%")
    st.plotly_chart(fig, key="fs_plot")
    if regimes is not None:
        st.markdown(f"**Two regimes ({sel.backbone}):** {regimes.sentence}")
    else:
        st.caption("Add naive Bayes (shared variance) and the linear probe to the methods to see where the two "
                   "regimes meet.")
    if "nb_per_class" in methods:
        st.caption("Naive Bayes with a variance per class (scikit-learn's GaussianNB) estimates D variances from k "
                   "images of each class, which is why it can collapse at few shots; the paper's naive Bayes "
                   "shares one variance across classes.")
    out = df.assign(method=df.method.map(method_label)).rename(columns={"n_draws": "draws"})
    st.dataframe(out, hide_index=True, column_config={
        "mean_acc": st.column_config.NumberColumn("mean accuracy", format="%.3f"),
        "std_acc": st.column_config.NumberColumn("std", format="%.3f")})
    st.download_button("Download the curve (CSV)", out.to_csv(index=False).encode(), file_name="few_shot.csv",
                       mime="text/csv", icon=":material/download:")


# ---- Class-incremental -----------------------------------------------------------------------------
def tab_incremental() -> None:
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
        order = class_order(classes_all, mode, seed)
    else:
        order = c3.multiselect("Arrival order", list(classes_all), default=list(classes_all), key="cil_order",
                               persist_state="session")
        missing = [c for c in classes_all if c not in order]
        if missing:
            st.warning(f"Add every class once; missing: {', '.join(missing)}.")
            return
    try:
        res = _incremental(n_tasks, tuple(str(c) for c in order), tuple(extra))
    except ValueError as e:
        st.error(str(e))
        return
    r = res[metric]
    runs = {"SimpleCIL (cosine)": res["cosine"], "NMC (Euclidean)": res["euclidean"],
            **{method_label(m).split(" (")[0]: res[m] for m in extra}}
    aia = "Mean of the accuracies after each task (average incremental accuracy)."
    fin = "Accuracy over all classes after the last task."
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("SimpleCIL: average incremental", _pct(res["cosine"].average_incremental_accuracy), help=aia)
    m2.metric("SimpleCIL: final", _pct(res["cosine"].final_accuracy), help=fin)
    best = max(runs, key=lambda n: runs[n].final_accuracy)
    m3.metric(f"Best final: {best}", _pct(runs[best].final_accuracy), help=fin)
    m4.metric(f"{best}: average incremental", _pct(runs[best].average_incremental_accuracy), help=aia)
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
    c2.plotly_chart(_heatmap(acc, [f"task {j + 1}" for j in range(n_tasks)], [f"after {t + 1}" for t in range(n_tasks)],
                             colorbar="accuracy", text=text, colorscale="Viridis", zmin=0, zmax=1,
                             title=f"Accuracy per task ({'SimpleCIL' if metric == 'cosine' else 'NMC'})",
                             xtitle="test images of task", ytitle="after training on task", height=420),
                    key="cil_heat")
    if extra:
        st.caption(" ".join(f"**{method_label(m)}**: {classifier_info(m).assumes}" for m in extra))
    full_train = r.n_train
    capped = [m for m in extra if res[m].n_train < full_train]
    if capped or r.n_test >= INCREMENTAL_MAX_TEST:
        st.caption(f"At this size the runs use seeded stratified samples: every task is scored on the seen classes "
                   f"among {r.n_test:,} held-out images (at most {INCREMENTAL_MAX_TEST:,})"
                   + ("; " + ", ".join(f"{method_label(m)} adds {res[m].n_train:,}" for m in capped)
                      + f" of the {full_train:,} training images" if capped else "") + ".")
    st.dataframe(pd.DataFrame({"task": range(1, n_tasks + 1), "classes": [", ".join(map(str, g)) for g in r.task_classes],
                               "seen classes": r.n_seen_classes,
                               **{name: run.step_accuracies for name, run in runs.items()}}), hide_index=True,
                 column_config={name: st.column_config.NumberColumn(name, format="percent") for name in runs})


# ---- TEEN ---------------------------------------------------------------------------------------------
def tab_teen() -> None:
    st.caption("Base classes keep all their training images; each new class gets only k shots, so its prototype is "
               "noisy and biased. TEEN (Wang et al., NeurIPS 2023) pulls every new prototype towards the base "
               "prototypes it resembles: p̂ = α·p + (1 − α)·Σ_b softmax(τ·cos(p, p_b))·p_b, on normalised prototypes. "
               "Cosine NMC on the same test images, with and without calibration; mean ± std over draws.")
    c1, c2 = st.columns([3, 2])
    half = list(classes_all[: max(1, K // 2)])
    base = c1.multiselect("Base classes (all their training images)", list(classes_all), default=half, key="teen_base",
                          persist_state="session")
    new = [c for c in classes_all if c not in base]
    if not base or not new:
        st.info("Choose at least one base class and leave at least one class as a new class.")
        return
    kmax = max_new_class_shots(y, base, test_size)
    if kmax > 1:
        k = c2.slider("Shots per new class (k)", 1, kmax, 1, key="teen_k", persist_state="session")
    else:
        k = 1
        c2.caption("Shots per new class: k = 1 (a new class has only one training image).")
    c3, c4, c5 = st.columns(3)
    alpha = c3.slider("Fusion weight α (weight of the few-shot prototype; 1 = no calibration)", 0.0, 1.0, 0.5, 0.05,
                      key="teen_alpha", persist_state="session")
    tau = c4.slider("Temperature τ (larger: only the most similar base classes)", 0.0, 64.0, 16.0, 1.0, key="teen_tau",
                    persist_state="session")
    draws = c5.slider("Draws", 1, 30, 10, key="teen_draws", persist_state="session")
    try:
        df = _teen(fid, tuple(base), k, alpha, tau, draws, seed, test_size, X, y)
        sweep = _teen_sweep(fid, tuple(base), k, tau, min(draws, 5), seed, test_size, X, y)
    except ValueError as e:  # e.g. a class too small for a train/test split
        st.error(f"Cannot run TEEN on this dataset: {e}")
        return
    c1, c2 = st.columns(2, gap="medium")
    fig = go.Figure()
    for name, colour in (("plain", "#7f7f7f"), ("TEEN", "#d62728")):
        d = df[df.prototypes == name]
        fig.add_trace(go.Bar(x=d["classes"], y=d["mean"], error_y=dict(type="data", array=d["std"]), name=name,
                             marker_color=colour, text=[_pct(v) for v in d["mean"]], textposition="inside",
                             insidetextanchor="start", textfont=dict(color="white")))
    fig.update_layout(barmode="group", height=420, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"{len(base)} base + {len(new)} new classes, {k}-shot (α={alpha}, τ={tau})", x=0),
                      legend=dict(title=dict(text="new-class prototypes")))
    fig.update_yaxes(title_text="accuracy (cosine NMC)", range=[0, 1.1], tickformat=".0%")
    fig.update_xaxes(title_text="test images of")
    c1.plotly_chart(fig, key="teen_bars")
    fig = go.Figure()
    for part, colour in (("new", "#d62728"), ("base", "#1f77b4"), ("all", "#2ca02c")):
        d = sweep[sweep["classes"] == part]
        fig.add_trace(go.Scatter(x=d["alpha"], y=d["mean"], error_y=dict(type="data", array=d["std"]),
                                 mode="lines+markers", name=part, line=dict(color=colour)))
    fig.add_vline(x=alpha, line_dash="dot", line_color="gray", annotation_text="α", annotation_position="top")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10), legend=dict(title=dict(text="test images of")),
                      title=dict(text=f"Accuracy vs fusion weight α (τ={tau}, {min(draws, 5)} draws)", x=0))
    fig.update_xaxes(title_text="α (1 = plain few-shot prototypes)")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.05], tickformat=".0%")
    c2.plotly_chart(fig, key="teen_sweep")
    st.dataframe(df, hide_index=True, column_config={"mean": st.column_config.NumberColumn(format="%.3f"),
                                                    "std": st.column_config.NumberColumn(format="%.3f")})


# ---- Zero-shot ------------------------------------------------------------------------------------------
def tab_zero_shot() -> None:
    b = get_backbone(sel.backbone)
    if not b.spec.has_text:
        st.info(f"Zero-shot needs a backbone with a **text tower** (CLIP): **{sel.backbone}** is a "
                f"{b.spec.family.upper()} image model without one. Pick an open_clip backbone in the sidebar, e.g. "
                f"`{CLIP_OFFLINE}` (works offline, random weights: it exercises the code, its accuracy is chance) or "
                "`open_clip/ViT-B-32/laion2b_s34b_b79k` (real weights, downloads once where there is a network).",
                icon=":material/text_fields:")
        st.button(f"Use {CLIP_OFFLINE}", key="zs_use_clip", on_click=choose_backbone, args=(CLIP_OFFLINE,))
        return
    if "random" in b.spec.weights_name:
        st.warning(f"{sel.backbone} has random weights ({b.spec.weights_name}): the numbers below only show that "
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
    T = _text_prototypes(sel.backbone, b.spec.weights_id, names, templates)  # [K, E]
    zfs = features(sel, layer=-1)
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
    m1.metric("Text prototypes (zero-shot)", _pct(acc[0.0]))
    m2.metric("Image prototypes (NMC)", _pct(acc[1.0]))
    m3.metric(f"Mix {mix:.2f}", _pct(acc[mix]))
    fig = go.Figure(go.Scatter(x=curve["mix"], y=curve["accuracy"], mode="lines+markers", name="accuracy"))
    fig.add_hline(y=1 / K, line_dash="dot", line_color="gray", annotation_text=f"chance (1/{K})")
    fig.add_vline(x=mix, line_dash="dot", line_color="red")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text=f"Held-out accuracy on {int(curve['n_test'].iloc[0])} images", x=0))
    fig.update_xaxes(title_text="mix (0 = text only, 1 = image only)")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], tickformat=".0%")
    st.plotly_chart(fig, key="zs_curve")


# ---- Out-of-distribution ----------------------------------------------------------------------------
OOD_LABEL = {"mahalanobis": "Mahalanobis (to the nearest class)", "energy": "energy (−log p(x) + const)"}


def tab_ood() -> None:
    st.caption("How far an image lies from every class, from the statistics LDA uses: the class means and one shared "
               "covariance (Ledoit-Wolf). Mahalanobis score = squared distance to the nearest class mean (Lee et al. "
               "2018); energy = −log Σ_c π_c exp(−d_c / 2), i.e. −log p(x) up to a constant (Liu et al. 2020). "
               "Higher = more unusual.")
    unknown = st.multiselect("Treat these classes as unknown (left out of the statistics)", list(classes_all),
                             default=[], key="ood_unknown", persist_state="session")
    if unknown and K - len(unknown) < 2:
        st.info("Leave at least two known classes.")
        return
    try:
        res = _unknown(fid, tuple(sorted(unknown)), test_size, seed, X, y)
    except ValueError as e:
        st.error(f"Cannot fit the class statistics: {e}")
        return
    rows, sc, flag = res.test_indices, res.scores, res.is_unknown
    if unknown:
        st.caption(f"Statistics from the training split of the {K - len(unknown)} known classes ({res.n_train} images); "
                   f"scored: their {int((~flag).sum())} test images and all {int(flag.sum())} images of the unknown "
                   "classes. AUROC = chance that an unknown image scores above a known one (0.5 = no better than "
                   "chance, 1 = perfect).")
        m = st.columns(len(OOD_SCORES))
        for col, kind in zip(m, OOD_SCORES):
            col.metric(f"AUROC, {OOD_LABEL[kind]}", f"{res.auroc[kind]:.3f}")
    else:
        st.caption(f"Statistics from the training split ({res.n_train} images); scored: the {len(rows)} held-out test "
                   "images, which the statistics never saw. Mark a class as unknown above to measure how well the "
                   "scores flag a class the model never saw.")
    cols = st.columns(len(OOD_SCORES), gap="medium")
    for col, kind in zip(cols, OOD_SCORES):
        v = sc.score(kind)
        fig = go.Figure()
        for name, mask, colour in (("known classes", ~flag, "#1f77b4"), ("unknown classes", flag, "#d62728")):
            if mask.any():
                fig.add_trace(go.Histogram(x=v[mask], name=name, marker_color=colour, opacity=0.65, nbinsx=30))
        fig.update_layout(barmode="overlay", height=320, margin=dict(l=10, r=10, t=40, b=10),
                          title=dict(text=OOD_LABEL[kind], x=0), legend=dict(orientation="h", y=-0.25))
        fig.update_xaxes(title_text="score (higher = more unusual)")
        fig.update_yaxes(title_text="images")
        col.plotly_chart(fig, key=f"ood_hist_{kind}")
    table = pd.DataFrame({"image": [fs.records[i].name for i in rows], "class": y[rows],
                          "unknown class": flag, "nearest class": sc.nearest,
                          "mahalanobis": sc.mahalanobis, "energy": sc.energy}).sort_values("mahalanobis",
                                                                                           ascending=False)
    st.subheader("Most unusual images (Mahalanobis)")
    top = st.columns(6)
    for j, i in enumerate(table.index[:6]):
        _show(top[j], fs.records[rows[i]], caption=f"{y[rows[i]]} · {sc.mahalanobis[i]:.0f}")
    st.dataframe(table, hide_index=True, column_config={
        "mahalanobis": st.column_config.NumberColumn(format="%.1f"),
        "energy": st.column_config.NumberColumn(format="%.1f")})


# ---- Classify an upload ------------------------------------------------------------------------------
def tab_upload() -> None:
    files = st.file_uploader("Upload images to classify", accept_multiple_files=True, key="proto_upload",
                             help="Each is embedded with the selected backbone and compared to the prototypes of "
                                  "the whole dataset.")
    if not files:
        st.info("Upload one or more images: each gets its predicted class (nearest prototype), its distance to "
                "every prototype and its place in the embedding.")
        return
    up = checked_uploads(files)  # validated once per session, server limits
    for f in up.failures:
        st.error(f"Cannot use the uploaded file **{f.name}**: {f.reason}")
    if not up.records:
        return
    ufs = features(sel, dataset=up)
    show_failures(ufs)
    if not ufs.records:
        return
    U = ufs["embedding"]  # [M, D]
    nd = new_image_distances(X, y, U, metric)
    classes, Dm = nd.classes, nd.D  # [K], [M, K]
    try:  # statistics of the training split; the held-out test images are the reference
        held = _unknown(fid, (), test_size, seed, X, y)
        gauss, ref_maha = held.model, held.scores.mahalanobis  # ShrunkLDA, [T] held-out scores
        up_ood = ood_scores(gauss, U)
    except ValueError as e:  # e.g. a class with a single image: no split, no covariance
        gauss = None
        st.caption(f"No Mahalanobis distances: {e}")
    proj = _pca_map(fid, X)
    base, pcs, ups = proj.embedding_, proj.transform(nd.P), proj.transform(U)  # [N, 2], [K, 2], [M, 2]
    colours = render.class_colours(list(classes))
    for j, rec in enumerate(ufs.records):
        order = nd.ranking[j]
        pred = classes[order[0]]
        with st.container(border=True):
            c1, c2, c3 = st.columns([1, 2, 2], gap="medium")
            _show(c1, rec, side=220)
            c1.markdown(f"**{rec.name}**")
            c1.success(f"Predicted class: **{pred}**")
            c1.caption(f"runner-up **{classes[order[1]]}**, {nd.runner_up_gap[j]:.3f} further ({metric})")
            share = float(nd.share_as_far[j])
            c1.caption(f"{_pct(share)} of the dataset images lie at least this far from their own prototype"
                       + (": the upload may belong to none of these classes (NMC always picks one)." if share < 0.05 else "."))
            if gauss is not None:
                d = np.sqrt(up_ood.distances[j])  # [K] Mahalanobis distance to every class
                beyond = float(np.mean(ref_maha < up_ood.mahalanobis[j]))
                c1.caption(f"How far from every class (Mahalanobis, shared covariance): nearest **{up_ood.nearest[j]}** "
                           f"at {d.min():.1f}; further than {_pct(beyond)} of the held-out dataset images are from "
                           f"their nearest class (statistics of the training split); energy {up_ood.energy[j]:.1f}.")
                c1.dataframe(pd.DataFrame({"class": gauss.classes_, "Mahalanobis": d}).sort_values("Mahalanobis"),
                             hide_index=True, height=min(36 * K + 40, 320),
                             column_config={"Mahalanobis": st.column_config.NumberColumn(format="%.1f")})
            fig = go.Figure(go.Bar(x=Dm[j, order], y=classes[order], orientation="h",
                                   marker_color=["#d62728" if i == 0 else "#9ecae1" for i in range(K)],
                                   text=[f"{v:.3f}" for v in Dm[j, order]], textposition="auto"))
            fig.update_layout(height=max(360, 28 * K + 90), margin=dict(l=10, r=10, t=40, b=10),
                              title=dict(text="Distance to every prototype", x=0))
            fig.update_xaxes(title_text=DIST_LABEL[metric])
            fig.update_yaxes(title_text="prototype", autorange="reversed")
            c2.plotly_chart(fig, key=f"up_bar_{j}")
            fig = go.Figure()
            for k, c in enumerate(classes):
                rows = y == c
                col = colours[c]
                fig.add_trace(go.Scattergl(x=base[rows, 0], y=base[rows, 1], mode="markers", name=str(c), legendgroup=str(c),
                                           marker=dict(size=7, color=col, opacity=0.6),
                                           text=[r.name for r, m in zip(fs.records, rows) if m],
                                           hovertemplate="%{text}<extra>" + str(c) + "</extra>"))
                fig.add_trace(go.Scatter(x=pcs[k:k + 1, 0], y=pcs[k:k + 1, 1], mode="markers", legendgroup=str(c),
                                         showlegend=False, marker=dict(symbol="diamond", size=13, color=col,
                                                                       line=dict(width=1.5, color="black")),
                                         hovertemplate=f"prototype of {c}<extra></extra>"))
            fig.add_trace(go.Scatter(x=ups[j:j + 1, 0], y=ups[j:j + 1, 1], mode="markers", name="this upload",
                                     marker=dict(symbol="star", size=20, color="black", line=dict(width=1.5, color="white")),
                                     hovertemplate=f"{rec.name}<extra>upload</extra>"))
            fig.update_layout(height=max(360, 28 * K + 90), margin=dict(l=10, r=10, t=40, b=10),
                              title=dict(text="Where it falls (PCA; diamonds = prototypes)", x=0),
                              legend=dict(title=dict(text="class"), font=dict(size=11), tracegroupgap=0))
            fig.update_xaxes(title_text="PC 1")
            fig.update_yaxes(title_text="PC 2")
            c3.plotly_chart(fig, key=f"up_map_{j}")


SECTIONS = {"Prototypes": tab_prototypes, "Classifiers": tab_classifiers, "Few-shot": tab_few_shot,
            "Class-incremental": tab_incremental, "TEEN": tab_teen, "Zero-shot": tab_zero_shot,
            "Out-of-distribution": tab_ood, "Classify an upload": tab_upload}
for name, tab in tabs.items():
    if tab.open:  # only the open tab computes
        with tab:
            SECTIONS[name]()
