"""Active learning of pair constraints: constraint graph, budget, oracles, answer log, pair selection."""

from spal.active.annotations import AnnotationLog
from spal.active.budget import Budget, BudgetExhausted, parse_budget
from spal.active.constraints import ConstraintGraph
from spal.active.oracle import GroundTruthOracle, LoggedOracle, Oracle
from spal.active.selection import STRATEGIES, plan_support_pairs, select_support_pairs, squared_distances

__all__ = [
    "AnnotationLog",
    "Budget",
    "BudgetExhausted",
    "ConstraintGraph",
    "GroundTruthOracle",
    "LoggedOracle",
    "Oracle",
    "STRATEGIES",
    "parse_budget",
    "plan_support_pairs",
    "select_support_pairs",
    "squared_distances",
]
