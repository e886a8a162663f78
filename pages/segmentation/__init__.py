"""Segmentation from frozen patch tokens (page script: page.py).

- ``context``: :class:`~pages.segmentation.context.SegContext`, the picture, its tokens, the other pictures, the settings;
- ``cache``: per-image work (tokens, attention, k-means, co-segmentation, normalized cut);
- ``widgets``: masks drawn and downloaded (patch grid or pixel-sharp);
- one module per tab (``tab_*.py``), each with ``draw(ctx)``; the click view is a fragment.
"""
