"""Embeddings: a PCA / UMAP / t-SNE map of the global embeddings, coloured by class. Click a point
(or pick an image by name) for the picture and its nearest neighbours in feature space; box or
lasso-select a group for their thumbnails; place your own images in the fitted map.

Plotly hover labels cannot hold images, so hover shows the file name and class and the pictures
appear beside the plot on click/selection. UMAP and t-SNE fit on a worker thread (core.projection.jobs)
keyed by (features, method, parameters): PCA is shown meanwhile and the map swaps in by itself; a
second visit is instant. The maths lives in core.projection.projectors and core.geometry.neighbours.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core import render
from core.errors import ImageDecodeError
from core.geometry.neighbours import cosine_neighbours, neighbour_vote, projection_table
from core.io.images import ImageRecord, thumbnail
from core.projection.jobs import JobPool
from core.projection.projectors import ProjectionParams, Projector, available_methods, axis_titles, make_projector, method_label
from pages.common import CLASS_DEFAULT, checked_uploads, features, link_param, show_failures, sidebar
from pages.components.large_map import features_source, imported_source, show_large_map

METHODS = {m: method_label(m) for m in available_methods()}
VOTE_K = 5          # neighbours whose majority class labels an upload
WAIT_S = 2.0        # wait this long for a background fit before showing PCA meanwhile
THUMB = 150         # px, neighbour / selection thumbnails
BIG = 320           # px, the opened image
MAX_GRID = 48       # thumbnails shown for a box / lasso selection
UPLOAD = "your upload"
PLOTLY_MAX = 20_000  # above this many images the level-of-detail point map replaces the plotly scatter


# ---- cached work --------------------------------------------------------------------------------
@st.cache_resource
def _jobs() -> JobPool:
    """One background worker per server process for UMAP / t-SNE fits."""
    return JobPool(max_workers=1, max_done=24)


def _fit(X: np.ndarray, params: ProjectionParams) -> Projector:
    return make_projector(params).fit(X)


@st.cache_resource(max_entries=16, show_spinner=False)
def _fit_inline(fid: str, pkey: str, _X: np.ndarray, _params: ProjectionParams) -> Projector:
    """PCA: milliseconds, fitted on the script thread (and used while a slower map is computing)."""
    return _fit(_X, _params)


@st.cache_data(max_entries=64, show_spinner="Placing your images in the map…")
def _place(fid: str, pkey: str, shas: tuple[str, ...], _proj: Projector, _E: np.ndarray) -> np.ndarray:
    return _proj.transform(_E)  # [M, c], the fitted map is not refitted


@st.cache_data(max_entries=2048, show_spinner=False)
def _thumb(sha: str, name: str, side: int, _rec: ImageRecord) -> Image.Image:
    """The picture shrunk into a white ``side`` x ``side`` square, so grids line up."""
    t = thumbnail(_rec.decode(), side)
    square = Image.new("RGB", (side, side), "white")
    square.paste(t, ((side - t.width) // 2, (side - t.height) // 2))
    return square


@st.cache_data(max_entries=64, show_spinner=False)
def _big(sha: str, name: str, _rec: ImageRecord):
    return render.fit(_rec.decode(), BIG)


def _short(name: str, n: int = 9) -> str:
    """File stem, cut to ``n`` characters (thumbnail captions stay on one line)."""
    stem = name.split("/")[-1].rsplit(".", 1)[0]
    return stem if len(stem) <= n else stem[: n - 1] + "…"


def _image_or_warning(where, fn, rec: ImageRecord, *args, caption: str | None = None) -> None:
    try:
        where.image(fn(rec.sha256, rec.name, *args, rec), caption=caption)
    except (ImageDecodeError, OSError) as e:  # changed or removed since the dataset was listed
        where.warning(f"Cannot show **{rec.name}**: {getattr(e, 'reason', e)}")


# ---- page --------------------------------------------------------------------------------------
sel = sidebar(CLASS_DEFAULT)
st.title("Embeddings")
if sel.imported:  # embeddings made elsewhere (backbone-lens import): the large map, no forward
    from core.io.imports import open_imported

    _set = open_imported(sel.imported)
    show_large_map(imported_source(_set.name, (_set.root / "meta.json").stat().st_mtime))
    st.stop()
st.caption("Each point is one image's global embedding, mapped to 2-D or 3-D. Click a point for the image "
           "and its nearest neighbours (cosine, in the full feature space); box/lasso-select for thumbnails.")

fs = features(sel)
show_failures(fs)
X = fs["embedding"]  # [N, D]
N = len(fs.records)
if N < 5:
    st.info(f"A map needs at least 5 images; this dataset has {N}. Pick another dataset in the sidebar.")
    st.stop()
labels = [lab or "(unlabelled)" for lab in fs.labels]
fid = f"{sel.backbone}|{sel.size}|{sel.layer}|{sel.dataset_key}"  # features identity
if N > PLOTLY_MAX:
    show_large_map(features_source(fid, f"{sel.backbone} embeddings", X, labels, fs.records))
    st.stop()
if "emb_method" not in st.session_state and link_param("method") in METHODS:
    st.session_state["emb_method"] = link_param("method")  # a shared link's projection

# ---- controls ----
c_method, c_dim, c_par = st.columns([2, 1, 1], vertical_alignment="bottom")
method = c_method.segmented_control("Projection", list(METHODS), format_func=METHODS.get, default="pca",
                                    required=True, key="emb_method", persist_state="session",
                                    help="PCA: linear and exact (instant). UMAP / t-SNE: non-linear neighbourhood maps, "
                                         "computed in the background (the first UMAP in a server process also "
                                         "compiles numba code, about 30 s).")
three_d = c_dim.toggle("3-D", key="emb_3d", persist_state="session",
                       help="Rotate with the mouse; clicking points works in 2-D only (pick by name in 3-D).")
with c_par.popover("Parameters", icon=":material/tune:"):
    metric = st.radio("Distance", ["cosine", "euclidean"], horizontal=True, key="emb_metric", persist_state="session",
                      help="cosine: rows are L2-normalised first (the usual choice for embeddings).")
    n_neighbors = st.slider("UMAP neighbours", 2, 100, 15, key="emb_nn", persist_state="session",
                            help="Larger: more global structure.")
    min_dist = st.slider("UMAP min distance", 0.0, 1.0, 0.1, 0.05, key="emb_md", persist_state="session")
    perplexity = st.slider("t-SNE perplexity", 2.0, 100.0, 30.0, 1.0, key="emb_perp", persist_state="session",
                           help="Capped at (N - 1) / 3 for small sets.")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="emb_seed", persist_state="session")

st.query_params["method"] = method
params = ProjectionParams(method, n_components=3 if three_d else 2, n_neighbors=n_neighbors, min_dist=min_dist,
                          perplexity=perplexity, metric=metric, seed=int(seed))
pca_params = ProjectionParams("pca", n_components=params.n_components, metric=metric, seed=int(seed))

proj: Projector | None = None
pending: Future | None = None
if method == "pca":
    proj = _fit_inline(fid, params.key(), X, params)
else:
    jobs = _jobs()
    key = (fid, params.key())
    fut = jobs.submit(key, _fit, X, params)
    started = st.session_state.setdefault("emb_started", {})
    started.setdefault(key, time.time())
    try:
        proj = fut.result(timeout=WAIT_S)
    except FutureTimeout:
        pending = fut
    except Exception as e:  # the fit raised: say so, keep the PCA map, offer a retry
        st.error(f"{METHODS[method]} failed on these features: {type(e).__name__}: {e}")
        if st.button("Retry", key="emb_retry"):
            jobs.forget(key)
            started.pop(key, None)
            st.rerun()
shown = params if proj is not None else pca_params
if proj is None:
    proj = _fit_inline(fid, pca_params.key(), X, pca_params)
coords = proj.embedding_  # [N, c]
shown_name = METHODS[shown.method]

if pending is not None:
    @st.fragment(run_every=1.0)
    def _wait(fut: Future, t0: float) -> None:
        if fut.done():
            st.rerun()  # the whole page, now with the finished map
        st.info(f"{METHODS[method]} is being computed in the background ({time.time() - t0:.0f} s so far); "
                f"showing PCA meanwhile. The map switches by itself when it is ready.",
                icon=":material/hourglass_top:")

    _wait(pending, st.session_state["emb_started"][(fid, params.key())])

# ---- uploads placed by the fitted map ----
ss = st.session_state
up_files = ss.get("emb_uploads") or []
up_recs: list[ImageRecord] = []
U = np.zeros((0, X.shape[1]), np.float32)
up_coords = np.zeros((0, coords.shape[1]), np.float32)
if up_files:
    up_ds = checked_uploads(up_files)  # validated once per session, server limits
    for f in up_ds.failures:
        st.error(f"Cannot use the uploaded file **{f.name}**: {f.reason}. The other images are shown.")
    if up_ds.records:
        ufs = features(sel, dataset=up_ds)
        show_failures(ufs)
        up_recs = ufs.records
        if up_recs:
            U = ufs["embedding"]  # [M, D]
            up_coords = _place(fid, shown.key(), tuple(r.sha256 for r in up_recs), proj, U)
all_recs = list(fs.records) + up_recs
E_all = np.vstack([X, U]) if len(U) else X
up_votes = neighbour_vote(U, X, labels, k=VOTE_K) if up_recs else []  # one class per upload


ids_all = list(range(len(all_recs)))
if ss.get("emb_pick") not in [None, *ids_all]:
    ss["emb_pick"] = None  # the dataset or the uploads changed
multi = [i for i in ss.get("emb_multi", []) if i < len(all_recs)]
pick = ss.get("emb_pick")
nbrs = None
if pick is not None:  # neighbours in the full feature space, also ringed in the map
    nbrs = cosine_neighbours(E_all[[pick]], X, k=min(int(ss.get("emb_k", 8)), N - 1), exclude=[None if pick >= N else pick])
all_coords = np.vstack([coords, up_coords]) if len(up_recs) else coords


# ---- the figure ----
def _figure() -> go.Figure:
    classes = sorted(set(labels))
    colours = render.class_colours(classes)
    size = 9 if N <= 500 else 6 if N <= 5000 else 4
    lab = np.asarray(labels)
    fig = go.Figure()
    ax = axis_titles(shown.method, coords.shape[1])
    for c in classes:
        rows = np.flatnonzero(lab == c)
        custom = [[int(i), fs.records[i].name, c] for i in rows]
        marker = dict(size=size, color=colours[c], opacity=0.85, line=dict(width=0.5, color="white"))
        hover = "<b>%{customdata[1]}</b><br>class: %{customdata[2]}<extra></extra>"
        if three_d:
            fig.add_trace(go.Scatter3d(x=coords[rows, 0], y=coords[rows, 1], z=coords[rows, 2], mode="markers",
                                       name=c, customdata=custom, hovertemplate=hover, marker={**marker, "size": size * 0.6}))
        else:
            fig.add_trace(go.Scattergl(x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=c,
                                       customdata=custom, hovertemplate=hover, marker=marker))
    if up_recs:
        custom = [[N + j, r.name, up_votes[j]] for j, r in enumerate(up_recs)]
        hover = f"<b>%{{customdata[1]}}</b><br>your upload · {VOTE_K}-NN vote: %{{customdata[2]}}<extra></extra>"
        marker = dict(symbol="star" if not three_d else "diamond", size=18 if not three_d else 8, color="black",
                      line=dict(width=1.5, color="white"))
        if three_d:
            fig.add_trace(go.Scatter3d(x=up_coords[:, 0], y=up_coords[:, 1], z=up_coords[:, 2], mode="markers",
                                       name="your uploads", customdata=custom, hovertemplate=hover, marker=marker))
        else:
            fig.add_trace(go.Scattergl(x=up_coords[:, 0], y=up_coords[:, 1], mode="markers", name="your uploads",
                                       customdata=custom, hovertemplate=hover, marker=marker))
    if nbrs is not None and not three_d:
        ring = all_coords[nbrs.indices[0]]
        fig.add_trace(go.Scattergl(x=ring[:, 0], y=ring[:, 1], mode="markers", name=f"{len(ring)} nearest (full space)",
                                   hoverinfo="skip", marker=dict(symbol="circle-open", size=16, color="black",
                                                                 line=dict(width=2))))
        fig.add_trace(go.Scattergl(x=all_coords[[pick], 0], y=all_coords[[pick], 1], mode="markers", name="opened image",
                                   hoverinfo="skip", marker=dict(symbol="circle-open", size=24, color="#d62728",
                                                                 line=dict(width=3))))
    fig.update_layout(height=620,
                      legend=dict(title=dict(text="class"), itemsizing="constant", font=dict(size=13)),
                      margin=dict(l=10, r=10, t=30, b=10), dragmode="pan" if three_d else "zoom", hovermode="closest")
    if three_d:
        fig.update_layout(scene=dict(xaxis_title=ax[0], yaxis_title=ax[1], zaxis_title=ax[2]))
    else:
        fig.update_xaxes(title_text=ax[0], zeroline=False)
        fig.update_yaxes(title_text=ax[1], zeroline=False)
    return fig


def _on_select() -> None:
    """A click opens one image; a box / lasso selection shows a thumbnail grid."""
    ev = st.session_state.get("emb_plot")
    pts = ev["selection"]["points"] if ev else []
    ids = [int(p["customdata"][0]) for p in pts if p.get("customdata") is not None]
    if len(ids) == 1:
        st.session_state["emb_pick"] = ids[0]
        st.session_state["emb_multi"] = []
    else:
        st.session_state["emb_multi"] = ids


left, right = st.columns([3, 2], gap="medium")
with left:
    st.markdown(f"**{shown_name} of {sel.backbone} embeddings** ({X.shape[1]}-D, {metric}) · {N} images"
                + (f" + {len(up_recs)} uploads" if up_recs else ""))
    st.plotly_chart(_figure(), key="emb_plot", on_select=_on_select,
                    selection_mode=("points", "box", "lasso"), config={"displaylogo": False})

with right:
    def _fmt(i: int | None) -> str:
        if i is None:
            return "— click a point or choose —"
        r = all_recs[i]
        return f"{r.name} ({labels[i] if i < N else UPLOAD})"

    pick = st.selectbox("Open an image", [None, *ids_all], format_func=_fmt, key="emb_pick")
    if pick is None:
        st.markdown("Click a point in the map to open that image here with its nearest neighbours. "
                    "Box or lasso-select (toolbar, top right of the plot) to see a group's thumbnails.")
    else:
        rec = all_recs[pick]
        is_up = pick >= N
        _image_or_warning(st, _big, rec)
        st.markdown(f"**{rec.name}** · " + (f"{UPLOAD} · {VOTE_K}-NN vote: **{up_votes[pick - N]}**" if is_up
                                             else f"class **{labels[pick]}**"))
        st.slider("Neighbours (k)", 1, min(24, N - 1), min(8, N - 1), key="emb_k", persist_state="session",
                  help="Ringed in the map: where the nearest neighbours in the full feature space landed.")
        idx, sims = nbrs.indices[0], nbrs.similarities[0]
        if not is_up:
            same = int(sum(labels[i] == labels[pick] for i in idx))
            st.caption(f"{same} of {len(idx)} nearest neighbours share its class "
                       f"(cosine similarity, full {X.shape[1]}-D space).")
        cols = st.columns(4)
        for j, (i, s) in enumerate(zip(idx, sims)):
            col = cols[j % 4]
            _image_or_warning(col, _thumb, fs.records[i], THUMB, caption=_short(fs.records[i].name))
            colour = "green" if (not is_up and labels[i] == labels[pick]) else ("red" if not is_up else "blue")
            col.markdown(f":{colour}[{labels[i]}]  \ncos **{s:.3f}**")

if multi:
    chosen = multi[:MAX_GRID]
    names, counts = np.unique([labels[i] if i < N else UPLOAD for i in multi], return_counts=True)
    st.subheader(f"Selection: {len(multi)} images")
    st.caption(" · ".join(f"{n}: {c}" for n, c in sorted(zip(names, counts), key=lambda t: -t[1]))
               + (f" (first {MAX_GRID} shown)" if len(multi) > MAX_GRID else ""))
    cols = st.columns(8)
    for j, i in enumerate(chosen):
        _image_or_warning(cols[j % 8], _thumb, all_recs[i], THUMB,
                          caption=f"{labels[i] if i < N else 'upload'} · {_short(all_recs[i].name, 10)}")

# ---- uploads and export ----
c_up, c_ex = st.columns([3, 2], gap="medium")
c_up.file_uploader("Place your own images in this map", accept_multiple_files=True, key="emb_uploads",
                   help="They are embedded with the same backbone and placed by the fitted map (transform, "
                        "not refit): PCA and UMAP project them, t-SNE places each at the weighted mean of its "
                        "nearest images. Shown as black stars.")
table = projection_table(
    np.vstack([coords, up_coords]) if len(up_recs) else coords,
    [r.name for r in all_recs],
    [str(r.path) if r.path else "" for r in all_recs],
    labels + [""] * len(up_recs),
    ["dataset"] * N + ["upload"] * len(up_recs),
)
c_ex.download_button("Download coordinates (CSV)", table.to_csv(index=False).encode(), icon=":material/download:",
                     file_name=f"embeddings_{shown.method}_{coords.shape[1]}d_{sel.backbone.replace('/', '_')}.csv",
                     mime="text/csv", key="emb_csv")
c_ex.caption(f"{shown_name} coordinates with file paths and labels, {len(table)} rows "
             f"(parameters: `{shown.key()}`).")
