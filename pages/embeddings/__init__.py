"""Embeddings: a PCA / UMAP / t-SNE map of the global embeddings (page script: page.py).

- ``cache``: the fits (PCA inline, UMAP / t-SNE on a worker thread), placing uploads, thumbnails;
- ``view``: :class:`~pages.embeddings.view.MapView`, everything the figure and the panels draw;
- ``figure``: the class-coloured scatter with the opened image and its neighbours ringed;
- ``panels``: the opened image with its nearest neighbours, a selection's thumbnail grid, the export.
"""
