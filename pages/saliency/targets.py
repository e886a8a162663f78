"""What a Saliency map explains: a head's ImageNet class, the cosine to a class prototype of the
dataset (the picture itself left out), or to a CLIP text embedding; the choice is remembered per
(backbone, picture, size) so the Faithfulness and Report card tabs explain the same target."""
from __future__ import annotations

import streamlit as st

from core.explain.prototype_maps import PrototypeSet
from core.explain.targets import CamTarget, default_target
from pages.saliency import cache
from pages.saliency.context import SalContext
from pages.shared.resources import features
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.state import choose_backbone
from pages.shared.trust import judge


def prototypes(ctx: SalContext, layer: int) -> PrototypeSet | None:
    """Class means of the dataset's embeddings of block ``layer``, the explained picture left out."""
    fs = features(ctx.sel, kinds=("embedding",), layer=layer)
    sums, rows = cache.class_sums(fs.key, fs)
    try:
        return sums.without(rows.get(ctx.pic.sha256, []))
    except ValueError as e:
        st.info(f"Prototype targets and maps need class labels: {e}")
        return None


def target_key(t: CamTarget, extra: str = "") -> str:
    return f"class:{t.class_index}" if t.kind == "class" else f"{t.label}:{extra}"


def chosen_or_default(ctx: SalContext) -> tuple[CamTarget, str] | None:
    """The target chosen on the Grad-CAM tab for this picture, else
    :func:`core.explain.targets.default_target` (the head's top class, else the nearest class prototype)."""
    chosen = st.session_state.get("sal_target", {}).get((ctx.spec.name, ctx.pic.sha256, ctx.size))
    if chosen is not None:
        return chosen
    b, pic = ctx.b, ctx.pic
    protos = None if b.spec.has_classifier else prototypes(ctx, -1)
    if protos is None and not b.spec.has_classifier:
        return None
    t = default_target(cache.saliency_input(b.spec.name, pic.sha256, ctx.size, pic.image), protos)
    return t, target_key(t, "" if t.kind == "class" else ctx.sel.dataset_key)


def target_picker(ctx: SalContext) -> tuple[CamTarget, str] | None:
    """What Grad-CAM (and the faithfulness scores) explain; the choice is remembered for this image."""
    b, pic, size, spec = ctx.b, ctx.pic, ctx.size, ctx.spec
    kinds = (["ImageNet class"] if spec.has_classifier else []) + ["Dataset class prototype"] + \
            (["Text prompt"] if spec.has_text else [])
    kind = st.radio("Explain", kinds, horizontal=True, key=f"sal_tkind_{spec.name}",
                    help="A head's class logit; or the cosine similarity of the final embedding to a class mean "
                         "of the dataset (the picture itself left out) or to a CLIP text embedding.")
    if kind == "ImageNet class":
        top = cache.top5(spec.name, pic.sha256, size, pic.image)
        c1, c2 = st.columns([2, 3])
        c1.dataframe({"class": [t.name for t in top], "probability": [round(t.probability, 3) for t in top]},
                     hide_index=True)
        names = b.class_names or []
        idx = c2.selectbox("ImageNet class (default: the top prediction)", range(len(names)),
                           index=top[0].index, format_func=lambda i: f"{names[i]} ({i})",
                           key=f"sal_cls_{spec.name}_{pic.sha256[:12]}")
        target = CamTarget.imagenet_class(b, idx)
        key = target_key(target)
    elif kind == "Dataset class prototype":
        protos = prototypes(ctx, -1)
        if protos is None:
            return None
        ranking = protos.ranking(cache.tokens(spec.name, pic.sha256, size, -1, pic.image)[1])  # nearest first
        c1, c2 = st.columns([2, 3])
        c1.dataframe({"class prototype": [c for c, _ in ranking[:5]],
                      "cosine": [round(v, 3) for _, v in ranking[:5]]}, hide_index=True)
        c = c2.selectbox("Class prototype (default: the nearest)", [c for c, _ in ranking],
                         key=f"sal_proto_{spec.name}_{pic.sha256[:12]}_{ctx.sel.dataset_key}")
        target = CamTarget.similarity(f"prototype: {c}", protos.vectors[protos.index(c)])
        key = target_key(target, ctx.sel.dataset_key)
        st.caption(f"Class means of the final embeddings of {sum(protos.counts)} dataset images "
                   f"({len(protos.classes)} classes); the explained picture is left out.")
    else:
        prompt = st.text_input("Text prompt", value="a photo of a bird", key=f"sal_text_{spec.name}")
        ref = b.encode_text([prompt])[0].float().numpy()
        target = CamTarget.similarity(f'text: "{prompt}"', ref)
        key = target_key(target)
    st.session_state.setdefault("sal_target", {})[(spec.name, pic.sha256, size)] = (target, key)
    return target, key


def far_note(ctx: SalContext) -> None:
    """Say first when the picture lies farther from every class of the dataset than the dataset's own
    images do (the rule of pages.shared.trust): a class-prototype target is then a guess; offer the
    ImageNet head of a backbone that has one."""
    if ctx.pic.index is not None and ctx.sel.dataset.records[ctx.pic.index].label:
        return  # a labelled dataset image: its class is known
    fs = features(ctx.sel, kinds=("embedding",), layer=-1)
    rows = [i for i, r in enumerate(fs.records) if r.sha256 != ctx.pic.sha256]
    emb = cache.tokens(ctx.spec.name, ctx.pic.sha256, ctx.size, -1, ctx.pic.image)[1]  # [D] final embedding
    got = judge(fs.subset(rows), emb[None], [ctx.pic.name])
    if not got or not got[0].far:
        if got:
            st.caption(got[0].sentence)
        return
    v = got[0]
    if ctx.spec.has_classifier:
        st.warning(f"**Far from every class of this dataset.** {v.sentence} The Grad-CAM tab explains the ImageNet "
                   "head's top class by default, which does not depend on the dataset's classes.", icon=":material/help:")
        return
    headed = next((n for n in (CLASS_DEFAULT, "efficientnet_lite0") if n != ctx.spec.name), CLASS_DEFAULT)
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    c1.warning(f"**Far from every class of this dataset.** {v.sentence} Maps that explain a class prototype explain "
               f"a guess here. {ctx.spec.name} has no classifier head; **{headed}** has an ImageNet head that names "
               "what it sees.", icon=":material/help:")
    c2.button(f"Use {headed}", key="sal_use_headed", on_click=choose_backbone, args=(headed,),
              help="Switch the sidebar's backbone (every page) to a backbone with a classifier head.")
