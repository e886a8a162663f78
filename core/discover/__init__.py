"""Category discovery: find the classes the labels do not name (generalized category discovery,
Vaze et al., CVPR 2022, on frozen features).

- :mod:`.ssk`: semi-supervised k-means (labelled images fixed to their classes, k-means++ new centres);
- :mod:`.choose_k`: the number of new clusters from the labelled images' clustering accuracy;
- :mod:`.metrics`: clustering accuracy under Hungarian matching, All / Old / New;
- :mod:`.protocol`: "treat these classes as unknown" on a labelled set;
- :mod:`.clusters`: each new cluster's central images, size, nearest known class, margin; names -> labels;
- :mod:`.api`: :func:`discover` and :func:`evaluate_discovery`, one call each.
"""
from core.discover.api import Discovery, DiscoveryScores, discover, evaluate_discovery
from core.discover.choose_k import KCurve, estimate_k
from core.discover.clusters import NewCluster, named_labels
from core.discover.metrics import SplitAccuracy, cluster_accuracy, split_cluster_accuracy
from core.discover.protocol import GCDSplit, hide_classes
from core.discover.ssk import KMeansFit, kmeans, semi_supervised_kmeans

__all__ = ["Discovery", "DiscoveryScores", "GCDSplit", "KCurve", "KMeansFit", "NewCluster", "SplitAccuracy",
           "cluster_accuracy", "discover", "estimate_k", "evaluate_discovery", "hide_classes", "kmeans",
           "named_labels", "semi_supervised_kmeans", "split_cluster_accuracy"]
