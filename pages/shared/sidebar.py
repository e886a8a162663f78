"""The sidebar every page draws: the dataset (sample, folder, uploads, imported set), the backbone,
its input size and block. Returns a :class:`~pages.shared.selection.Selection`."""
from __future__ import annotations

from typing import cast

import streamlit as st

from core.errors import BackboneLensError
from core.io.images import Dataset, NoImagesError, TooManyFilesError, require_images
from core.io.policy import PolicyError, ServerPolicy
from core.io.uploads import with_uploads
from core.models.base import Backbone
from core.models.registry import list_backbones
from pages.shared.datasets import imported_set_problems, imported_sets, load_data_folder
from pages.shared.labels import apply as apply_accepted_names
from pages.shared.labels import sidebar_note as accepted_names_note
from pages.shared.links import apply_link, write_link
from pages.shared.resources import get_backbone, offline_backbone_names
from pages.shared.selection import IMPORTED, Selection
from pages.shared.server import SAMPLE_STAMPS, log, one_line, policy
from pages.shared.state import SOURCE_LABELS, SOURCES, choose_backbone, keep, remember_dataset_choice, restore_dataset_choice
from pages.shared.uploads import session_uploads, uploads_sidebar


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
                                help="Folders under this server's data roots (root/<class>/<image>, or a flat folder). "
                                     "In a class tree, root/_unlabelled/ holds unlabelled images.")
    typed = st.sidebar.text_input("…or type a folder's path" if pol.any_folder else "…or type a path under the data roots",
                                  key="ds_path", on_change=keep, args=("ds_path",),
                                  placeholder=str(pol.data_roots[-1]))
    text = (typed or "").strip() or pick
    if not text:
        st.sidebar.info("Choose a folder; showing the sample stamps meanwhile.")
        return None
    try:
        folder = pol.resolve_data_folder(text)
        return require_images(load_data_folder(folder, pol), folder), str(folder)
    except (PolicyError, TooManyFilesError, NoImagesError) as e:
        st.sidebar.error(one_line(e))
    except OSError as e:  # removed or unreadable since it was listed
        log.warning("cannot read the folder %s", text, exc_info=True)
        st.sidebar.error(f"Cannot read {text}: {e.strerror or one_line(e)}")
    return None


def _dataset_sidebar() -> tuple[Dataset, str]:
    ss = st.session_state
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
        if o.startswith(IMPORTED) else SOURCE_LABELS.get(o, o),
        help="Sample stamps: 48 photos in 8 classes bundled with the app. Your photos (below) join whichever "
             "dataset is chosen; 'Only your photos' leaves the rest out. Imported sets come from "
             "`backbone-lens import FILE` (embeddings made by any tool).")
    if source.startswith(IMPORTED):
        remember_dataset_choice()
        return Dataset(), source
    try:
        mine = session_uploads()
        if source == "Uploads":
            if not mine.records:
                st.sidebar.info("Add your photos below; showing the sample stamps meanwhile.")
            else:
                return mine, "uploads"
        got = _folder_sidebar(pol) if source == "Folder on server" else None
        base, label = got or (load_data_folder(SAMPLE_STAMPS.resolve(), pol), "sample stamps")
        return with_uploads(base, mine), label
    finally:
        remember_dataset_choice()
        uploads_sidebar()


def backbone_picker(page_default: str, *, key: str = "backbone") -> str:
    """A backbone selectbox whose choice survives page changes; before any choice, the page's
    own default is shown (MobileNetV2 for class views, the ViT for attention/patch views)."""
    ss = st.session_state
    if (back := ss.pop("_revert_backbone", None)) is not None:  # a name that failed to load: back to the last good one
        choose_backbone(back, key=key)
    names = offline_backbone_names()
    extra = [n for n in ss.get("custom_backbones", []) if n not in names]
    options = names + extra
    current = ss.get(f"chosen_{key}") or page_default
    if current not in options:
        options.append(current)

    def remember():
        ss[f"chosen_{key}"] = ss[f"_w_{key}_{page_default}"]
        ss.pop("_backbone_problem", None)

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
    st.session_state.pop("_backbone_problem", None)
    choose_backbone(name, key=key)


def _load_or_go_back(name: str, page_default: str) -> Backbone:
    """The chosen backbone; when it cannot be loaded (an unreachable hub name, a bad checkpoint, refused by
    the server's policy), the sidebar says why in one line and the page goes on with the last backbone
    that loaded (or the page's default): the failed name is dropped from the list, so it is not tried
    again on every rerun."""
    ss = st.session_state
    try:
        b = get_backbone(name)
    except Exception as e:  # a registry, policy or third-party loader error: all mean "cannot use it here"
        log.warning("cannot load backbone %s", name, exc_info=True)
        why = one_line(e) if isinstance(e, BackboneLensError | PolicyError) else f"{type(e).__name__} (details in the server log)"
        back = ss.get("_good_backbone", page_default)
        if back == name:  # nothing to go back to
            st.error(f"Cannot load backbone **{name}**: {why}")
            st.stop()
        ss["_backbone_problem"] = f"Cannot load **{name}**: {why}. Showing **{back}** instead."
        ss["custom_backbones"] = [n for n in ss.get("custom_backbones", []) if n != name]
        ss["_revert_backbone"] = back
        st.rerun()
    ss["_good_backbone"] = name
    if ss.get("_backbone_problem"):
        st.sidebar.error(ss["_backbone_problem"])
    return b


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
    backbone = _load_or_go_back(name, page_default)
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
    accepted_names_note(ds)
    shown = apply_accepted_names(ds)  # names accepted on the Discover page: every page sees them
    write_link(label, name)
    return Selection(shown, label, name, size, None if layer == "default" else int(layer),
                     base_dataset=ds if shown is not ds else None)
