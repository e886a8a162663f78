"""Why, between images: a pair's cosine similarity split into patch-to-patch terms.

``why_neighbours`` (numbers), ``why_figure`` (the picture), ``explain_pair`` (both, for two dataset
records, memoised: the page's call). Methods: :mod:`core.relate.methods`.
"""
from core.relate.contributions import Contributions, Link, PairTerms, pair_terms, top_links
from core.relate.deletion import DeletionCheck, deletion_check
from core.relate.methods import METHODS, DecompositionMethod, choose_method
from core.relate.why import PairExplanation, WhyResult, explain_pair, why_neighbours

__all__ = ["METHODS", "Contributions", "DecompositionMethod", "DeletionCheck", "Link", "PairExplanation", "PairTerms",
           "WhyResult", "choose_method", "deletion_check", "explain_pair", "pair_terms", "top_links", "why_neighbours"]
