"""The classifier registry: every training-free or closed-form classifier over frozen features,
built by name (``make_classifier``), each an object with ``fit(X, y)`` and ``predict(X)``.

Linear probes on off-the-shelf features: Razavian et al., "CNN Features off-the-shelf" (2014)."""
from __future__ import annotations

from typing import Any, Callable

from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from core.classify.prototypes import NearestMeanClassifier
from core.geometry.vectors import Metric

_FACTORIES: dict[str, Callable[..., Any]] = {}


def _register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _FACTORIES:
            raise ValueError(f"classifier {name!r} is already registered")
        _FACTORIES[name] = fn
        return fn
    return deco


@_register("nmc")
def _make_nmc(n_train: int | None = None, metric: Metric = "cosine") -> NearestMeanClassifier:
    return NearestMeanClassifier(metric=metric)


@_register("knn")
def _make_knn(n_train: int | None = None, n_neighbors: int = 5, **kw: Any) -> KNeighborsClassifier:
    k = n_neighbors if n_train is None else max(1, min(n_neighbors, n_train))
    return KNeighborsClassifier(n_neighbors=k, metric="cosine", **kw)


@_register("linear")
def _make_linear(n_train: int | None = None, C: float = 1.0, max_iter: int = 5000, **kw: Any) -> Any:
    # L2-normalised features make C comparable across backbones; lbfgs converges well within 5000.
    return make_pipeline(Normalizer(norm="l2"), LogisticRegression(C=C, max_iter=max_iter, **kw))


@_register("nb")
def _make_nb(n_train: int | None = None, **kw: Any) -> GaussianNB:
    return GaussianNB(**kw)


CLASSIFIERS: tuple[str, ...] = tuple(_FACTORIES)


def check_classifier(method: str) -> None:
    """Raise ``ValueError`` naming the registered classifiers if ``method`` is not one of them."""
    if method not in _FACTORIES:
        raise ValueError(f"unknown classifier {method!r}; choose one of {list(_FACTORIES)}")


def make_classifier(method: str, *, n_train: int | None = None, **kw: Any) -> Any:
    """Build an unfitted sklearn-style classifier by name.

    Args:
        method: ``"nmc"`` (NearestMeanClassifier, cosine unless ``metric=`` is given),
            ``"knn"`` (KNeighborsClassifier, cosine metric, ``k = min(5, n_train)``),
            ``"linear"`` (L2 normalisation then LogisticRegression, ``C=1.0``) or
            ``"nb"`` (GaussianNB).
        n_train: size of the training set it will be fitted on (caps k for k-NN).
        **kw: passed to the estimator (e.g. ``metric``, ``n_neighbors``, ``C``).

    Returns:
        an object with ``fit(X, y)`` and ``predict(X)``.
    """
    check_classifier(method)
    return _FACTORIES[method](n_train=n_train, **kw)
