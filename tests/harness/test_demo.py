"""``make demo``'s closing words read the comparison whichever way it falls."""

from __future__ import annotations

from harness.demo import verdict_text


def test_a_gain_is_reported_as_a_gain_of_one_seed() -> None:
    text = verdict_text({"mAP": 47.44, "queries_spent": 842, "budget": 3200}, {"mAP": 43.24}, seed=1)
    assert "SPAL mAP 47.44 % with 842 of 3200 pair queries vs 43.24 % without labels (seed 1)" in text
    assert "raised mAP by 4.20 points" in text
    assert "One seed is one draw" in text


def test_a_loss_is_reported_as_a_loss() -> None:
    text = verdict_text({"mAP": 43.37, "queries_spent": 854, "budget": 3200}, {"mAP": 43.73}, seed=5)
    assert "0.36 points BELOW the run without labels" in text
    assert "raised" not in text


def test_no_change_is_reported_as_none() -> None:
    text = verdict_text({"mAP": 40.0, "queries_spent": 10, "budget": 20}, {"mAP": 40.0}, seed=2)
    assert "the answers changed nothing" in text
