"""The Discover page: category discovery on frozen embeddings (core.discover).

- ``page``: the script (sidebar, the features of the dataset as read, the two tabs);
- ``context``: :class:`~pages.discover.context.DiscContext`, what the tabs read;
- ``cache``: the runs on a worker thread (keyed by features and settings) with their progress, thumbnails;
- ``figures``: the k curve and the known classes' growth (plotly);
- ``widgets``: a run's button, progress, cancel and one-line errors;
- ``tab_discover``: new clusters of the unlabelled images, named and accepted as classes;
- ``tab_evaluate``: All / Old / New accuracy with classes of a labelled set hidden.
"""
