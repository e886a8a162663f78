"""A browser session's own photos, kept across pages, reruns and a reload (core.io.uploads): the
session's token rides in the link (``?s=<token>``, written at the first upload), the photos sit in the
server's upload store, bounded and expired. Every page sees them as part of the dataset (labelled
batches as new classes, unlabelled ones with label ``""``); every per-page uploader adds to the same
store, so a photo is uploaded once."""
from __future__ import annotations

import streamlit as st

from core.errors import BackboneLensError
from core.io.images import Dataset, ImageRecord
from core.io.policy import PolicyError
from core.io.uploads import TOKEN_PARAM, UploadLimits, UploadStore, UploadTokenError, check_token, new_token
from pages.shared.server import log, one_line, policy

_TOKEN = "_upload_token"


def token() -> str | None:
    """This session's upload token: kept in the session, else read from the link (a reload), else None."""
    ss = st.session_state
    if ss.get(_TOKEN):
        return ss[_TOKEN]
    t = st.query_params.get(TOKEN_PARAM)
    if t:
        try:
            ss[_TOKEN] = check_token(t)
        except UploadTokenError as e:
            ss["_upload_problem"] = one_line(e)
            del st.query_params[TOKEN_PARAM]
    return ss.get(_TOKEN)


def store(create: bool = False) -> UploadStore | None:
    """The session's upload store (None before the first upload unless ``create``)."""
    t = token()
    if t is None and not create:
        return None
    if t is None:
        t = st.session_state[_TOKEN] = new_token()
    if st.query_params.get(TOKEN_PARAM) != t:
        st.query_params[TOKEN_PARAM] = t  # a reload keeps the photos
    return UploadStore(t, limits=UploadLimits.from_limits(policy().limits))


def session_uploads() -> Dataset:
    """The session's photos as a dataset (empty before the first upload); damaged stored copies are
    dropped and listed in ``failures``."""
    s = store()
    return s.dataset() if s is not None else Dataset()


def upload_shas() -> set[str]:
    """Content hashes of the session's photos (to tell them apart in a dataset)."""
    return {r.sha256 for r in session_uploads().records}


def without_uploads(ds: Dataset) -> Dataset:
    """``ds`` less the session's photos (the dataset as chosen, so that adding a photo keeps its key), or ``ds``
    itself when it holds nothing else ("Only your photos")."""
    mine = upload_shas()
    if not mine:
        return ds
    rest = [r for r in ds.records if r.sha256 not in mine]
    return Dataset(records=rest, failures=list(ds.failures), root=ds.root) if rest else ds


def add_files(files, label: str = "") -> list[ImageRecord]:
    """Keep uploaded files (Streamlit ``UploadedFile``) in the session's store, in the batch ``label``
    (``""``: unlabelled); says in one line what was refused or already held. Returns the records of the
    files now held (added or already there), in the order given."""
    if not files:
        return []
    s = store(create=True)
    assert s is not None
    try:
        res = s.add([(f.name, f.getvalue()) for f in files], label=label)
    except (PolicyError, BackboneLensError, ValueError) as e:
        _say(one_line(e))
        return []
    except OSError as e:
        log.warning("cannot store uploads", exc_info=True)
        _say(f"Cannot keep the uploads: {e.strerror or one_line(e)}")
        return []
    for f in res.failures:
        _say(f"Cannot use the uploaded file **{f.name}**: {f.reason}")
    held = {r.name: r for r in s.dataset().records}
    return [held[f.name] for f in files if f.name in held]


def _say(message: str) -> None:
    """A one-line problem with an upload, shown in the sidebar on this run and the next (an upload reruns
    the page so that every view sees the new photo)."""
    st.session_state.setdefault("_upload_errors", []).append(message)


def uploads_sidebar() -> None:
    """The sidebar's "Your photos" box: add photos as unlabelled images or as a new class, the batches
    with their counts, and a remove button for each."""
    ss = st.session_state
    if ss.get("_upload_problem"):
        st.sidebar.warning(ss.pop("_upload_problem"))
    for message in ss.pop("_upload_errors", []):
        st.sidebar.error(message)
    s = store()
    batches = s.batches() if s is not None else []
    n = sum(len(b) for b in batches)
    with st.sidebar.expander(f"Your photos ({n})" if n else "Add your photos", icon=":material/add_photo_alternate:",
                             expanded=False):
        with st.form("upload_form", clear_on_submit=True, border=False):
            files = st.file_uploader("Photos", accept_multiple_files=True, key="ds_files")
            kind = st.radio("Add them as", ["unlabelled images", "a new class"], horizontal=True, key="up_kind",
                            help="Unlabelled photos are what the pages explain and classify; a new class joins the "
                                 "dataset's classes (prototypes, classifiers, maps).")
            label = st.text_input("Class name (for a new class)", key="up_label")
            if st.form_submit_button("Add"):
                name = label.strip() if kind == "a new class" else ""
                if not files:  # nothing chosen, or pressed before the browser finished sending them
                    _say("No photos to add: choose them above (wait until each is listed), then press Add.")
                    st.rerun()
                elif kind == "a new class" and not name:
                    _say("Give the new class a name.")
                    st.rerun()
                else:
                    got = add_files(files, name)
                    if got:
                        st.toast(f"{len(got)} photo{'s' if len(got) != 1 else ''} kept "
                                 f"({'new class ' + name if name else 'unlabelled'})")
                    st.rerun()
        for b in batches:
            c1, c2 = st.columns([4, 1], vertical_alignment="center")
            c1.markdown(f"**{b.title}** · {len(b)} photo{'s' if len(b) != 1 else ''}")
            if c2.button("", icon=":material/delete:", key=f"up_rm_{b.label or '_'}", help=f"Remove {b.title}"):
                assert s is not None
                s.remove_batch(b.label)
                st.rerun()
        if batches:
            st.caption("Kept for this browser link (the `s=` in the address bar) for a day; the pages see them "
                       "with the dataset above. Share a view without them: the link without `s=`.")
