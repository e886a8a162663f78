"""The concept atlas: k concepts found without training in a dataset's patch features, per backbone.

One concern per module: ``methods`` (the registry of factorisations: CRAFT's NMF, shifted NMF, spherical
k-means), ``nmf`` (the HALS solver), ``nnls`` (codes against fixed concepts), ``tokens`` (patch tokens
from memory or the feature cache, the fit sample), ``apply`` (encoding a dataset chunk by chunk),
``contributions`` (the exact split of the NMC score over concepts), ``fidelity`` (variance explained,
deletion test), ``atlas`` (orchestration and cache: :func:`core.concepts.atlas.concept_atlas`) and
``figures`` (the atlas and concept-map figures).
"""
