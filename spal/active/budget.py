"""The query budget: how many pair questions the oracle may still be asked (SPEC sections 1 and 2: B = 2n)."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

__all__ = ["Budget", "BudgetExhausted", "check_budget", "parse_budget"]

# "25872", "2n", "0.5n", "n", ".5 n", "2*n" (case-insensitive, spaces allowed around the factor).
_RELATIVE = re.compile(r"^(?P<factor>\d+(?:\.\d*)?|\.\d+)?\s*\*?\s*n$")


class BudgetExhausted(RuntimeError):
    """Raised by :meth:`Budget.charge` when no question is left."""


class Budget:
    """A count of pair questions left.

    :attr:`remaining` is a plain int attribute: code that only knows "an object with an int ``.remaining``"
    (e.g. :func:`spal.active.select_support_pairs`) lowers it directly; :meth:`charge` does the same
    with a check.

    Args:
        total: questions allowed over the whole run (``>= 0``).
    """

    def __init__(self, total: int) -> None:
        if isinstance(total, bool) or int(total) != total or total < 0:
            raise ValueError(f"a budget is a non-negative whole number of pair queries, got {total!r}")
        self.total = int(total)
        self.remaining = int(total)

    @property
    def spent(self) -> int:
        """Questions asked so far (``total - remaining``)."""
        return self.total - self.remaining

    def charge(self) -> None:
        """Spend one question; raises :class:`BudgetExhausted` when none is left."""
        if self.remaining <= 0:
            raise BudgetExhausted(f"the query budget of {self.total} pair questions is spent")
        self.remaining -= 1

    def state_dict(self) -> dict[str, int]:
        """``{"total": int, "remaining": int}``."""
        return {"total": self.total, "remaining": self.remaining}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; ``0 <= remaining <= total`` is checked."""
        total, remaining = int(state["total"]), int(state["remaining"])
        if not 0 <= remaining <= total:
            raise ValueError(f"invalid budget state: remaining={remaining} must lie in [0, total={total}]")
        self.total, self.remaining = total, remaining

    def __repr__(self) -> str:
        return f"Budget(total={self.total}, remaining={self.remaining})"


def _factor(text: str | int) -> Fraction | int:
    """The budget's grammar, the only one: a whole count (an int, or digits) or a factor of n (a Fraction)."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    cleaned = str(text).strip().lower()
    if cleaned.isdigit():
        return int(cleaned)
    match = _RELATIVE.match(cleaned) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"budget = {text!r}: write a whole number of pair queries (e.g. 25872 or 0) or a multiple of the "
            "number of training images n (e.g. 2n or 0.5n)"
        )
    # Fraction parses the decimal exactly, so "0.29n" with n = 100 gives 29, not 28.
    return Fraction(match.group("factor") or "1")


def check_budget(text: str | int) -> str:
    """Check a budget as written on the command line or in a protocol file, before ``n`` is known.

    Returns:
        ``str(text)``. Raises ``ValueError`` (naming the accepted forms) for anything :func:`parse_budget` would
        refuse.
    """
    _factor(text)
    return str(text)


def parse_budget(text: str | int, n: int) -> int:
    """Turn a budget as written on the command line into a number of pair queries.

    Args:
        text: an absolute count (``"25872"``, ``"0"``) or a multiple of the number of training images
            (``"2n"``, ``"0.5n"``, ``"n"``); a fractional result is rounded down.
        n: number of training images.

    Returns:
        The number of queries (``>= 0``). Raises ``ValueError`` for anything else.
    """
    if n < 0:
        raise ValueError(f"the number of training images must be >= 0, got n={n}")
    factor = _factor(text)
    return factor if isinstance(factor, int) else math.floor(factor * n)
