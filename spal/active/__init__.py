"""Active learning of pair constraints: constraint graph, budget, oracles, answer log, pair selection, selectors.

The names are loaded on first use (PEP 562): the budget grammar, the constraint graph and the answer log need
neither torch nor faiss, so ``spal annotate`` and the configuration checks start without loading them.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AnnotationLog": "annotations",
    "Budget": "budget",
    "BudgetExhausted": "budget",
    "check_budget": "budget",
    "parse_budget": "budget",
    "ConstraintGraph": "constraints",
    "GroundTruthOracle": "oracle",
    "LoggedOracle": "oracle",
    "Oracle": "oracle",
    "GroundTruthSelect": "selector",
    "PairSelector": "selector",
    "STRATEGIES": "selection",
    "plan_support_pairs": "selection",
    "select_support_pairs": "selection",
    "squared_distances": "selection",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return __all__
