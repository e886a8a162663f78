"""Concepts: the concept atlas of a dataset for one backbone (page script: page.py).

- ``context``: :class:`~pages.concepts.context.ConceptsContext`, the atlas, the images and the settings;
- ``cache``: the atlas figure, cached per atlas, names and concepts shown;
- ``figures``: the per-class table as a labelled heat map (plotly, no Streamlit);
- one module per section (``section_*.py``), each with ``draw(ctx)``.

The atlas is computed on a worker thread with a progress bar (``pages.shared.concept_jobs``, shared with the
Saliency page's concept-map tab).
"""
