"""Issue 14, case 2: every setting is validated once, up front, by TrainConfig, and everything else asks it."""

from __future__ import annotations

import argparse
import math

import pytest

from harness.protocols import ProtocolError, load_protocol, validate_train
from spal import models
from spal.active import parse_budget
from spal.active.budget import check_budget
from spal.cli import build_parser
from spal.engine.config import CHOICES, PRECISIONS, TrainConfig


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"eps": -3}, "eps = -3 must be > 0 and <= 1"),
        ({"eps": 1.5}, "eps = 1.5 must be > 0 and <= 1"),
        ({"eps": math.nan}, "eps = nan must be a number"),
        ({"temperature": 0}, "temperature = 0 must be > 0"),
        ({"momentum": 1.2}, "momentum = 1.2 must be >= 0 and <= 1"),
        ({"momentum": -0.1}, "momentum = -0.1 must be >= 0 and <= 1"),
        ({"lr": -1e-3}, "lr = -0.001 must be >= 0"),
        ({"k1": 5, "k2": 6}, "k2 = 6 must not exceed k1 = 5"),
        ({"epochs": 2.5}, "epochs = 2.5 must be a whole number"),
        ({"iters": True}, "iters = True must be a whole number"),
        ({"workers": -1}, "workers = -1 must be >= 0"),
        ({"height": 0}, "height = 0 must be >= 1"),
        ({"batch_size": 30}, "batch_size 30 must be a multiple of num_instances 4"),
        ({"bn_groups": 3}, "bn_groups 3 must divide batch_size 64"),
        ({"margin": "1"}, "margin = '1' must be a number"),
        ({"deterministic": 1}, "deterministic = 1 must be true or false"),
        ({"precision": "fp16"}, "precision = 'fp16' must be one of bf16, fp32 or null"),
        ({"precision": True}, "precision = True must be one of bf16, fp32 or null"),
        ({"logs_dir": ""}, "logs_dir must be a non-empty path"),
        ({"annotation_timeout": 0}, "annotation_timeout = 0 must be seconds > 0"),
        ({"arch": "vgg"}, "arch = 'vgg' must be one of resnet18"),
        ({"budget": "2m"}, "budget = '2m': write a whole number"),
        ({"budget": -1}, "budget = -1: write a whole number"),
        ({"oracle": "human", "selection": "random"}, "oracle human asks the pairs of --selection dus"),
    ],
)
def test_every_bad_setting_is_refused_with_what_is_wrong(values: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        TrainConfig(**values)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_all_problems_are_listed_on_one_line() -> None:
    with pytest.raises(ValueError) as err:
        TrainConfig(eps=-3, temperature=0, momentum=2)
    text = str(err.value)
    assert "eps" in text and "temperature" in text and "momentum" in text and "\n" not in text


def test_the_paper_defaults_and_every_protocol_are_valid() -> None:
    TrainConfig()
    for name, dataset in (("paper", "market1501"), ("paper", "msmt17"), ("ci", "synthetic"), ("smoke", "synthetic")):
        TrainConfig.from_dict(load_protocol(name, dataset)["train"])


@pytest.mark.parametrize("budget", ["0", 0, "25872", 25872, "2n", "0.5n", ".5n", "n", "2*n", "2 * n", "2N", " 2n "])
def test_one_budget_grammar_for_the_config_the_budget_and_the_protocols(budget: str | int) -> None:
    assert TrainConfig(budget=budget).budget == str(budget)
    assert check_budget(budget) == str(budget)
    assert parse_budget(budget, 10) >= 0
    train = {**load_protocol("ci", "synthetic")["train"], "budget": budget}
    validate_train(train)


@pytest.mark.parametrize("budget", ["", "2m", "-1", "1e3", "2nn", "two", -3, 1.5, True])
def test_one_budget_grammar_refuses_the_same_texts_everywhere(budget: object) -> None:
    with pytest.raises(ValueError, match="2n or 0.5n"):
        TrainConfig(budget=budget)
    with pytest.raises(ValueError, match="2n or 0.5n"):
        parse_budget(budget, 10)
    with pytest.raises(ProtocolError, match="2n or 0.5n"):
        validate_train({**load_protocol("ci", "synthetic")["train"], "budget": budget})


def _choices(parser: argparse.ArgumentParser, command: str) -> dict[str, tuple]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest: tuple(a.choices) for a in sub._actions if a.choices is not None and a.dest != "help"}


def test_command_line_choices_are_the_config_choices() -> None:
    train = _choices(build_parser(), "train")
    assert train, "the train command offers choices"
    # precision may also be null (automatic), which no flag spells: its values are PRECISIONS, not a CHOICES entry.
    assert train.pop("precision") == PRECISIONS
    for dest, choices in train.items():
        assert choices == CHOICES[dest], dest
    assert tuple(models.names()) == tuple(sorted(CHOICES["arch"]))
    assert _choices(build_parser(), "evaluate")["dataset"] == CHOICES["dataset"]


def test_a_protocol_value_is_checked_by_the_config() -> None:
    train = load_protocol("ci", "synthetic")["train"]
    with pytest.raises(ProtocolError, match="temperature = 0 must be > 0"):
        validate_train({**train, "temperature": 0}, "here")
    with pytest.raises(ProtocolError, match="precision = 'fp16' must be one of bf16, fp32"):
        validate_train({**train, "precision": "fp16"}, "here")
    with pytest.raises(ProtocolError, match="unknown training settings: amp|amp"):
        validate_train({**{k: v for k, v in train.items() if k != "precision"}, "amp": False}, "here")
    for precision in (None, "bf16", "fp32"):
        validate_train({**train, "precision": precision}, "here")
    # The same value the config accepts, the protocol accepts (no second, stricter or looser, definition).
    validate_train({**train, "momentum": 0, "lambda_sp": 0, "workers": 0}, "here")
