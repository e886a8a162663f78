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
import streamlit as st

from core.errors import Cancelled
from core.geometry.neighbours import cosine_neighbours, neighbour_vote
from core.io.images import ImageRecord
from core.projection.projectors import ProjectionParams, Projector, available_methods, method_label
from pages.components.large_map import features_source, imported_source, show_large_map
from pages.embeddings import cache
from pages.embeddings.figure import map_figure
from pages.embeddings.panels import export, opened_image, selection_grid
from pages.embeddings.view import VOTE_K, MapView
from pages.shared import jobs
from pages.shared.datasets import forget_imported_listing
from pages.shared.labels import discovery_colouring
from pages.shared.links import link_param
from pages.shared.resources import features, show_failures
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.server import log, one_line, stop_on_cache_error
from pages.shared.sidebar import sidebar
from pages.shared.trust import judge
from pages.shared.uploads import add_files, upload_shas

METHODS = {m: method_label(m) for m in available_methods()}
WAIT_S = 2.0        # wait this long for a background fit before showing PCA meanwhile
PLOTLY_MAX = 20_000  # above this many images the level-of-detail point map replaces the plotly scatter

sel = sidebar(CLASS_DEFAULT)
st.title("Embeddings")
if sel.imported:  # embeddings made elsewhere (backbone-lens import): the large map, no forward
    from core.io.imports import ImportedSetDamagedError, UnknownImportedSetError, open_imported

    try:
        with stop_on_cache_error():
            _set = open_imported(sel.imported)
    except (ImportedSetDamagedError, UnknownImportedSetError) as e:  # damaged or removed since it was listed
        log.warning("cannot open the imported set %s", sel.imported, exc_info=True)
        forget_imported_listing()  # the sidebar lists it afresh, naming the damage
        st.error(one_line(e))
        st.stop()
    show_large_map(imported_source(_set.name, (_set.root / "meta.json").stat().st_mtime))
    st.stop()
st.caption("Each point is one image's global embedding, mapped to 2-D or 3-D. Click a point for the image "
           "and its nearest neighbours (cosine, in the full feature space); box/lasso-select for thumbnails.")

fs_all = features(sel)
show_failures(fs_all)
# your unlabelled photos are placed in the map fitted on the rest (transform, not refit), as black stars
mine = upload_shas()
is_up = np.array([r.sha256 in mine and not r.label for r in fs_all.records], bool)  # [N + M]
fs = fs_all.subset(np.flatnonzero(~is_up)) if is_up.any() else fs_all
X = fs["embedding"]  # [N, D]
N = len(fs.records)
if N < 5:
    st.info(f"A map needs at least 5 images; this dataset has {N}. Pick another dataset in the sidebar.")
    st.stop()
labels = [lab or "(unlabelled)" for lab in fs.labels]
colours = None
found = discovery_colouring(sel.base.key, fs.records)  # the last run of the Discover page on these images
if found is not None and st.toggle(f"Colour by discovery ({found[2]})", value=True, key="emb_discovery",
                                   help="The new clusters found on the Discover page in colours of their own, apart "
                                        "from the known classes; an unlabelled image takes its cluster's colour."):
    labels, colours = found[0], found[1]
fid = fs.key
if N > PLOTLY_MAX:
    show_large_map(features_source(fid, f"{sel.backbone} embeddings", X, labels, fs.records))
    st.stop()
ss = st.session_state
if "emb_method" not in ss and link_param("method") in METHODS:
    ss["emb_method"] = link_param("method")  # a shared link's projection

# ---- controls ----
c_method, c_dim, c_par = st.columns([2, 1, 1], vertical_alignment="bottom")
method = c_method.segmented_control("Projection", list(METHODS), format_func=lambda m: METHODS[m], default="pca",
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

# ---- the projection: PCA inline, UMAP / t-SNE in the background (PCA meanwhile) ----
proj: Projector | None = None
pending: Future | None = None
job_key = (fid, params.key())  # the background fit's key in the job pool
if method == "pca":
    proj = cache.fit_inline(fid, params.key(), X, params)
elif jobs.cancelled(job_key):  # this session cancelled it: PCA until asked again
    ss.get("emb_started", {}).pop(job_key, None)
    c_note, c_again = st.columns([4, 1], vertical_alignment="center")
    c_note.info(f"{METHODS[method]} cancelled: showing PCA.", icon=":material/cancel:")
    with c_again:
        jobs.resume_button(job_key, f"Compute {METHODS[method]}", help="Start the fit again (in the background).")
else:
    pool = cache.jobs()
    fut = jobs.submit(pool, job_key, cache.fit, X, params)
    started = ss.setdefault("emb_started", {})
    started.setdefault(job_key, time.time())
    try:
        proj = fut.result(timeout=WAIT_S)
    except FutureTimeout:
        pending = fut
    except Cancelled:  # released in the same instant (a race with another session): PCA now, fit again next run
        started.pop(job_key, None)
    except Exception as e:  # the fit raised: say so, keep the PCA map, offer a retry
        st.error(f"{METHODS[method]} failed on these features: {type(e).__name__}: {e}")
        if st.button("Retry", key="emb_retry"):
            pool.forget(job_key)
            started.pop(job_key, None)
            st.rerun()
shown = params if proj is not None else pca_params
if proj is None:
    proj = cache.fit_inline(fid, pca_params.key(), X, pca_params)
coords = proj.embedding_  # [N, c]

if pending is not None:
    @st.fragment(run_every=1.0)
    def _wait(fut: Future, t0: float) -> None:
        if fut.done() or jobs.cancelled(job_key):
            st.rerun()  # the whole page, now with the finished map (or PCA, cancelled)
        c_note, c_cancel = st.columns([4, 1], vertical_alignment="center")
        c_note.info(f"{METHODS[method]} is being computed in the background ({time.time() - t0:.0f} s so far); "
                    f"showing PCA meanwhile. The map switches by itself when it is ready.",
                    icon=":material/hourglass_top:")
        with c_cancel:
            jobs.cancel_button(job_key, cache.jobs(), f"Cancel {METHODS[method]}",
                               help="Stop waiting for this map and keep PCA (the fit stops unless another "
                                    "session is waiting for the same map).")

    _wait(pending, ss["emb_started"][job_key])

# ---- uploads placed by the fitted map ----
up_rows = np.flatnonzero(is_up)
up_recs: list[ImageRecord] = [fs_all.records[i] for i in up_rows]
U = fs_all["embedding"][up_rows]  # [M, D]
up_coords = cache.place(fid, shown.key(), tuple(r.sha256 for r in up_recs), proj, U) if len(up_recs) else \
    np.zeros((0, coords.shape[1]), np.float32)
all_recs = list(fs.records) + up_recs
verdicts = judge(fs, U, [r.name for r in up_recs]) if up_recs else None
up_far: list[str | None] = [v.sentence if v.far else None for v in verdicts] if verdicts else [None] * len(up_recs)
E_all = np.vstack([X, U]) if len(U) else X

if "emb_pick" not in ss and (p := link_param("point")) is not None and p.isdigit() and int(p) < N:
    ss["emb_pick"] = int(p)  # a shared link's opened image
if ss.get("emb_pick") not in [None, *range(len(all_recs))]:
    ss["emb_pick"] = None  # the dataset or the uploads changed
pick = ss.get("emb_pick")
if pick is not None and pick < N:
    st.query_params["point"] = str(pick)
elif "point" in st.query_params:
    del st.query_params["point"]
nbrs = None
if pick is not None:  # neighbours in the full feature space, also ringed in the map
    nbrs = cosine_neighbours(E_all[[pick]], X, k=min(int(ss.get("emb_k", 8)), N - 1), exclude=[None if pick >= N else pick])
view = MapView(backbone=sel.backbone, records=all_recs, labels=labels, X=X,
               coords=np.vstack([coords, up_coords]) if len(up_recs) else coords, shown=shown, metric=metric,
               up_votes=neighbour_vote(U, X, labels, k=VOTE_K) if up_recs else [], up_far=up_far, pick=pick, nbrs=nbrs,
               multi=[i for i in ss.get("emb_multi", []) if i < len(all_recs)], colours=colours)


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
    st.markdown(f"**{METHODS[shown.method]} of {sel.backbone} embeddings** ({X.shape[1]}-D, {metric}) · {N} images"
                + (f" + {len(up_recs)} uploads" if up_recs else ""))
    st.plotly_chart(map_figure(view), key="emb_plot", on_select=_on_select,
                    selection_mode=("points", "box", "lasso"), config={"displaylogo": False})
with right:
    opened_image(view)
selection_grid(view)

# ---- uploads and export ----
c_up, c_ex = st.columns([3, 2], gap="medium")
placed = c_up.file_uploader("Place your own photos in this map", accept_multiple_files=True,
                            key=f"emb_uploads_{ss.get('emb_uploads_n', 0)}",
                            help="They are kept with your photos (sidebar), embedded with the same backbone and placed "
                                 "by the fitted map (transform, not refit): PCA and UMAP project them, t-SNE places each "
                                 "at the weighted mean of its nearest images. Shown as black stars.")
if placed:
    ss["emb_uploads_n"] = ss.get("emb_uploads_n", 0) + 1
    add_files(placed)
    st.rerun()
export(view, c_ex)
