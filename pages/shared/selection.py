"""What the sidebar chose: a frozen value every page reads (no page reads another's globals)."""
from __future__ import annotations

from dataclasses import dataclass

from core.io.images import Dataset

IMPORTED = "imported:"  # dataset radio value (and Selection.dataset_label) prefix of an imported set
CLASS_DEFAULT = "mobilenetv2"        # default backbone of the class views (embeddings, prototypes, compare)
PATCH_DEFAULT = "vits14_saliency"    # default backbone of the attention and patch views


@dataclass(frozen=True)
class Selection:
    """The sidebar's choice.

    Attributes:
        dataset: the images (empty for an imported set of embeddings).
        dataset_label: "sample stamps", "uploads", a folder path, or ``imported:<name>``.
        backbone: registry name ("imported" for an imported set).
        size: input side in pixels (None: the backbone's default).
        layer: block index (None: each output's default block).
        base_dataset: the dataset as read, when names accepted on the Discover page relabel ``dataset``
            (``pages.shared.labels``); None when none is.
    """

    dataset: Dataset
    dataset_label: str
    backbone: str
    size: int | None
    layer: int | None
    base_dataset: Dataset | None = None

    @property
    def base(self) -> Dataset:
        """The dataset as read, before any accepted name (what the Discover page clusters)."""
        return self.base_dataset if self.base_dataset is not None else self.dataset

    @property
    def imported(self) -> str | None:
        """The name of the imported embedding set shown, or None for a dataset of images."""
        return self.dataset_label[len(IMPORTED):] if self.dataset_label.startswith(IMPORTED) else None

    @property
    def dataset_key(self) -> str:
        """The dataset's identity (core's ``Dataset.key``: content, labels and names)."""
        return self.dataset.key
