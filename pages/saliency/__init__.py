"""Saliency: what in one picture drives a backbone (page script: page.py).

- ``context``: :class:`~pages.saliency.context.SalContext`, the picture, the backbone and the display settings;
- ``cache``: per-image work (input, attention, maps, tokens, scores), keyed by backbone, image sha256 and size;
- ``targets``: what a map explains (a head's class, a class prototype, a text prompt);
- ``widgets``: downloads and warnings the tabs share;
- one module per tab (``tab_*.py``), each with ``draw(ctx)``.
"""
