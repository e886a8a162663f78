"""Prototypes: class means of frozen features as a classifier (page script: page.py).

- ``context``: :class:`~pages.prototypes.context.ProtoContext`, the features and the shared settings every tab reads;
- ``cache``: the cached computations, keyed by the features' identity (``FeatureSet.key``) and the parameters;
- ``figures``: the heat map, thumbnails and percentages the tabs share;
- one module per tab (``tab_*.py``), each with ``render(ctx)``.
"""
