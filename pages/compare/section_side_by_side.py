"""Side by side section: one column per backbone (map, saliency, click mask, neighbours) for one image."""
from __future__ import annotations

import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from core import render
from core.explain.prototype_maps import PrototypeSet
from core.geometry.neighbours import neighbours_of_row
from core.io.imports import MODEL_ONLY_VIEWS
from core.projection.projectors import ProjectionParams, available_methods, method_label
from core.render import ColorScale
from core.segment.click import click_mask
from core.segment.similarity import pixel_to_patch
from pages.compare import cache, widgets
from pages.compare.context import CmpContext
from pages.compare.figures import NEUTRAL, OTHER, SAME, captioned_thumb, embedding_scatter, thumb_grid
from pages.compare.widgets import pick_from_chart
from pages.shared.resources import features

CLICK_SIDE = 300      # px, the clickable picture
PANEL = 260           # px, saliency and mask panels


def draw(ctx: CmpContext) -> None:
    sel, names, records, labels = ctx.sel, ctx.backbone_names, ctx.records, ctx.labels
    labelled, colours, img_names, ss = ctx.labelled, ctx.colour_of, ctx.img_names, st.session_state
    st.header("Side by side", divider="gray")
    if ctx.imported_names:  # one sentence on why they have no column (all of them imported: no section)
        say = st.info if not names or records is None else st.caption
        say(f"{', '.join(ctx.imported_names)}: {'an imported set' if len(ctx.imported_names) == 1 else 'imported sets'}, "
            f"no column here. {MODEL_ONLY_VIEWS['side_by_side']}")
    if not names or records is None:
        return
    c_img, c_ctl = st.columns([1, 2], gap="large")
    with c_ctl:
        s1, s2, s3 = st.columns(3)
        i = s1.selectbox("Image (or click a point in a map)", range(len(records)), format_func=lambda j: img_names[j],
                         key="cmp_image")
        method = s2.selectbox("Map", available_methods(), key="cmp_proj",
                              format_func=method_label,
                              help="Each backbone's embeddings, cosine geometry, seed 0; colours are the same classes "
                                   "in every column.")
        k_nn = s3.slider("Neighbours", 1, 10, 5, key="cmp_k")
        s4, s5, s6 = st.columns(3)
        auto = s4.toggle("Otsu threshold", value=True, key="cmp_otsu",
                         help="Per backbone, the threshold that best splits its similarity map in two.")
        thr_fixed = s5.slider("Cosine threshold", -1.0, 1.0, 0.5, 0.01, key="cmp_thr", disabled=auto)
        alpha = s6.slider("Opacity", 0.0, 1.0, 0.55, 0.05, key="cmp_alpha")
    rec = records[i]
    pic = cache.picture(rec.sha256, rec)
    click_key = f"cmp_click_{rec.sha256[:16]}"
    prev = ss.get(click_key)
    uv = (min(prev["x"] / prev["width"], 1.0), min(prev["y"] / prev["height"], 1.0)) if prev else (0.5, 0.5)
    with c_img:
        shown = widgets.mark_point(render.fit(pic, CLICK_SIDE), uv)
        streamlit_image_coordinates(shown, key=click_key, width=shown.width, cursor="crosshair", image_format="JPEG",
                                    jpeg_quality=90)
        st.caption(f"**{rec.name}**{f' ({rec.label})' if rec.label else ''}. Click on the picture: every backbone "
                   f"segments from the patch under the same point ({uv[0]:.2f}, {uv[1]:.2f}).")

    same_pic = [j for j, r in enumerate(records) if r.sha256 == rec.sha256 and j != i]  # copies are not neighbours
    panels_for_png = []
    cols_ui = st.columns(len(names), gap="medium")
    for col, name in zip(cols_ui, names):
        spec = ctx.backbone(name).spec
        X = ctx.X(name)  # [M, D] the shared images
        grid = spec.grid(spec.input_size)
        with col:
            st.subheader(name)
            st.caption(f"{spec.family.upper()} · D = {X.shape[1]} · {spec.input_size} px · {grid[0]}x{grid[1]} "
                       f"{'patches' if spec.family != 'cnn' else 'cells'}")
            nb = neighbours_of_row(X, i, k_nn, also_exclude=same_pic)  # copies of the picture are not neighbours
            nn_idx, nn_sim = nb.indices[0], nb.similarities[0]
            coords = cache.projection(ctx.key, name, len(X), ProjectionParams(method), X)
            chart_key = f"cmp_scatter_{name}"
            fig = embedding_scatter(coords, labels, img_names, colours, title=f"{name}: {method_label(method)}",
                                    method=method, chosen=i, neighbours=list(nn_idx))
            st.plotly_chart(fig, key=chart_key, on_select=lambda k=chart_key: pick_from_chart(k), selection_mode="points")
            # saliency: the method this backbone supports
            protos = None
            if not spec.has_attention and not spec.has_classifier:
                if not labelled:
                    st.info(f"{name} has neither attention nor a classifier head: its Grad-CAM explains a class "
                            "prototype, which needs class labels.")
                else:
                    final = features(sel, ("embedding",), backbone=name, layer=-1)  # the dataset's rows
                    protos = PrototypeSet.from_embeddings(final["embedding"][ctx.rows(name)], labels,
                                                          exclude=[i, *same_pic])  # the shared images
            panels = []
            if spec.has_attention or spec.has_classifier or protos is not None:
                sal = cache.saliency(name, rec.sha256, ctx.key if protos is not None else "", pic, protos)
                scale = ColorScale(0.0, 1.0, "inferno", f"{sal.method} (min-max)")
                panels.append(render.heat_figure(pic, sal.map, scale, alpha=alpha, max_side=PANEL,
                                                 title=f"{sal.method}: {sal.target}"))
            # click-to-segment at the same point
            tokens = cache.tokens(name, rec.sha256, pic)  # [h, w, D]
            tgrid = tokens.shape[:2]
            q = pixel_to_patch((uv[0] * pic.width, uv[1] * pic.height), pic.size, tgrid)
            click = click_mask(tokens, q, None if auto else thr_fixed)
            thr, mask = click.threshold, click.mask  # float, bool [h, w]
            panels.append(render.mask_panel(pic, mask, alpha=alpha, max_side=PANEL, marker=(q, tgrid),
                                            title=f"click mask: cos >= {thr:.2f}"))
            if len(names) == 2:  # room for the two maps side by side
                st.image(render.row(panels), width="content")
            else:
                for p in panels:
                    st.image(p, width="content")
            st.caption(f"Mask: patches of the last block whose cosine to patch {q} (row, column) is at least {thr:.2f}"
                       f"{' (Otsu)' if auto else ''}: {mask.mean():.0%} of the picture.")
            panels_for_png.append(render.titled(render.stack(panels), name, text_size=16))
            # nearest neighbours in this backbone's space
            thumbs = [captioned_thumb(ctx.items.thumb(j, 224),
                                      [labels[j] or records[j].name.rsplit("/", 1)[-1], f"cosine {c:.3f}"],
                                      border=NEUTRAL if not labelled else SAME if labels[j] == rec.label else OTHER)
                      for j, c in zip(nn_idx, nn_sim)]
            st.markdown(f"**{len(thumbs)} nearest neighbours** (cosine similarity)"
                        + (" — green: same class, red: another" if labelled else ""))
            st.image(thumb_grid(thumbs, per_row=max(2, 10 // len(names))), width="content")

    st.download_button("⬇ Saliency and masks, side by side (PNG)", lambda: widgets.png(render.row(panels_for_png)),
                       f"compare_{rec.name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}.png", "image/png", on_click="ignore",
                       key="dl_side")
