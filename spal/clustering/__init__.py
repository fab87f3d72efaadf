"""Clustering of the instance memory: k-NN search, k-reciprocal Jaccard distance, constrained DBSCAN.

``jaccard_distance`` (SPEC 3.1) turns ``(n, d)`` features into a sparse ``(n, n)`` distance matrix and
``constrained_dbscan`` (SPEC 3.2) turns that matrix and a constraint graph into pseudo labels;
``cluster_statistics`` scores pseudo labels against ground-truth identities for the logs.
"""

from spal.clustering.dbscan import constrained_dbscan
from spal.clustering.jaccard import jaccard_distance, neighbour_table
from spal.clustering.knn import knn_search
from spal.clustering.metrics import cluster_statistics

__all__ = ["cluster_statistics", "constrained_dbscan", "jaccard_distance", "knn_search", "neighbour_table"]
