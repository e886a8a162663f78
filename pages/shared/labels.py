"""Names accepted on the Discover page: a small, explicit label override, kept per dataset in the session.

Accepting a name for a discovered cluster gives that name, as a label, to the cluster's unlabelled images
(``core.discover.Discovery.named_labels``). The sidebar applies the accepted names where it builds the
:class:`~pages.shared.selection.Selection` (:func:`apply`), so every page sees one more class at once: the
Prototypes page's classifiers, the Embeddings map's colours. ``Selection.base`` keeps the dataset as it
was read, which is what the Discover page clusters. Nothing is written to disk; "Forget accepted names"
(:func:`forget`) undoes it.

Records are identified by (name, sha256) within a dataset, so the override survives images that failed
to decode (they are not in the features) and a relabelled dataset keeps the base dataset's order. The
last discovery shown for a dataset is kept too (:func:`remember_discovery`), so the Embeddings map can
colour its new clusters apart from the known classes (:func:`discovery_colouring`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import streamlit as st

from core import render
from core.io.images import Dataset, ImageRecord, relabel

_ACCEPTED = "_accepted_names"    # session: base dataset key -> _Names
_RELABELLED = "_relabelled_sets"  # session: base dataset key -> (version, relabelled Dataset)
_DISCOVERY = "_discovery_maps"    # session: base dataset key -> DiscoveryMap
_LABELLED_PART = "_labelled_parts"  # session: dataset key -> its labelled images as a Dataset
RecordId = tuple[str, str]        # (name, sha256)


def record_id(r: ImageRecord) -> RecordId:
    return r.name, r.sha256


@dataclass(frozen=True)
class Accepted:
    """One accepted name: ``name`` given to ``n`` unlabelled images; ``note`` says where from
    (e.g. "new 2 of mobilenetv2, k=auto")."""

    name: str
    n: int
    note: str


@dataclass
class _Names:
    labels: dict[RecordId, str] = field(default_factory=dict)  # the accepted label of each renamed image
    log: list[Accepted] = field(default_factory=list)
    version: int = 0


def _names(key: str) -> _Names | None:
    return st.session_state.get(_ACCEPTED, {}).get(key)


def accepted(key: str) -> list[Accepted]:
    """The names accepted for the dataset ``key`` (``Dataset.key`` as read, before any name), oldest first."""
    got = _names(key)
    return list(got.log) if got else []


def accept(key: str, name: str, records: Sequence[ImageRecord], note: str) -> None:
    """Give ``name`` to ``records`` (unlabelled images of the dataset ``key``); a later name for the same
    image replaces the earlier one."""
    store = st.session_state.setdefault(_ACCEPTED, {})
    got = store.setdefault(key, _Names())
    for r in records:
        got.labels[record_id(r)] = name
    got.log.append(Accepted(name, len(records), note))
    got.version += 1


def forget(key: str) -> None:
    """Drop every name accepted for the dataset ``key`` (the page shows its labels as read again)."""
    st.session_state.get(_ACCEPTED, {}).pop(key, None)
    st.session_state.get(_RELABELLED, {}).pop(key, None)


def apply(ds: Dataset) -> Dataset:
    """``ds`` with the accepted names as labels of its unlabelled images (``ds`` itself when none), made
    once per change of the names (a relabelled dataset has its own ``key``, so every cache sees it)."""
    got = _names(ds.key)
    if not got or not got.labels:
        return ds
    memo = st.session_state.setdefault(_RELABELLED, {})
    hit = memo.get(ds.key)
    if hit is not None and hit[0] == got.version:
        return hit[1]
    out = relabel(ds, [r.label or got.labels.get(record_id(r), "") for r in ds.records])
    memo[ds.key] = (got.version, out)
    return out


def labelled_part(ds: Dataset) -> Dataset:
    """The labelled images of ``ds`` (``ds`` itself when every image has a label), made once per dataset."""
    if all(r.label for r in ds.records):
        return ds
    memo = st.session_state.setdefault(_LABELLED_PART, {})
    if ds.key not in memo:
        memo.clear()  # one dataset at a time is enough
        memo[ds.key] = Dataset(records=[r for r in ds.records if r.label], failures=list(ds.failures), root=ds.root)
    return memo[ds.key]


def _forget_clicked(key: str) -> None:
    forget(key)


def forget_button(key: str, *, where=st, widget_key: str = "forget_names") -> None:
    """A "Forget accepted names" button (a callback, so the page redraws with the labels as read)."""
    where.button("Forget accepted names", key=widget_key, on_click=_forget_clicked, args=(key,),
                 icon=":material/undo:", help="The images named on the Discover page become unlabelled again.")


def sidebar_note(base: Dataset) -> None:
    """In the sidebar: which names are accepted for this dataset, and the button that forgets them."""
    got = accepted(base.key)
    if not got:
        return
    names = sorted({a.name for a in got})
    st.sidebar.caption(f"Named on the Discover page: **{', '.join(names)}** "
                       f"({sum(a.n for a in got):,} images; every page uses these labels).")
    forget_button(base.key, where=st.sidebar, widget_key="forget_names_sidebar")


# ---- the last discovery, for the Embeddings map ----------------------------------------------------------
@dataclass(frozen=True)
class DiscoveryMap:
    """Each image's cluster in the last discovery shown for a dataset.

    Attributes:
        run: the run's identity (features key and settings), so it is stored once.
        cluster: image -> its cluster's name (a known class, or "new 1" ...), unlabelled images only.
        known: the known classes; new: the new clusters' names, largest first.
        note: what made it (backbone, k).
    """

    run: tuple
    cluster: dict[RecordId, str]
    known: tuple[str, ...]
    new: tuple[str, ...]
    note: str


def remember_discovery(key: str, run: tuple, records: Sequence[ImageRecord], names: Sequence[str],
                       known: Sequence[str], new: Sequence[str], note: str) -> None:
    """Keep the discovery ``run`` of the dataset ``key``: ``names[i]`` is the cluster of ``records[i]``
    (one per unlabelled image)."""
    store = st.session_state.setdefault(_DISCOVERY, {})
    if key in store and store[key].run == run:
        return
    store[key] = DiscoveryMap(run, {record_id(r): n for r, n in zip(records, names)}, tuple(known), tuple(new), note)


def discovery_colouring(key: str, records: Sequence[ImageRecord]) -> tuple[list[str], dict[str, str], str] | None:
    """The map labels of ``records`` after the last discovery of the dataset ``key``, or None without one.

    Returns:
        ``(labels, colours, note)``: a labelled image keeps its label (an accepted name included), an
        unlabelled one takes its cluster's name; colours: known classes as everywhere else, new clusters
        and accepted names apart (``core.render.discovery_colours``).
    """
    d = st.session_state.get(_DISCOVERY, {}).get(key)
    if d is None:
        return None
    labels = [r.label or d.cluster.get(record_id(r), "(unlabelled)") for r in records]
    palette = render.discovery_colours(list(d.known), list(d.new))
    came_from: dict[str, Counter] = {}  # accepted name -> the clusters its images were in
    for r, lab in zip(records, labels):
        if lab not in palette and record_id(r) in d.cluster:
            came_from.setdefault(lab, Counter())[d.cluster[record_id(r)]] += 1
    present = set(labels)
    colours = {n: c for n, c in palette.items() if n in d.known or n in present}
    wider = render.discovery_colours([], [str(i) for i in range(len(d.new) + len(present))]).values()
    spare = iter([c for c in wider if c not in palette.values()])  # for a name none of whose images this run saw
    for name in sorted(present - set(palette) - {"(unlabelled)"}):  # an accepted name: its cluster's colour
        src = came_from.get(name)
        colours[name] = palette[src.most_common(1)[0][0]] if src else next(spare)
    if "(unlabelled)" in present:  # e.g. an image this discovery's backbone could not read
        colours["(unlabelled)"] = "#9e9e9e"
    return labels, colours, d.note
