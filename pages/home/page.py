"""Home: what each page shows and what is loaded."""
import streamlit as st

from pages.shared.datasets import imported_sets
from pages.shared.resources import get_backbone
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.sidebar import sidebar

sel = sidebar(CLASS_DEFAULT)
st.title("Backbone Lens")
st.markdown(
    "See what pretrained vision backbones see, on one cached set of features.\n\n"
    "- **Embeddings**: UMAP / PCA / t-SNE of the global embeddings, coloured by class; click a point "
    "for the image and its nearest neighbours.\n"
    "- **Prototypes**: class means as a nearest-mean classifier (NMC), k-NN, linear probe and naive "
    "Bayes accuracies, few-shot curves, class-incremental and TEEN, zero-shot with CLIP; upload an "
    "image to classify it.\n"
    "- **Saliency**: attention per layer and head, rollout, Grad-CAM family, prototype maps, "
    "deletion/insertion scores.\n"
    "- **Segmentation**: click a patch to segment by similarity, k-means parts, PCA foreground, "
    "co-segmentation.\n"
    "- **Compare**: backbones side by side, a metrics table and CKA."
)
if sel.imported:  # vectors made elsewhere: no backbone to describe
    st.info(f"**{sel.imported}**: an imported set of {imported_sets().get(sel.imported, 0):,} embeddings. Embeddings, "
            "Prototypes and Compare work on its vectors; Saliency and Segmentation need the model that made them.")
    st.stop()
ds = sel.dataset
spec = get_backbone(sel.backbone).spec
c1, c2, c3 = st.columns(3)
c1.metric("Images", len(ds), help=sel.dataset_label)
c2.metric("Classes", len(ds.classes) if ds.is_labelled else "unlabelled")
c3.metric("Skipped files", len(ds.failures))
st.subheader(f"Backbone: {spec.name}")
st.write(spec.description)
st.caption(f"{spec.family.upper()} · {spec.architecture} · weights {spec.weights_name} "
           f"(sha256 {spec.weights_sha256[:12]}…) · input {spec.input_size}px · patch/stride {spec.patch_size}")
