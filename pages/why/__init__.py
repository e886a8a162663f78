"""Why: relational questions about a backbone's embedding space (page script: page.py).

- ``context``: :class:`~pages.why.context.WhyContext`, the backbone and the dataset's embeddings;
- ``pair``: which pair is open (a hand-off from another page, the link's ``?a=&b=``, or the two
  selectboxes, first image and its nearest neighbour by default);
- one module per tab (``tab_*.py``), each with ``draw(ctx)``, listed in ``page.TABS``.
"""
