"""The Prototypes page's computations, each cached on its own, keyed by the features' identity
(``ctx.fid`` = ``FeatureSet.key``) and the parameters; the arrays themselves are not hashed
(``_X``, ``_y``)."""
from __future__ import annotations

from typing import cast

import numpy as np
import streamlit as st

from core.classify.evaluation import few_shot_curve
from core.classify.incremental import class_incremental
from core.classify.margins import PrototypeDistances, prototype_distances
from core.classify.ood import unknown_class_ood
from core.classify.tables import evaluate_methods, method_label, teen_alpha_sweep, teen_repeated
from core.classify.zeroshot import prompt_prototypes
from core.geometry.vectors import METRICS, Metric
from core.io.imports import ImportedSet
from core.projection.projectors import ProjectionParams, make_projector
from pages.prototypes.context import ProtoContext
from pages.prototypes.figures import accuracy_table, show_accuracies
from pages.shared.progress import eta_reporter
from pages.shared.resources import get_backbone


@st.cache_resource(max_entries=4, show_spinner=False)
def imported_labels(fid: str, _s: ImportedSet) -> np.ndarray:
    """``[N]`` an imported set's labels as strings (read once per version of the set)."""
    return np.asarray(_s.labels(), dtype=str)


@st.cache_data(max_entries=16, show_spinner=False)
def prototypes(fid: str, metric: Metric, _X: np.ndarray, _y: np.ndarray) -> PrototypeDistances:
    return prototype_distances(_X, _y, metric)


@st.cache_data(max_entries=128, show_spinner=False)
def _evaluation(fid: str, metric: Metric, test_size: float, seed: int, method: str, _X: np.ndarray, _y: np.ndarray):
    """One classifier's ``([result], {})``, or ``([], {method: why})`` where it cannot be fitted."""
    return evaluate_methods(_X, _y, (method,), metric=metric, test_size=test_size, seed=seed)


def evaluations(ctx: ProtoContext, methods: tuple[str, ...], slot):
    """Every method's result, each cached on its own, with a progress bar while they run (a large set
    takes most of a minute on a small CPU); the table in ``slot`` fills in as each method finishes."""
    bar = st.progress(0.0)
    results: list = []
    not_run: dict[str, str] = {}
    for i, m in enumerate(methods):
        bar.progress(i / len(methods), text=f"Training and testing {method_label(m)} ({i + 1} of {len(methods)})…")
        got, why = _evaluation(ctx.fid, ctx.metric, ctx.test_size, ctx.seed, m, ctx.X, ctx.y)
        results += got
        not_run.update(why)
        if results and i + 1 < len(methods):
            show_accuracies(slot, accuracy_table(results))
    bar.empty()
    return results, not_run


@st.cache_data(max_entries=64, show_spinner=False)
def _few_shot_k(fid: str, k: int, methods: tuple, draws: int, seed: int, _X, _y):
    return few_shot_curve(_X, _y, shots=(k,), methods=methods, draws=draws, seed=seed)


def few_shot(fid: str, shots: tuple, methods: tuple, draws: int, seed: int, X, y) -> list:
    """``few_shot_curve``'s rows, one shot value at a time (each cached on its own; a shot value's draws depend
    only on the seed and k, so the rows are the same), with a progress bar and an ETA: on 100,000 images the
    curve takes minutes on a small CPU."""
    bar = st.progress(0.0)
    update = eta_reporter(bar, lambda d, t, k: f"Few-shot draws, every method on the same draws: {k} shot"
                                               f"{'s' * (k != 1)} ({d + 1} of {t})")
    rows: list = []
    for i, k in enumerate(shots):
        update(i, len(shots), k)
        rows += _few_shot_k(fid, int(k), methods, draws, seed, X, y)
    bar.empty()
    return sorted(rows, key=lambda r: (methods.index(r.method), r.shots))  # as few_shot_curve orders them


@st.cache_data(max_entries=64, show_spinner=False)
def _incremental_run(fid: str, n_tasks: int, order: tuple, test_size: float, seed: int, method: str, _X, _y):
    """One class-incremental run; ``method`` is a metric name for NMC, else a classifier name."""
    if method in METRICS:
        return class_incremental(_X, _y, n_tasks, order, test_size, seed, metric=cast(Metric, method))
    return class_incremental(_X, _y, n_tasks, order, test_size, seed, method=method)


def incremental(ctx: ProtoContext, n_tasks: int, order: tuple, methods: tuple) -> dict:
    """NMC with both metrics and every method in ``methods``, each cached on its own, with a progress bar."""
    names = (*METRICS, *methods)
    bar = st.progress(0.0)
    runs = {}
    for i, m in enumerate(names):
        label = f"NMC ({m})" if m in METRICS else method_label(m)
        bar.progress(i / len(names), text=f"Adding the classes task by task: {label} ({i + 1} of {len(names)})…")
        runs[m] = _incremental_run(ctx.fid, n_tasks, order, ctx.test_size, ctx.seed, m, ctx.X, ctx.y)
    bar.empty()
    return runs


@st.cache_data(max_entries=16, show_spinner="Scoring images against the known classes…")
def unknown(fid: str, unknown: tuple, test_size: float, seed: int, _X, _y):
    return unknown_class_ood(_X, _y, list(unknown), test_size=test_size, seed=seed)


@st.cache_data(max_entries=32, show_spinner="TEEN over random draws…")
def teen(fid: str, base: tuple, k: int, alpha: float, tau: float, draws: int, seed: int, test_size: float, _X, _y):
    return teen_repeated(_X, _y, list(base), k, alpha, tau, draws=draws, seed=seed, test_size=test_size)


@st.cache_data(max_entries=32, show_spinner="TEEN fusion-weight sweep…")
def teen_sweep(fid: str, base: tuple, k: int, tau: float, draws: int, seed: int, test_size: float, _X, _y):
    return teen_alpha_sweep(_X, _y, list(base), k, tau, draws=draws, seed=seed, test_size=test_size)


@st.cache_data(max_entries=16, show_spinner="Encoding the prompts with the text tower…")
def text_prototypes(backbone: str, weights_id: str, names: tuple, templates: tuple) -> np.ndarray:
    b = get_backbone(backbone)
    texts = sorted({t.format(n) for t in templates for n in names})
    emb = dict(zip(texts, b.encode_text(texts).float().cpu().numpy()))  # one batch for all prompts
    return prompt_prototypes(lambda batch: np.stack([emb[t] for t in batch]), list(names), list(templates))


@st.cache_resource(max_entries=8, show_spinner=False)
def pca_map(fid: str, _X: np.ndarray):
    return make_projector(ProjectionParams("pca", n_components=2)).fit(_X)

