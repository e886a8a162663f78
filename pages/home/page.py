"""Home: what to do first, what each page shows, and what is loaded."""
import streamlit as st
from PIL import Image

from core.io.images import ImageRecord, thumbnail
from pages.shared.datasets import imported_sets, load_data_folder
from pages.shared.resources import get_backbone
from pages.shared.routes import page
from pages.shared.selection import CLASS_DEFAULT
from pages.shared.server import SAMPLE_STAMPS, policy
from pages.shared.sidebar import sidebar

THUMB = 96


@st.cache_data(max_entries=16, show_spinner=False)
def _sample_strip() -> list[tuple[str, Image.Image]]:
    """One sample stamp per class: (class, thumbnail)."""
    ds = load_data_folder(SAMPLE_STAMPS.resolve(), policy())
    first: dict[str, ImageRecord] = {}
    for r in ds.records:
        first.setdefault(r.label, r)
    out = []
    for c, r in sorted(first.items()):
        t = thumbnail(r.decode(), THUMB)
        square = Image.new("RGB", (THUMB, THUMB), "white")  # one height for all: the captions line up
        square.paste(t, ((THUMB - t.width) // 2, (THUMB - t.height) // 2))
        out.append((c, square))
    return out


sel = sidebar(CLASS_DEFAULT)
st.title("Backbone Lens")
st.markdown("See what pretrained vision backbones see, on one cached set of features.")

st.subheader("Start here")
c1, c2, c3 = st.columns(3, gap="large", border=True)
with c1:
    st.markdown("**1 · Look at the sample.** 48 photos in 8 classes come with the app: see how a backbone "
                "arranges them, which classes it keeps apart, and each image's nearest neighbours.")
    st.page_link(page("embeddings"), label="Open Embeddings on the sample", icon=":material/scatter_plot:")
    st.page_link(page("prototypes"), label="Classify them (Prototypes)", icon=":material/target:")
with c2:
    st.markdown("**2 · Bring your own photos.** In the sidebar, *Add your photos*: as unlabelled images, or as a new "
                "class. They join the dataset on every page and stay with this link. Then ask what the model sees "
                "in one of them, and whether it resembles any class at all.")
    st.page_link(page("saliency"), label="Explain one photo (Saliency)", icon=":material/local_fire_department:")
    st.page_link(page("segmentation"), label="Cut out its object (Segmentation)", icon=":material/content_cut:")
    st.page_link(page("prototypes"), label="Which class is it? (Prototypes › Classify)", icon=":material/target:")
with c3:
    st.markdown("**3 · Choose a backbone.** Put two to four backbones side by side on the same images: accuracy, "
                "speed, how alike their representations are, and where they disagree.")
    st.page_link(page("compare"), label="Compare backbones", icon=":material/compare:")

strip = _sample_strip()
cols = st.columns(len(strip))
for col, (c, im) in zip(cols, strip):
    col.image(im, caption=c.replace("_", " "), width=THUMB)

with st.expander("What each page shows"):
    st.markdown(
        "- **Embeddings**: UMAP / PCA / t-SNE of the global embeddings, coloured by class; click a point "
        "for the image and its nearest neighbours.\n"
        "- **Prototypes**: class means as a nearest-mean classifier (NMC), k-NN, linear probe and naive "
        "Bayes accuracies, few-shot curves, class-incremental and TEEN, zero-shot with CLIP; upload an "
        "image to classify it.\n"
        "- **Saliency**: attention per layer and head, rollout, Grad-CAM family, prototype maps, "
        "deletion/insertion scores.\n"
        "- **Segmentation**: click a patch to segment by similarity, k-means parts, PCA foreground, "
        "co-segmentation.\n"
        "- **Discover**: sort unlabelled images into the known classes or new clusters (category discovery); "
        "name a cluster and it becomes a class on every page.\n"
        "- **Why neighbours**: which patches make two images close, patch to patch.\n"
        "- **Compare**: backbones side by side, a metrics table and CKA."
    )

if sel.imported:  # vectors made elsewhere: no backbone to describe
    st.info(f"**{sel.imported}**: an imported set of {imported_sets().get(sel.imported, 0):,} embeddings. Embeddings, "
            "Prototypes and Compare work on its vectors; Saliency and Segmentation need the model that made them.")
    st.stop()
ds = sel.dataset
spec = get_backbone(sel.backbone).spec
st.subheader("Loaded now")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Images", len(ds), help=sel.dataset_label)
m2.metric("Classes", len(ds.classes) if ds.is_labelled else "unlabelled")
m3.metric("Skipped files", len(ds.failures), help="Files that are not usable images (see the sidebar for why).")
m4.metric("Backbone", spec.name, help=f"{spec.family.upper()} · {spec.architecture} · weights {spec.weights_name} "
          f"(sha256 {spec.weights_sha256[:12]}…) · input {spec.input_size} px · a {spec.patch_size}-px "
          f"{'patch' if spec.family != 'cnn' else 'output stride'} per grid cell")
st.caption(spec.description)
