"""Compare: two to four backbones on the same images (page script: page.py).

- ``context``: :class:`~pages.compare.context.CmpContext`, the backbones and their features;
- ``cache``: cached work keyed by the backbones' names and the dataset's identity;
- ``figures``: plotly / PIL figures (no Streamlit: testable), ``widgets``: small shared helpers;
- one module per section (``section_*.py``), each with ``draw(ctx, ...)``.
"""
