"""The kinds of support pair and which kinds each selection strategy asks.

Apart from :mod:`spal.active.selection` (which needs torch and faiss) so that the annotation station and the
configuration checks can name them without loading either.
"""

from __future__ import annotations

__all__ = ["KINDS", "STRATEGY_KINDS"]

#: Positive pairs (within a cluster, is it one person?) and negative pairs (across clusters, two people?).
KINDS: tuple[str, ...] = ("positive", "negative")

#: The candidate kinds of every strategy that selects by uncertainty; ``random`` draws pairs and has none.
STRATEGY_KINDS: dict[str, tuple[str, ...]] = {
    "dus": KINDS,
    "positive-only": ("positive",),
    "negative-only": ("negative",),
}
