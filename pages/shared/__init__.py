"""What every page shares, one concern per module (the only Streamlit glue besides the pages):

- ``server``: this server's policy (data roots, limits) and the one-line error convention;
- ``resources``: loaded backbones, the feature store, the feature memo, features with a progress bar;
- ``datasets``: the sample stamps, folders under the data roots, uploads, imported embedding sets;
- ``selection``: :class:`Selection`, what the sidebar chose (a frozen value every page reads);
- ``links``: the shareable link (``?dataset=&backbone=&...``), read once per session, kept in step;
- ``sidebar``: the sidebar widgets that make a :class:`Selection`;
- ``picking``: one image to explain, from the dataset or uploaded;
- ``labels``: names accepted on the Discover page, a label override the sidebar applies for every page.
- ``jobs``: long jobs owned by the browser session (Cancel / Resume buttons, closed tabs released).
"""
