"""Evaluation: feature extraction and the retrieval metrics of SPEC section 3.6 (mAP, mINP, CMC)."""

from spal.evaluation.features import evaluate_model, extract_features
from spal.evaluation.ranking import evaluate, pairwise_squared_distance

__all__ = ["evaluate", "evaluate_model", "extract_features", "pairwise_squared_distance"]
