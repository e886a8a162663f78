"""The per-class table: how much each concept adds to each class's nearest-class-mean score, as a labelled heat
map (classes x concepts, with the saved names), the decomposition sentence as its caption, and the numbers."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.concepts.context import ConceptsContext
from pages.concepts.figures import class_table_heatmap


def draw(ctx: ConceptsContext) -> None:
    a = ctx.atlas
    st.subheader("Which concepts carry each class")
    if a.table is None:
        st.info(f"No class table: {a.table_note}.")
        return
    labels = [a.label(j) for j in range(a.k)]
    st.plotly_chart(class_table_heatmap(a.table, labels, title="Concept terms of each class's mean cosine score to its "
                                        "prototype (outlined: the class's top concept)"),
                    key="cc_table", config={"displaylogo": False})
    st.caption(f"{a.decomposition()[:1].upper()}{a.decomposition()[1:]}. A cell is one concept's term, averaged over the "
               "class's images; a row's terms, the offset and the residual (what the concepts do not reconstruct) sum "
               "to the class's mean score, on the row label.")
    with st.expander("The table in numbers"):
        tb = a.table
        df = pd.DataFrame(tb.contributions, columns=labels)
        df.insert(0, "class", tb.classes)
        df.insert(1, "images", tb.counts)
        df["offset"], df["residual"], df["score"] = tb.offset, tb.residual, tb.score
        st.dataframe(df, hide_index=True, key="cc_table_df")
