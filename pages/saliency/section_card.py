"""The report card of every saliency method on a sample of the dataset (or all of it), computed in the
background (:mod:`pages.saliency.report_jobs`): a progress bar with an ETA and Cancel while it runs, then
the table (mean and 95% bootstrap interval per score, the best method of each score highlighted), the
verdicts that pair the best method with the runner-up and the random control, a per-class breakdown, and
the example map of the row picked in the table."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import streamlit as st

from core import render
from core.errors import Cancelled, UnsupportedOperationError
from core.explain.report import CONTROL, HIGHER_IS_BETTER, METRICS, ReportCard, example_map
from core.render import ColorScale
from pages.saliency import report_jobs
from pages.saliency.context import SalContext
from pages.saliency.report_jobs import CardKey
from pages.saliency.widgets import BIG
from pages.shared import jobs
from pages.shared.resources import get_store
from pages.shared.server import one_line

SIZES = (1, 4, 8, 16, 32, 50, 100, 200, 500, 1000)  # the sample sizes offered (up to the dataset's size)
DEFAULT = 8
BEST = "background-color: rgba(46, 160, 67, 0.28); font-weight: 600"
EXPLAIN = ("Each score is the mean over the images with its 95% bootstrap interval. **mprt_spearman / mprt_ssim**: "
           "similarity to the map of the fully re-initialised model (lower is better: a map that explains the model "
           "changes when the model does); **road** (remove and debias, higher is better); **deletion_auc** (lower is "
           "better) / **insertion_auc** (higher is better); **pointing_game** and **relevance_mass** against the "
           "picture's alpha channel (higher is better; images without one are left out of those two). The best "
           "method of each score is highlighted. The same numbers as `backbone-lens saliency-report`.")


def _sizes(n: int) -> list[int]:
    return sorted({v for v in SIZES if v < n} | {n})


def draw(ctx: SalContext) -> None:
    sel, b, spec, size = ctx.sel, ctx.b, ctx.spec, ctx.size
    records = sel.dataset.records
    st.subheader(f"Report card: {spec.name}")
    st.caption(EXPLAIN)
    if not records:
        st.info("The report card scores the methods on the dataset's pictures, and this dataset has none.")
        return
    options = _sizes(len(records))
    limit = st.select_slider("Images scored", options, value=min(DEFAULT, len(records)), key="sal_card_n",
                             format_func=lambda v: f"all {v:,}" if v == len(records) else f"{v:,}",
                             help="A sample taken round robin over the classes. Every picture's scores are cached as "
                                  "it is done: a larger sample, or the same one again, computes only what is new.")
    key = CardKey(spec.name, spec.weights_id, sel.dataset_key, size, int(limit))
    pool = report_jobs.pool()
    fut = report_jobs.job(key)
    if fut is None or (fut.done() and (fut.cancelled() or isinstance(fut.exception(), Cancelled))):
        if jobs.cancelled(key):
            p = report_jobs.progress(key)
            kept = f": {p.done} of {p.total} images scored and cached" if p is not None else ""
            st.info(f"Cancelled{kept}. **Resume** scores only the others.", icon=":material/pause_circle:")
            jobs.resume_button(key, help="The scored pictures are read back from the cache.")
            return
        if not st.button(f"Compute the report card on {limit:,} image(s)", key="sal_card_go", type="primary",
                         icon=":material/play_arrow:",
                         help="Runs in the background: you can open other tabs or pages and come back."):
            return
        fut = report_jobs.start(b, records, key)
    if not fut.done():
        _follow(key, pool)
        return
    try:
        card = fut.result()
    except (ValueError, UnsupportedOperationError) as e:
        st.error(f"Cannot compute the report card: {one_line(e)}")
        if st.button("Try again", key="sal_card_retry"):
            pool.forget(key)
            st.rerun()
        return
    _show(ctx, card)


def _follow(key: CardKey, pool) -> None:
    """The running card's progress, redrawn every second; the page reruns when it ends."""

    @st.fragment(run_every=1.0)
    def bar() -> None:
        fut = report_jobs.job(key)
        if fut is None or fut.done():
            st.rerun(scope="app")
        p = report_jobs.progress(key)
        if p is None:
            st.progress(0.0, text="Preparing the card (embeddings for the prototypes, the randomised model)…")
        else:
            eta = p.eta_s(time.time())
            left = f", about {eta:.0f} s left" if eta is not None else ""
            st.progress(min(p.done / max(p.total, 1), 1.0),
                        text=f"{p.done:,} / {p.total:,} images: {p.message} ({time.time() - p.started:.0f} s{left})")
        jobs.cancel_button(key, pool, help="Stops after the picture being scored; what is scored stays cached.")

    bar()


def _cell(mean: float, lo: float, hi: float) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def _table(card: ReportCard) -> pd.DataFrame:
    """Mean [95% interval] per score, two decimals (every column fits the page; the JSON has every digit)."""
    rows = card.rows()
    return pd.DataFrame({"method": [r["method"] for r in rows],
                         **{m: [_cell(r[f"{m}_mean"], r[f"{m}_low"], r[f"{m}_high"]) for r in rows] for m in METRICS}})


def _style(df: pd.DataFrame, card: ReportCard):
    best = card.best()

    def highlight(col: pd.Series) -> list[str]:
        return [BEST if best.get(col.name) == m else "" for m in df["method"]]

    return df.style.apply(highlight, subset=[m for m in METRICS if m in best])


def _show(ctx: SalContext, card: ReportCard) -> None:
    df = _table(card)
    picked = st.dataframe(_style(df, card), hide_index=True, key="sal_card_table", on_select="rerun",
                          selection_mode="single-row", height=36 * (len(df) + 1) + 4,
                          column_config={"method": st.column_config.TextColumn("method", width="medium")})
    st.caption(f"{len(card.images):,} image(s) ({card.n_masks} with an object mask) at {card.size} px on {card.device}, "
               f"{card.seconds:.0f} s ({card.n_computed} scored now, {card.n_cached} read from the cache). ROAD "
               f"percentiles {list(card.settings.road_percentiles)}, deletion / insertion in "
               f"{card.settings.deletion_steps} steps to a {card.settings.baseline} baseline. Click a row for its "
               "example map." + "".join(f" Skipped {m}: {why}." for m, why in card.skipped.items()))
    reasons = [f"**{r['method']}**, {m}: {why}" for r in card.rows() for m, why in r["reasons"].items()]
    if reasons:
        with st.expander(f"Why {len(reasons)} cell(s) say n/a"):
            st.markdown("\n".join(f"- {x}" for x in reasons))
    verdicts = card.verdicts()
    if verdicts:
        st.markdown("**Can the best method be told apart?** (paired over the same images)")
        st.markdown("\n".join(f"- {v.statement()}" for v in verdicts))
    _example(ctx, card, picked.selection.rows if picked is not None else [])
    if len(set(card.labels)) > 1:
        with st.expander("Per class (mean over the class's images)"):
            pc = pd.DataFrame(card.per_class())
            st.dataframe(pc.rename(columns={f"{m}_mean": m for m in METRICS}).round(3), hide_index=True,
                         key="sal_card_per_class")
    st.download_button("⬇ JSON", card.to_json(), f"saliency_report_{card.backbone}_{card.size}_{len(card.images)}.json",
                       "application/json", on_click="ignore", key="dl_report")


def _example(ctx: SalContext, card: ReportCard, rows: list[int]) -> None:
    methods = list(card.scores)
    method = methods[rows[0]] if rows else next(iter(card.best().values()), methods[0])
    c1, c2 = st.columns([3, 2])
    image = c2.selectbox("Example picture", card.images, key="sal_card_image",
                         help="One of the card's pictures: its map as the card computed it, with its scores.")
    try:
        ex = _example_map(ctx, card, method, image)
    except ValueError as e:
        c1.error(one_line(e))
        return
    scale = ColorScale(0.0, 1.0, ctx.cmap, "saliency (scaled to [0, 1])")
    heat = np.asarray(ex.map, dtype=np.float32)
    lo, hi = float(heat.min()), float(heat.max())
    heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    c1.image(render.heat_figure(ex.picture, heat, scale, alpha=ctx.alpha, title=f"{method}: {ex.target}",
                                max_side=BIG))
    rows_ = [{"score": m, "this picture": ex.scores[m], "better": "higher" if HIGHER_IS_BETTER[m] else "lower",
              "random control": card.scores[CONTROL][m][card.images.index(image)] if CONTROL in card.scores else math.nan}
             for m in METRICS]
    c2.dataframe(pd.DataFrame(rows_).round(3), hide_index=True, key="sal_card_example_scores")
    c2.caption(f"**{method}** on {image}, explaining **{ex.target}**" + ("" if rows else
               " (the method best on most scores; click a row of the table for another)"))


def _example_map(ctx: SalContext, card: ReportCard, method: str, image: str):
    memo = st.session_state.setdefault("_sal_card_examples", {})
    k = (card.backbone, card.size, ctx.sel.dataset_key, method, image)
    if k not in memo:
        if len(memo) > 16:
            memo.pop(next(iter(memo)))
        with st.spinner(f"Computing {method} on {image}…"):
            memo[k] = example_map(ctx.b, ctx.sel.dataset.records, card, method, image, get_store())
    return memo[k]
