"""Metrics section: accuracies, few-shot, silhouette and speed of every source, best per column in green;
each accuracy's 95 % interval and whether the best source can be told apart from the runner-up."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.compare.comparison import Comparison
from core.compare.metrics import ACCURACIES, accuracy_verdicts, best_per_column, columns, silhouette_sample_size
from pages.compare import cache, widgets
from pages.compare.context import CmpContext

BEST_STYLE = "background-color: #c8e6c9; font-weight: 600"


def draw(ctx: CmpContext) -> Comparison | None:
    st.header("Metrics", divider="gray")
    cmp: Comparison | None = None
    if not ctx.labelled:
        st.info("Accuracies, few-shot, silhouette and agreement need class labels (a folder per class, uploads with "
                "class names, or an imported set with a label column). CKA, the indices and the maps below work "
                "without them.")
    else:
        try:
            cmp = cache.comparison(ctx)
        except ValueError as e:
            st.error(f"Cannot compute the metrics on this dataset: {e}")
        if cmp is not None:
            cols = columns(cmp.shots)
            raw = pd.DataFrame([r.as_dict() for r in cmp.rows])[[c.key for c in cols]]
            best = best_per_column(raw.to_dict("records"), cols)
            shown = raw.rename(columns={c.key: c.label for c in cols})

            def _highlight(df: pd.DataFrame) -> pd.DataFrame:
                style = pd.DataFrame("", index=df.index, columns=df.columns)
                for c in cols:
                    for i in best.get(c.key, ()):
                        style.iloc[i, df.columns.get_loc(c.label)] = BEST_STYLE
                return style

            text_cols = ("backbone", "family", "dim", "params", "speed_source")
            fmt: dict[str, str | Callable[[float], str]] = {c.label: "{:.3f}" for c in cols if c.key not in text_cols}
            fmt.update({"img/s": "{:.1f}", "params": lambda v: f"{v / 1e6:.1f} M"})
            shown, fmt = widgets.missing_as_text(shown, fmt)  # "n/a": an imported set's params and speed
            st.dataframe(shown.style.apply(_highlight, axis=None).format(fmt), hide_index=True,
                         column_config={c.label: st.column_config.Column(help=c.help, width=widgets.col_width(c.key),
                                                                         pinned=c.key == "backbone") for c in cols},
                         key="cmp_table")
            r0 = cmp.rows[0]
            st.caption(f"{r0.n_images:,} images, {r0.n_classes} classes"
                       + (f" (labels of {ctx.aligned.label_source})" if ctx.imported_names else "")
                       + ". Accuracies: `core.classify.evaluation.evaluate` defaults "
                       f"({'a stratified 30 % hold-out per class, seed 0' if r0.protocol == 'split' else r0.protocol}"
                       "), the same split for every source; few-shot: NMC with k images per class, mean and ± std over "
                       f"10 draws; silhouette: cosine distance, {widgets.sample_note(silhouette_sample_size(r0.n_images), r0.n_images)}. "
                       "Green: best in the column (params: fewest). Click a header to sort."
                       + (f" An imported set has no model here: its params and img/s are n/a ({', '.join(ctx.imported_names)})."
                          if ctx.imported_names else ""))
            _uncertainty(cmp)
            c1, c2, _ = st.columns([1, 1, 4])
            c1.download_button("⬇ Table (CSV)", widgets.csv(pd.DataFrame([r.as_dict() for r in cmp.rows])),
                               "compare_metrics.csv", "text/csv", on_click="ignore", key="dl_cmp_csv")
    return cmp


def _uncertainty(cmp: Comparison) -> None:
    """Each accuracy with its 95 % Wilson interval, and one verdict per classifier (paired McNemar test)."""
    n_test = int(cmp.rows[0].test_correct["nmc"][0].size) if "nmc" in cmp.rows[0].test_correct else 0
    st.markdown(f"**Accuracy with its 95 % interval** ({n_test:,} test images)" if n_test else
                "**Accuracy with its 95 % interval**")
    cells = {"backbone": [r.backbone for r in cmp.rows]}
    for m, name in ACCURACIES:
        cells[name] = [f"{getattr(r, f'{m}_accuracy'):.2f} [{r.accuracy_ci[m][0]:.2f}, {r.accuracy_ci[m][1]:.2f}]"
                       if m in r.accuracy_ci else "n/a" for r in cmp.rows]
    st.dataframe(pd.DataFrame(cells), hide_index=True, key="cmp_acc_ci")
    for line in accuracy_verdicts(cmp.rows):
        st.caption(line)
