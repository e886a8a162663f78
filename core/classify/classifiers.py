"""The classifier registry: every training-free or closed-form classifier over frozen features,
built by name (``make_classifier``), each an object with ``fit(X, y)`` and ``predict(X)``.
``classifier_names()`` lists what is registered now; ``classifier_info(name)`` says what a method
assumes, how it is labelled and how many images per class it needs.

Linear probes on off-the-shelf features: Razavian et al., "CNN Features off-the-shelf" (2014)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer
from sklearn.svm import LinearSVC

from core.classify.fecam import FeCAM
from core.classify.knn import CosineKNN
from core.classify.lda import ShrunkLDA
from core.classify.naive_bayes import PerClassVarianceNB, SharedVarianceNB
from core.classify.prototypes import NearestMeanClassifier
from core.classify.ranpac import RanPAC
from core.geometry.vectors import Metric


@dataclass(frozen=True)
class ClassifierInfo:
    """What the UI and the CLI say about a registered classifier.

    Attributes:
        name: registry key.
        label: short human name.
        assumes: one sentence on what the method assumes about the features.
        min_shots: fewest training images per class it can be fitted on.
        incremental: whether it has ``partial_fit`` adding classes without old images.
        factory: ``factory(n_train=..., **kw)`` builds an unfitted estimator.
        max_train: the most training images an evaluation fits it on (a seeded, stratified sample
            above; None: all). Set where the fit or the prediction grows faster than the data is
            worth on a CPU: iterative solvers, RanPAC's 10,000 x 10,000 Gram matrix, k-NN's scan.
    """

    name: str
    label: str
    assumes: str
    min_shots: int
    incremental: bool
    factory: Callable[..., Any]
    max_train: int | None = None


_REGISTRY: dict[str, ClassifierInfo] = {}


def register_classifier(name: str, label: str, assumes: str, *, min_shots: int = 1, incremental: bool = False,
                        max_train: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``factory(n_train=None, **kw)`` under ``name``; a duplicate name raises."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"classifier {name!r} is already registered")
        _REGISTRY[name] = ClassifierInfo(name, label, assumes, min_shots, incremental, fn, max_train)
        return fn
    return deco


@register_classifier("nmc", "NMC (nearest class mean)",
                     "Each class is one point, its mean; distance alone decides (no spread, no correlation).",
                     incremental=True)
def _make_nmc(n_train: int | None = None, metric: Metric = "cosine") -> NearestMeanClassifier:
    return NearestMeanClassifier(metric=metric)


@register_classifier("knn", "k-NN (cosine, k=5)",
                     "Nothing about class shape: an image takes the majority label of its 5 nearest training images.",
                     max_train=20_000)
def _make_knn(n_train: int | None = None, n_neighbors: int = 5) -> CosineKNN:
    k = n_neighbors if n_train is None else max(1, min(n_neighbors, n_train))
    return CosineKNN(n_neighbors=k)


@register_classifier("linear", "linear probe (logistic regression)",
                     "Classes are separated by hyperplanes fitted discriminatively (L2-normalised features, C = 1).",
                     max_train=20_000)
def _make_linear(n_train: int | None = None, C: float = 1.0, max_iter: int = 5000, **kw: Any) -> Any:
    # L2-normalised features make C comparable across backbones; lbfgs converges well within 5000.
    return make_pipeline(Normalizer(norm="l2"), LogisticRegression(C=C, max_iter=max_iter, **kw))


@register_classifier("linear_svm", "linear SVM (Razavian et al. 2014)",
                     "Classes are separated by maximum-margin hyperplanes on L2-normalised features (one-vs-rest, "
                     "C = 1): the off-the-shelf protocol of Razavian et al.", max_train=10_000)
def _make_linear_svm(n_train: int | None = None, C: float = 1.0, **kw: Any) -> Any:
    return make_pipeline(Normalizer(norm="l2"), LinearSVC(C=C, **kw))


@register_classifier("nb", "naive Bayes, shared variance (Zheng et al. 2023)",
                     "Independent Gaussian features with one variance per feature shared by all classes: "
                     "a linear rule, the generative twin of logistic regression.", incremental=True, max_train=20_000)
def _make_nb(n_train: int | None = None, **kw: Any) -> SharedVarianceNB:
    return SharedVarianceNB(**kw)


@register_classifier("nb_per_class", "naive Bayes, per-class variance (scikit-learn GaussianNB)",
                     "Independent Gaussian features with a variance per class and feature: quadratic, and "
                     "noisy when a class has few images.", incremental=True, max_train=20_000)
def _make_nb_per_class(n_train: int | None = None, **kw: Any) -> PerClassVarianceNB:
    return PerClassVarianceNB(**kw)


@register_classifier("lda", "LDA (shared covariance, Ledoit-Wolf)",
                     "Gaussian classes with one full covariance shared by all, shrunk towards a scaled identity.",
                     min_shots=2, incremental=True, max_train=20_000)
def _make_lda(n_train: int | None = None) -> ShrunkLDA:
    return ShrunkLDA()


@register_classifier("ranpac", "RanPAC (random projection + decorrelated prototypes)",
                     "After a random ReLU expansion to 10,000 dimensions, classes are linearly separable; "
                     "the Gram matrix removes the correlation between prototypes.", incremental=True, max_train=2_000)
def _make_ranpac(n_train: int | None = None, M: int = 10000, ridge: float | None = None, seed: int = 0) -> RanPAC:
    return RanPAC(M=M, ridge=ridge, seed=seed)


@register_classifier("fecam", "FeCAM (per-class Mahalanobis)",
                     "Each class has its own covariance (shrunk, on Tukey-transformed features): classes differ "
                     "in spread and shape, not only in mean.", min_shots=2, incremental=True, max_train=20_000)
def _make_fecam(n_train: int | None = None, **kw: Any) -> FeCAM:
    return FeCAM(**kw)


def classifier_names() -> tuple[str, ...]:
    """Names of the classifiers registered now, in registration order."""
    return tuple(_REGISTRY)


def check_classifier(method: str) -> None:
    """Raise ``ValueError`` naming the registered classifiers if ``method`` is not one of them."""
    if method not in _REGISTRY:
        raise ValueError(f"unknown classifier {method!r}; choose one of {list(_REGISTRY)}")


def classifier_info(method: str) -> ClassifierInfo:
    """The :class:`ClassifierInfo` of a registered classifier."""
    check_classifier(method)
    return _REGISTRY[method]


def make_classifier(method: str, *, n_train: int | None = None, **kw: Any) -> Any:
    """Build an unfitted sklearn-style classifier by name.

    Args:
        method: a name from :func:`classifier_names`: ``"nmc"`` (cosine unless ``metric=``),
            ``"knn"`` (cosine, ``k = min(5, n_train)``), ``"linear"`` (L2 normalisation then
            LogisticRegression, ``C=1.0``), ``"linear_svm"`` (L2 normalisation then LinearSVC, ``C=1.0``:
            Razavian et al.'s protocol), ``"nb"`` (shared-variance naive Bayes, Zheng et al.),
            ``"nb_per_class"`` (GaussianNB), ``"lda"``, ``"ranpac"``, ``"fecam"``.
        n_train: size of the training set it will be fitted on (caps k for k-NN).
        **kw: passed to the estimator (e.g. ``metric``, ``n_neighbors``, ``C``).

    Returns:
        an object with ``fit(X, y)`` and ``predict(X)`` (and ``partial_fit`` where ``incremental``).
    """
    return classifier_info(method).factory(n_train=n_train, **kw)
