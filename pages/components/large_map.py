"""The Embeddings view for large sets (imported embeddings, or more images than a plotly scatter
carries well): a level-of-detail point map (``pointmap.js``), hover thumbnails, a click that opens
the image with its 10 nearest neighbours (exact cosine over the full vectors, block by block), and a
box or lasso selection that opens a thumbnail grid of its points (the first 200, with the count and
the classes: :func:`core.geometry.regions.points_in_polygon` over the map's coordinates).

Projections are fitted on a sample and the other points placed with ``transform``
(core.projection.sampled); for imported sets the result is cached on disk beside the vectors, so
the second opening of a map reads one ``[N, 2]`` file. UMAP / t-SNE run on a worker thread with
progress while the PCA map is shown.
"""
from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import streamlit as st

from core.cancel import CancelLike
from core.errors import Cancelled, ImageDecodeError
from core.geometry.chunked import chunked_cosine_neighbours
from core.geometry.regions import points_in_polygon
from core.io.images import decode_image, thumbnail, to_data_uri
from core.projection.jobs import JobPool
from core.projection.projectors import ProjectionParams
from core.projection.sampled import SAMPLE, cached_projection, project_sampled
from core.render import hex_colours
from pages.components.pointmap import map_state, pack, point_map
from pages.shared import jobs
from pages.shared.links import link_param
from pages.shared.server import log, one_line, policy

METHODS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
FULL_FIT_MAX = {"pca": 200_000, "umap": 50_000, "tsne": 5_000}  # above: fit on a sample + transform
K = 10          # neighbours of an opened point
HOVER_PX = 96   # hover thumbnail side
VIEW_PX = 64    # in-map thumbnail side
MAP_KEY = "emb_bigmap"
PICK = "emb_big_pick"
SEL = "emb_big_sel"  # (map key, kind, polygon, selected point indices)
SEL_MAX = 200   # thumbnails shown for a selection
SEL_PX = 72     # their side


@dataclass(frozen=True)
class MapSource:
    """What the large view needs to know about a set of embeddings.

    Attributes:
        fid: identity of the vectors (cache key).
        title: shown above the map.
        X: ``[N, D]`` vectors (a float16 memory map for imported sets).
        norms: ``[N]`` L2 norms of ``X``'s rows.
        codes: ``[N]`` class index per point into ``classes``.
        classes: class names (``""`` = unlabelled).
        name: display name (path) of point i.
        read: the image file's bytes for point i (raises OSError when not readable).
        proj_dir: where projections are cached on disk (None: in memory only).
    """

    fid: str
    title: str
    X: np.ndarray
    norms: np.ndarray
    codes: np.ndarray
    classes: tuple[str, ...]
    name: Callable[[int], str]
    read: Callable[[int], bytes]
    proj_dir: Path | None = None

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


# ---- cached work --------------------------------------------------------------------------------
@st.cache_resource
def _jobs() -> JobPool:
    return JobPool(max_workers=1, max_done=8)


@st.cache_resource
def _progress() -> dict:
    """(fid, key) -> (done, total, phase) of running background projections."""
    return {}


@st.cache_resource
def _coords_memo() -> dict:
    return {}


def _sample_size(method: str, n: int) -> int:
    return n if n <= FULL_FIT_MAX[method] else SAMPLE[method]


def _placement(method: str, sample: int, n: int) -> str:
    """UMAP of a large set: the other points by their nearest sample points (umap-learn's transform
    would take about 50 minutes for a million points here); PCA and t-SNE: the projector's own."""
    return "neighbours" if method == "umap" and sample < n else "transform"


def _compute(src: MapSource, params: ProjectionParams, sample: int, key: str, prog: dict,
             cancel: CancelLike | None = None) -> np.ndarray:
    """The map, reporting into ``prog`` (:func:`_progress`, fetched on the script thread: a worker
    thread has no script context); ``cancel`` (set when every session waiting for it cancelled or
    closed) stops it before the fit or between placed blocks."""
    prog[(src.fid, key)] = (0, src.n, f"fitting {METHODS[params.method]} on {sample:,} points")

    place = _placement(params.method, sample, src.n)

    def report(done: int, total: int) -> None:
        prog[(src.fid, key)] = (done, total, "placing the other points" + (
            " by their nearest sample points" if place == "neighbours" else " with transform"))

    try:
        if src.proj_dir is not None:
            path = src.proj_dir / f"{key.replace('/', '_').replace('|', '_').replace(' ', '')}.npy"
            return cached_projection(path, src.X, params, sample=sample, progress=report, place=place, cancel=cancel)
        return project_sampled(src.X, params, sample=sample, progress=report, place=place, cancel=cancel)
    finally:
        prog.pop((src.fid, key), None)


def _key(src: MapSource, params: ProjectionParams, sample: int) -> str:
    return f"{params.key()}|sample={sample}|{_placement(params.method, sample, src.n)}"


def _coords(src: MapSource, params: ProjectionParams, sample: int) -> np.ndarray | Future:
    """The map, from memory, disk, or computed: PCA here, UMAP / t-SNE as a Future owned by this
    session (pages.shared.jobs)."""
    key = _key(src, params, sample)
    memo = _coords_memo()
    if (src.fid, key) in memo:
        return memo[(src.fid, key)]
    if params.method == "pca":
        with st.spinner(f"PCA of {src.n:,} points (fitted on {sample:,}; cached for next time)…"):
            out = _compute(src, params, sample, key, _progress())
    else:
        fut = jobs.submit(_jobs(), (src.fid, key), _compute, src, params, sample, key, _progress(), pass_cancel=True)
        if not fut.done():
            return fut
        out = fut.result()  # raises the fit's error
    memo[(src.fid, key)] = out
    while len(memo) > 6:
        memo.pop(next(iter(memo)))
    return out


@st.cache_resource
def _decoded() -> OrderedDict:
    """(fid, point) -> decoded picture (or None: not readable), the last 64: the hover thumbnail, the
    opened image and the in-map thumbnail of one point share one decode."""
    return OrderedDict()


def _picture(src: MapSource, i: int):
    memo = _decoded()
    key = (src.fid, i)
    if key in memo:
        memo.move_to_end(key)
        return memo[key]
    try:
        img = decode_image(src.read(i), src.name(i))
    except (ImageDecodeError, OSError, ValueError):
        img = None
    memo[key] = img
    while len(memo) > 64:
        memo.popitem(last=False)
    return img


@st.cache_data(max_entries=20_000, show_spinner=False)
def _thumb_url(fid: str, i: int, side: int, _src: MapSource) -> str | None:
    """The picture as a JPEG data URL of at most ``side`` px, or None when the file is not readable."""
    img = _picture(_src, i)
    return None if img is None else to_data_uri(thumbnail(img, side), "JPEG", quality=80)


def _image_or_placeholder(where, src: MapSource, i: int, side: int, caption: str | None = None) -> None:
    url = _thumb_url(src.fid, i, side, src)
    if url is None:
        where.markdown(f"<div style='width:{side}px;height:{side}px;background:#eee;color:#777;display:flex;"
                       f"align-items:center;justify-content:center;text-align:center;font-size:12px'>"
                       f"image not readable</div>", unsafe_allow_html=True)
        if caption:
            where.caption(caption)
    else:
        where.image(url, caption=caption, width=side)


# ---- the view -----------------------------------------------------------------------------------
_lock = threading.Lock()


def show_large_map(src: MapSource, height: int = 640) -> None:
    """Controls, the point map and the opened point's panel for ``src``."""
    ss = st.session_state
    if "emb_method" not in ss:
        ss["emb_method"] = link_param("method") if link_param("method") in METHODS else "pca"
    if PICK not in ss and (p := link_param("point")) is not None and p.isdigit() and int(p) < src.n:
        ss[PICK] = (src.fid, int(p))
    method = cast(str, st.segmented_control("Projection", list(METHODS), format_func=lambda m: METHODS[m],
                                       required=True, default=None, key="emb_method",
                                  help="PCA: linear, exact, seconds. UMAP / t-SNE: non-linear, computed on a "
                                       "worker thread (PCA is shown meanwhile)."))
    st.query_params["method"] = method
    sample = _sample_size(method, src.n)
    params = ProjectionParams(method, n_components=2, metric="cosine", seed=0)
    if sample < src.n and method == "pca":
        st.caption(f"PCA axes fitted on a random sample of {sample:,} of the {src.n:,} points (the same axes as a "
                   f"full fit, to sampling error); every point is projected on them.")
    elif sample < src.n:
        how = ("each of the others lands at the weighted mean of its 10 nearest sample points' positions"
               if _placement(method, sample, src.n) == "neighbours" else "the others are placed by the fitted map")
        st.caption(f"A full {METHODS[method]} of {src.n:,} points is out of reach on a small machine, so it is fitted "
                   f"on a random sample of {sample:,} points on a worker thread and {how}. For a million points "
                   f"this takes minutes on 2 idle cores and up to about 40 minutes on a busy one: the progress is "
                   f"below, PCA is shown meanwhile, and the result is cached for the next visit.")
    key = _key(src, params, sample)
    job_key = (src.fid, key)
    res: np.ndarray | Future | None = None
    if method != "pca" and jobs.cancelled(job_key):  # this session cancelled it: PCA until asked again
        ss.get("emb_big_started", {}).pop(job_key, None)
        c_note, c_again = st.columns([4, 1], vertical_alignment="center")
        c_note.info(f"{METHODS[method]} cancelled: showing PCA.", icon=":material/cancel:")
        with c_again:
            jobs.resume_button(job_key, f"Compute {METHODS[method]}", help="Start the map again (on a worker thread).")
    else:
        try:
            res = _coords(src, params, sample)
        except Cancelled:  # released in the same instant (a race with another session): PCA now, again next run
            res = None
        except Exception as e:  # the fit or its cache file failed: one line, PCA kept, a retry
            log.warning("the %s map of %s failed", METHODS[method], src.fid, exc_info=True)
            st.error(f"{METHODS[method]} failed on these points: {type(e).__name__}: {one_line(e)}")
            if st.button("Retry", key="emb_big_retry"):
                _jobs().forget(job_key)
                st.rerun()
            if method == "pca":
                st.stop()  # no map to fall back on
    shown = method
    if isinstance(res, Future):
        started = ss.setdefault("emb_big_started", {}).setdefault(job_key, time.time())

        pending = res

        @st.fragment(run_every=1.0)
        def _wait() -> None:
            if pending.done() or jobs.cancelled(job_key):
                st.rerun()
            done, total, phase = _progress().get(job_key, (0, src.n, "queued"))
            c_bar, c_cancel = st.columns([4, 1], vertical_alignment="center")
            c_bar.progress(min(done / max(total, 1), 1.0),
                           text=f"{METHODS[method]}: {phase} ({done:,} / {total:,}, {time.time() - started:.0f} s); "
                                f"showing PCA meanwhile.")
            with c_cancel:
                jobs.cancel_button(job_key, _jobs(), f"Cancel {METHODS[method]}",
                                   help="Stop this map and keep PCA: it stops before its fit or between placed "
                                        "blocks (a fit under way runs to its end on its thread, its result "
                                        "discarded), unless another session is waiting for the same map.")

        _wait()
    if res is None or isinstance(res, Future):
        shown = "pca"
        res = _coords(src, ProjectionParams("pca", n_components=2, metric="cosine", seed=0), _sample_size("pca", src.n))
    coords = np.asarray(res, np.float32)  # [N, 2]
    _map_fragment(src, coords, f"{src.fid}|{shown}", METHODS[shown], height)


@st.cache_resource(max_entries=4, show_spinner=False)
def _binary(mkey: str, _coords: np.ndarray, _codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates and codes in the wire types, once per map."""
    return np.ascontiguousarray(_coords, "<f4"), np.ascontiguousarray(_codes, "<u2")


@st.fragment
def _map_fragment(src: MapSource, coords: np.ndarray, mkey: str, shown: str, height: int) -> None:
    ss = st.session_state
    state = map_state(MAP_KEY)
    click = state.get("click")
    if isinstance(click, int) and 0 <= click < src.n:
        ss[PICK] = (src.fid, click)
    fid_pick = ss.get(PICK)  # (map source, point): a point of another set is not opened here
    pick = fid_pick[1] if fid_pick and fid_pick[0] == src.fid and 0 <= fid_pick[1] < src.n else None
    nb = None
    if pick is not None:
        memo = ss.get("emb_big_nb")
        if memo and memo[0] == (src.fid, pick):  # hover / zoom reruns reuse the opened point's neighbours
            nb = memo[1]
        else:
            with _lock:  # one neighbour scan at a time over the shared memory map
                nb = chunked_cosine_neighbours(np.asarray(src.X[pick], np.float32), src.X, src.norms, k=K,
                                               exclude=[pick])
            ss["emb_big_nb"] = ((src.fid, pick), nb)
    sel = _selection(state.get("select"), coords, mkey)
    hover = state.get("hover")
    meta = {
        "fid": mkey, "n": src.n, "classes": list(src.classes), "colors": hex_colours(len(src.classes)),
        "height": height, "pick": pick, "nbrs": [] if nb is None else nb.indices[0].tolist(),
        "thumbs": {int(i): _thumb_url(src.fid, int(i), VIEW_PX, src) for i in (state.get("view") or [])[:200]
                   if 0 <= int(i) < src.n},
        "sel": None if sel is None else {"kind": sel[1], "poly": sel[2], "count": int(len(sel[3]))},
    }
    if isinstance(hover, int) and 0 <= hover < src.n:
        meta["hover"] = {"i": hover, "src": _thumb_url(src.fid, hover, HOVER_PX, src), "name": src.name(hover)}
    if state.get("loaded") != mkey:
        xy, codes = _binary(mkey, coords, src.codes)
        payload = pack(meta, xy, codes)
    else:
        payload = pack(meta)
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.markdown(f"**{shown} map · {src.title}** · {src.n:,} points, {src.X.shape[1]}-D")
        point_map(payload, key=MAP_KEY, height=height)
        st.caption("Scroll to zoom, drag to pan: the density view resolves into points and then into the "
                   "images themselves. Hover for a thumbnail; click to open an image with its nearest neighbours. "
                   "Box or Lasso (top left of the map): draw around points to see their thumbnails below.")
    if sel is not None:
        _selection_grid(src, sel[1], sel[3])
    with right:
        if pick is None:
            if "point" in st.query_params:
                del st.query_params["point"]
            st.markdown("Click a point in the map to open that image here with its "
                        f"{K} nearest neighbours (cosine, full {src.X.shape[1]}-D vectors, exact).")
            return
        st.query_params["point"] = str(pick)
        lab = src.classes[src.codes[pick]] or "(unlabelled)"
        _image_or_placeholder(st, src, pick, 320)
        st.markdown(f"**{src.name(pick)}** · class **{lab}** · point {pick:,}")
        assert nb is not None
        same = int(sum(src.codes[i] == src.codes[pick] for i in nb.indices[0]))
        st.caption(f"{same} of {len(nb.indices[0])} nearest neighbours share its class.")
        cols = st.columns(5)
        for j, (i, s) in enumerate(zip(nb.indices[0], nb.similarities[0])):
            i = int(i)
            c = cols[j % 5]
            _image_or_placeholder(c, src, i, 96)
            ok = src.codes[i] == src.codes[pick]
            c.markdown(f"<div style='font-size:12px;line-height:1.25;word-break:break-all'>"
                       f"<span style='color:{'#2ca02c' if ok else '#d62728'}'>{src.classes[src.codes[i]] or '—'}</span>"
                       f"<br>cos <b>{s:.3f}</b></div>", unsafe_allow_html=True)


# ---- box / lasso selection ------------------------------------------------------------------------
def _selection(trigger, coords: np.ndarray, mkey: str) -> tuple[str, str, list, np.ndarray] | None:
    """The selection of this map: a new region from the map's ``select`` trigger (or its clearing), else
    the one kept in the session for this map (a new projection drops it: its points moved)."""
    ss = st.session_state
    if isinstance(trigger, dict):
        if trigger.get("clear"):
            ss.pop(SEL, None)
        else:
            try:
                poly = np.asarray(trigger.get("poly"), dtype=np.float64)  # [M, 2] map coordinates
                inside = points_in_polygon(coords, poly)
            except (TypeError, ValueError):
                inside = None  # a malformed region from the browser: nothing selected
            if inside is not None:
                kind = "box" if trigger.get("kind") == "box" else "lasso"
                ss[SEL] = (mkey, kind, poly.tolist(), np.flatnonzero(inside).astype(np.int32))
    got = ss.get(SEL)
    return got if got is not None and got[0] == mkey else None


def _selection_grid(src: MapSource, kind: str, idx: np.ndarray) -> None:
    """The selected points: their count and classes, and the first :data:`SEL_MAX` thumbnails (by point
    number), each framed in its class colour."""
    n = len(idx)
    if n == 0:
        st.markdown(f"**Selection ({kind}): no points.** Draw around some points, or clear it (Escape).")
        return
    counts = np.bincount(src.codes[idx], minlength=len(src.classes))  # [K]
    top = [int(c) for c in np.argsort(-counts, kind="stable")[:8] if counts[c]]
    by_class = ", ".join(f"{html.escape(src.classes[c] or '(unlabelled)')} {counts[c]:,}" for c in top)
    more = len(np.flatnonzero(counts)) - len(top)
    shown = idx[:SEL_MAX]
    st.markdown(f"**Selection ({kind}): {n:,} point{'s' if n != 1 else ''}**"
                + (f" · the first {SEL_MAX} by point number below" if n > SEL_MAX else "")
                + f" · by class: {by_class}" + (f" and {more} more" if more > 0 else ""))
    colours = hex_colours(len(src.classes))
    cells = []
    with st.spinner(f"Thumbnails of {len(shown)} points…"):
        for i in shown:
            i = int(i)
            url = _thumb_url(src.fid, i, SEL_PX, src)
            lab = src.classes[src.codes[i]] or "(unlabelled)"
            title = html.escape(f"#{i} · {src.name(i)} · {lab}", quote=True)
            inner = (f"<img src='{url}' style='width:{SEL_PX}px;height:{SEL_PX}px;object-fit:contain;display:block'>"
                     if url else f"<div style='width:{SEL_PX}px;height:{SEL_PX}px;background:#eee;color:#777;"
                                 f"font-size:11px;display:flex;align-items:center;justify-content:center;"
                                 f"text-align:center'>not readable</div>")
            cells.append(f"<div class='bl-selcell' data-point='{i}' title='{title}' "
                         f"style='border:3px solid {colours[src.codes[i]]};border-radius:3px'>{inner}</div>")
    st.markdown(f"<div class='bl-selgrid' data-count='{n}' data-shown='{len(shown)}' "
                f"style='display:flex;flex-wrap:wrap;gap:4px'>{''.join(cells)}</div>", unsafe_allow_html=True)
    st.caption("Framed in the class colour; hover a thumbnail for its path. Clear the selection with the map's "
               "Clear selection button or Escape.")


# ---- sources ------------------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Opening the imported set…")
def imported_source(name: str, _created: float) -> MapSource:
    """An imported set (core.io.imports) as a map source: vectors memory-mapped, projections cached
    beside them."""
    from core.io.imports import open_imported

    s = open_imported(name)

    def read(i: int) -> bytes:  # only files under the server's data roots (core.io.policy)
        data = s.image_bytes(i, policy())
        if data is None:
            raise OSError(f"{s.path(i)}: not readable under this server's data roots")
        return data

    return MapSource(fid=f"imported:{name}:{_created}", title=f"imported set **{name}** ({s.backbone})",
                     X=s.vectors, norms=np.asarray(s.norms), codes=s.codes, classes=s.classes, name=s.path,
                     read=read, proj_dir=s.root / "proj")


def features_source(fid: str, title: str, X: np.ndarray, labels: list[str], records) -> MapSource:
    """Extracted features of a dataset of images as a map source (projections kept in memory)."""
    classes = tuple(sorted(set(labels)))
    index = {c: j for j, c in enumerate(classes)}
    codes = np.fromiter((index[lab] for lab in labels), np.int32, len(labels))
    return MapSource(fid=fid, title=title, X=X, norms=np.linalg.norm(X, axis=1), codes=codes, classes=classes,
                     name=lambda i: records[i].name, read=lambda i: records[i].read_bytes())
