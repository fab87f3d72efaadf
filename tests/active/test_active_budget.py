"""Budget and parse_budget."""

from __future__ import annotations

import pytest

from spal.active import Budget, BudgetExhausted, parse_budget


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("25872", 12936, 25872),
        ("2n", 12936, 25872),
        ("2n", 32621, 65242),
        ("0.5n", 12936, 6468),
        ("0.5n", 5, 2),  # rounded down
        ("0.29n", 100, 29),  # exact decimal, no float rounding to 28
        ("n", 7, 7),
        (" 1.5 N ", 10, 15),
        ("2*n", 4, 8),
        ("0", 100, 0),
        ("0n", 100, 0),
    ],
)
def test_parse_budget_accepts_counts_and_multiples_of_n(text, n, expected):
    assert parse_budget(text, n) == expected


@pytest.mark.parametrize("text", ["", "-5", "2.5", "2m", "n2", "1e3", "two n", "-1n", "2nn"])
def test_parse_budget_rejects_anything_else_with_a_hint(text):
    with pytest.raises(ValueError, match="2n or 0.5n"):
        parse_budget(text, 100)


def test_budget_counts_charges_and_stops():
    budget = Budget(2)
    assert (budget.total, budget.remaining, budget.spent) == (2, 2, 0)
    budget.charge()
    budget.remaining -= 1  # what select_support_pairs does
    assert (budget.remaining, budget.spent) == (0, 2)
    with pytest.raises(BudgetExhausted):
        budget.charge()
    assert budget.remaining == 0


def test_budget_state_round_trip_and_validation():
    budget = Budget(10)
    budget.charge()
    other = Budget(0)
    other.load_state_dict(budget.state_dict())
    assert (other.total, other.remaining) == (10, 9)
    with pytest.raises(ValueError):
        other.load_state_dict({"total": 3, "remaining": 4})
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="non-negative whole number"):
            Budget(bad)
