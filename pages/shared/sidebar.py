"""The sidebar every page draws: the dataset (sample, folder, uploads, imported set), the backbone,
its input size and block. Returns a :class:`~pages.shared.selection.Selection`."""
from __future__ import annotations

from typing import cast

import streamlit as st

from core.io.images import Dataset, TooManyFilesError
from core.io.policy import PolicyError, ServerPolicy
from core.models.registry import list_backbones
from pages.shared.datasets import add_uploads, imported_set_problems, imported_sets, load_data_folder, uploads_dataset
from pages.shared.links import apply_link, write_link
from pages.shared.resources import load_backbone_or_stop, offline_backbone_names
from pages.shared.selection import IMPORTED, Selection
from pages.shared.server import SAMPLE_STAMPS, log, one_line, policy
from pages.shared.state import SOURCES, choose_backbone, keep, remember_dataset_choice, restore_dataset_choice


def _folder_sidebar(pol: ServerPolicy) -> tuple[Dataset, str] | None:
    ss = st.session_state
    listed = pol.data_folders()
    folders = [str(f) for f in listed]
    short = {str(f): pol.display_name(f) for f in listed}
    if ss.get("ds_pick") not in (None, *folders):
        ss["ds_pick"] = ss["_kept_ds_pick"] = None  # the folder is gone
    pick = st.sidebar.selectbox("Folder", folders, index=None, key="ds_pick", format_func=lambda f: short.get(f, f),
                                on_change=keep, args=("ds_pick",),
                                placeholder="Choose a folder under the data roots",
                                help="Folders under this server's data roots (root/<class>/<image>, or a flat folder).")
    typed = st.sidebar.text_input("…or type a path under the data roots", key="ds_path", on_change=keep, args=("ds_path",),
                                  placeholder=str(pol.data_roots[-1]))
    text = (typed or "").strip() or pick
    if not text:
        st.sidebar.info("Choose a folder; showing the sample stamps meanwhile.")
        return None
    try:
        folder = pol.resolve_data_folder(text)
        return load_data_folder(folder, pol), str(folder)
    except (PolicyError, TooManyFilesError) as e:
        st.sidebar.error(one_line(e))
    except OSError as e:  # removed or unreadable since it was listed
        log.warning("cannot read the folder %s", text, exc_info=True)
        st.sidebar.error(f"Cannot read {text}: {e.strerror or one_line(e)}")
    return None


def _uploads_sidebar(pol: ServerPolicy) -> tuple[Dataset, str] | None:
    ss = st.session_state
    with st.sidebar.form("upload_form", clear_on_submit=True):
        files = st.file_uploader("Images", accept_multiple_files=True, key="ds_files")
        label = st.text_input("Class name for this batch (optional)")
        if st.form_submit_button("Add to dataset") and files:
            err = add_uploads(files, label.strip(), pol)
            if err:
                st.sidebar.error(err)
    if ss.uploads:
        st.sidebar.caption(f"{len(ss.uploads)} uploaded images")
        if st.sidebar.button("Clear uploads"):
            ss.uploads = []
            st.rerun()
        return uploads_dataset(), "uploads"
    st.sidebar.info("Upload images above; showing the sample stamps meanwhile.")
    return None


def _dataset_sidebar() -> tuple[Dataset, str]:
    ss = st.session_state
    ss.setdefault("uploads", [])  # list of (name, bytes, label, sha256)
    pol = policy()
    restore_dataset_choice()
    sets = imported_sets()
    for problem in imported_set_problems():
        st.sidebar.warning(problem, icon=":material/warning:")
    options = SOURCES + [IMPORTED + name for name in sets]
    if ss.get("ds_source") not in options:
        ss.pop("ds_source", None)  # e.g. an imported set deleted meanwhile
    source = st.sidebar.radio(
        "Dataset", options, key="ds_source", on_change=keep, args=("ds_source",),
        format_func=lambda o: f"{o[len(IMPORTED):]} · {sets.get(o[len(IMPORTED):], 0):,} imported points"
        if o.startswith(IMPORTED) else o,
        help="Sample stamps: 48 photos in 8 classes bundled with the app. Imported sets come from "
             "`backbone-lens import FILE` (embeddings made by any tool; shown on the Embeddings page).")
    if source.startswith(IMPORTED):
        remember_dataset_choice()
        return Dataset(), source
    try:
        got = _folder_sidebar(pol) if source == "Folder on server" else \
            _uploads_sidebar(pol) if source == "Uploads" else None
        return got or (load_data_folder(SAMPLE_STAMPS.resolve(), pol), "sample stamps")
    finally:
        remember_dataset_choice()


def backbone_picker(page_default: str, *, key: str = "backbone") -> str:
    """A backbone selectbox whose choice survives page changes; before any choice, the page's
    own default is shown (MobileNetV2 for class views, the ViT for attention/patch views)."""
    ss = st.session_state
    names = offline_backbone_names()
    extra = [n for n in ss.get("custom_backbones", []) if n not in names]
    options = names + extra
    current = ss.get(f"chosen_{key}") or page_default
    if current not in options:
        options.append(current)

    def remember():
        ss[f"chosen_{key}"] = ss[f"_w_{key}_{page_default}"]

    name = cast(str, st.sidebar.selectbox("Backbone", options, index=options.index(current), key=f"_w_{key}_{page_default}",
                                on_change=remember, help="Built-in offline backbones; add a timm/open_clip name below."))
    pol = policy()
    with st.sidebar.expander("Other backbone (timm / open_clip / local file)"):
        if not pol.allow_any_model and not pol.weights_dirs:
            st.caption("This server loads only its built-in backbones.")
        else:
            st.text_input("Name", key="custom_name",
                          placeholder="timm/<arch>@<file in a weights folder>" if not pol.allow_any_model
                          else "timm/vit_base_patch16_224.augreg_in21k")
            st.button("Use it", on_click=_use_custom_backbone, args=(key,))
            if ss.get("_custom_error"):
                st.error(ss["_custom_error"])
    return name


def _use_custom_backbone(key: str) -> None:
    ss = st.session_state
    ss["_custom_error"] = None
    name = (ss.get("custom_name") or "").strip()
    if not name:
        return
    try:
        name = policy().check_backbone_name(name, {e.name for e in list_backbones()})
    except PolicyError as e:
        ss["_custom_error"] = one_line(e)
        return
    choose_backbone(name, key=key)


def sidebar(page_default: str) -> Selection:
    """Render the shared sidebar and return what is selected."""
    apply_link()
    st.sidebar.header("Backbone Lens")
    if st.session_state.get("_link_problem"):
        st.sidebar.warning(st.session_state["_link_problem"])
    ds, label = _dataset_sidebar()
    if label.startswith(IMPORTED):  # embeddings made elsewhere: no backbone to pick or load
        st.sidebar.caption("Imported embeddings: the vectors were made by another tool, so the backbone, "
                           "input size and layer are fixed by that file.")
        write_link(label, None)
        return Selection(ds, label, "imported", None, None)
    name = backbone_picker(page_default)
    backbone = load_backbone_or_stop(name)
    spec = backbone.spec
    sizes = [spec.input_size] if spec.fixed_size else sorted(
        {spec.input_size, *(s for s in (224, 256, 320, 448) if s % spec.size_multiple == 0)})
    size = st.sidebar.selectbox("Input size (px)", sizes, index=sizes.index(spec.input_size), key=f"size_{name}",
                                help="Larger inputs give a finer patch grid (448 on the ViT: 32x32 patches).")
    layer_opts = ["default"] + list(range(spec.num_layers))
    layer = st.sidebar.selectbox("Layer", layer_opts, key=f"layer_{name}",
                                 help=f"Block for embeddings / patch tokens. Default: embedding from block "
                                      f"{backbone.resolve_layer(None)}, patch tokens from the last block.")
    if ds.failures:
        n = len(ds.failures)
        with st.sidebar.expander(f"{n} file{'' if n == 1 else 's'} skipped", icon=":material/warning:"):
            for f in ds.failures:
                st.write(f"**{f.name}**: {f.reason}")
    write_link(label, name)
    return Selection(ds, label, name, size, None if layer == "default" else int(layer))
