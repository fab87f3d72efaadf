"""Protocol files: SPEC section 2 settings, complete and valid train configs, variants, BN layout."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.protocols import (
    PROTOCOL_DIR,
    TRAIN_KEYS,
    ProtocolError,
    apply_overrides,
    bn_groups_for,
    load_protocol,
    parse_variant,
    protocol_names,
    variant_name,
    variants,
)
from spal.cli import SYNTHETIC_DEFAULTS
from spal.engine.config import TrainConfig

# SPEC section 2, the paper's runs.
PAPER_SETTINGS = {
    "arch": "resnet50",
    "height": 256,
    "width": 128,
    "batch_size": 64,
    "num_instances": 4,
    "epochs": 50,
    "iters": 400,
    "lr": 3.5e-4,
    "weight_decay": 5e-4,
    "step_size": 20,
    "gamma": 0.1,
    "eps": 0.6,
    "min_samples": 4,
    "k1": 30,
    "k2": 6,
    "temperature": 0.05,
    "momentum": 0.2,
    "margin": 1.0,
    "lambda_sp": 1.0,
    "budget": "2n",
    "selection": "dus",
    "clustering": "constrained",
    "propagation": "on",
    "eval_step": 10,
    "seed": 1,
    "oracle": "ground-truth",
}
ABLATIONS = [
    "selection=random",
    "clustering=plain",
    "lambda_sp=0",
    "propagation=off",
    "selection=positive-only",
    "selection=negative-only",
]


@pytest.fixture()
def protocol_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "protocols"
    folder.mkdir()
    for path in PROTOCOL_DIR.glob("*.json"):
        shutil.copy(path, folder)
    return folder


def _edit(folder: Path, name: str, edit: Callable[[dict[str, Any]], Any]) -> None:
    path = folder / f"{name}.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_protocol_names() -> None:
    assert protocol_names() == ["ci", "paper", "smoke", "synthetic-bench"]


@pytest.mark.parametrize("dataset", ["market1501", "msmt17"])
def test_paper_protocol_is_spec_section_2(dataset: str) -> None:
    protocol = load_protocol("paper", dataset)
    train = protocol["train"]
    assert list(train) == list(TRAIN_KEYS) == TrainConfig.keys()
    assert {k: train[k] for k in PAPER_SETTINGS} == PAPER_SETTINGS
    assert train["dataset"] == dataset and train["synthetic"] is None
    # ImageNet weights from the hub cache (or PRETRAINED=PATH), never a silent random start (SPEC 3.8).
    assert train["pretrained"] == "imagenet"
    assert protocol["layout"] | {"description": ""} == {
        "description": "",
        "gpus": 4,
        "per_gpu_batch": 16,
        "global_batch": 64,
        "bn_group_size": 16,
    }
    assert protocol["seeds"] == [1] and isinstance(protocol["version"], int)
    assert protocol["num_train_images"] == {"market1501": 12936, "msmt17": 32621}[dataset]
    assert [a["name"] for a in protocol["ablation"]] == ABLATIONS
    assert protocol["sweep"]["budgets"] == ["0", "0.25n", "0.5n", "1n", "2n"]
    assert protocol["sweep"]["selections"] == ["dus", "random"]


def test_bn_groups_emulate_four_gpus() -> None:
    protocol = load_protocol("paper", "market1501")
    assert [bn_groups_for(protocol, w) for w in (1, 2, 4)] == [4, 2, 1]
    assert protocol["train"]["bn_groups"] == 4
    with pytest.raises(ProtocolError, match="3 processes .* run on 1, 2 or 4 processes"):
        bn_groups_for(protocol, 3)


@pytest.mark.parametrize("layout", ["market1501", "msmt17"])
def test_ci_protocol_is_small_cpu_synthetic(layout: str) -> None:
    protocol = load_protocol("ci", "synthetic", layout)
    train = protocol["train"]
    assert train["dataset"] == "synthetic" and train["synthetic_layout"] == layout
    assert train["arch"] == "resnet18" and train["device"] == "cpu"
    assert train["height"] * train["width"] <= 64 * 32
    assert train["epochs"] * train["iters"] <= 100
    assert (train["batch_size"], train["num_instances"]) == (32, 4)
    assert 10 <= train["k1"] <= 15
    assert set(train["synthetic"]) >= {"num_ids", "num_cams", "images_per_id"}
    assert protocol["synthetic_layout"] == layout
    assert bn_groups_for(protocol, 1) == train["bn_groups"] == 1
    # Random weights on purpose, said so: the synthetic protocols never look for ImageNet files.
    assert train["pretrained"] == "none" == load_protocol("smoke", "synthetic", layout)["train"]["pretrained"]


def test_ci_default_layout_and_msmt_cameras() -> None:
    assert load_protocol("ci", "synthetic")["train"]["synthetic_layout"] == "market1501"
    assert load_protocol("ci", "synthetic", "msmt17")["train"]["synthetic"]["num_cams"] == 15


def test_smoke_is_tiniest() -> None:
    smoke = load_protocol("smoke", "synthetic")["train"]
    ci = load_protocol("ci", "synthetic")["train"]
    assert smoke["epochs"] <= 2 and smoke["epochs"] * smoke["iters"] < ci["epochs"] * ci["iters"]
    assert smoke["synthetic"]["num_ids"] < ci["synthetic"]["num_ids"]
    assert load_protocol("smoke", "market1501")["train"]["synthetic"] is None


# The ci protocol's settings that `spal train -d synthetic` leaves as they are, and why.
CI_ONLY = {
    "dataset": "the command line's -d names it",
    "pretrained": "ci says none, the command line's null is the same random initialisation",
    "bn_groups": "ci keeps one BatchNorm group over its batch of 32; the command line the 16-image groups",
    "deterministic": "ci pins deterministic kernels for its regression numbers; --deterministic asks for them",
    "device": "ci pins the CPU; the command line uses a GPU when there is one",
    "synthetic": "ci names its generated set's size; the command line uses the default set",
}


def test_the_command_lines_synthetic_defaults_are_the_ci_protocols_settings() -> None:
    """spal.cli.SYNTHETIC_DEFAULTS repeats settings of harness/protocols/ci.json, tied here: spal never reads the
    harness's files, and a protocol keeps every value itself (its version must be raised whenever one changes).
    Every ci setting off TrainConfig's defaults is a synthetic default of the same value, or named in CI_ONLY."""
    ci = load_protocol("ci", "synthetic")["train"]
    paper = TrainConfig().to_dict()
    # The command line's own logs folder, so that a synthetic run does not land in a paper run's.
    shared = {k: v for k, v in SYNTHETIC_DEFAULTS.items() if k != "logs_dir"}
    assert shared == {k: ci[k] for k in shared}
    assert {k for k in ci if ci[k] != paper[k]} - set(SYNTHETIC_DEFAULTS) == set(CI_ONLY)


def test_unknown_protocol_dataset_or_layout_lists_the_choices() -> None:
    with pytest.raises(ProtocolError, match="choose one of ci, paper, smoke"):
        load_protocol("fast", "market1501")
    with pytest.raises(ProtocolError, match="choose one of synthetic"):
        load_protocol("ci", "market1501")
    with pytest.raises(ProtocolError, match="no layout 'cuhk03'"):
        load_protocol("ci", "synthetic", "cuhk03")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["train"].update(learning_rate=0.1), "unknown TrainConfig key(s) learning_rate"),
        (lambda d: d["train"].pop("k2"), "missing TrainConfig key(s) k2"),
        (lambda d: d["train"].update(selection="best"), "selection = 'best' must be one of dus, random"),
        (lambda d: d["train"].update(budget="two"), "budget = 'two': write a whole number of pair queries"),
        (lambda d: d["train"].update(epochs=0), "epochs = 0 must be >= 1"),
        (
            lambda d: d["datasets"]["synthetic"]["train"].update(colour=1),
            "datasets.synthetic: unknown TrainConfig",
        ),
        (lambda d: d["ablation"][0].update(name="selection=dus"), "name it 'selection=random'"),
        (lambda d: d["ablation"][1]["overrides"].update(clustering="kmeans"), "ablation[1]: clustering"),
        (lambda d: d.pop("version"), "missing: version"),
        (lambda d: d["layout"].update(per_gpu_batch=30, bn_group_size=30), "must be a multiple of num_instances"),
        (lambda d: d["layout"].update(per_gpu_batch=24), "per_gpu_batch must be a multiple of bn_group_size"),
        (lambda d: d["layout"].update(global_batch=32), "global_batch follow(s) from the layout"),
        (lambda d: d["train"].update(batch_size=32, bn_groups=1), "train.batch_size, train.bn_groups follow(s)"),
        (
            lambda d: d["datasets"]["synthetic"]["train"].update(batch_size=16),
            "datasets.synthetic: train.batch_size follow(s) from the protocol's layout",
        ),
        (lambda d: d["train"].update(momentum=1.5), "momentum = 1.5 must be >= 0 and <= 1"),
        (lambda d: d["train"].update(k2=20), "k2 = 20 must not exceed k1 = 12"),
        (lambda d: d["train"].update(temperature=0), "temperature = 0 must be > 0"),
        (lambda d: d["sweep"]["budgets"].append("2N*"), "sweep: budget = '2N*'"),
    ],
)
def test_invalid_protocols_are_rejected(
    protocol_copy: Path, edit: Callable[[dict[str, Any]], Any], message: str
) -> None:
    _edit(protocol_copy, "ci", edit)
    with pytest.raises(ProtocolError) as err:
        load_protocol("ci", "synthetic", directory=protocol_copy)
    assert "ci.json" in str(err.value)
    assert message in str(err.value)


def test_overrides_are_validated() -> None:
    train = load_protocol("paper", "market1501")["train"]
    assert apply_overrides(train, {"lambda_sp": 0.0})["lambda_sp"] == 0.0
    assert train["lambda_sp"] == 1.0  # the input is not modified
    with pytest.raises(ProtocolError, match="unknown TrainConfig key"):
        apply_overrides(train, {"lambda": 0.0})


def test_variant_names_round_trip() -> None:
    overrides = {"selection": "random", "budget": "0.5n"}
    assert variant_name(overrides) == "selection=random,budget=0.5n"
    assert parse_variant(variant_name(overrides)) == overrides
    assert variant_name({}) == "full" and parse_variant("full") == {}
    with pytest.raises(ProtocolError, match="is not key=value"):
        parse_variant("random")


def test_variants_cover_ablation_and_sweep_once() -> None:
    listed = variants(load_protocol("paper", "msmt17"))
    names = [v["name"] for v in listed]
    assert len(names) == len(set(names))
    assert names[: 1 + len(ABLATIONS)] == ["full", *ABLATIONS]
    by_name = {v["name"]: v for v in listed}
    assert by_name["budget=0"]["train"]["budget"] == 0
    assert by_name["selection=random,budget=0.25n"]["train"]["selection"] == "random"
    # DUS at 2n is "full" and random at 2n is the ablation's "selection=random": not repeated.
    assert "budget=2n" not in by_name and "selection=random,budget=2n" not in by_name
    # Budget 0 asks nothing, so it is run once, not once a selection strategy.
    assert "selection=random,budget=0" not in by_name
    sweep = [v for v in listed if v["kind"] == "sweep"]
    assert len(sweep) == 2 * 5 - 3


# The keys the run/config contract fixes (the engine may add more; the protocols must name those too).
CONTRACT_KEYS = (
    "dataset synthetic_layout data_dir logs_dir arch pretrained height width batch_size num_instances "
    "workers epochs iters lr weight_decay step_size gamma eps min_samples k1 k2 temperature momentum margin "
    "lambda_sp budget selection clustering propagation eval_step seed bn_groups deterministic oracle device "
    "precision synthetic"
).split()


@pytest.mark.parametrize(("name", "dataset"), [("paper", "market1501"), ("ci", "synthetic"), ("smoke", "msmt17")])
def test_every_protocol_builds_the_engine_train_config(name: str, dataset: str) -> None:
    train = load_protocol(name, dataset)["train"]
    assert set(CONTRACT_KEYS) <= set(train)
    config = TrainConfig.from_dict(train)
    assert dataclasses.asdict(config) == {**train, "budget": str(train["budget"])}


def test_synthetic_bench_starts_from_the_pretrain_object_and_spal_pretrain_makes_the_same_file() -> None:
    import dataclasses

    from harness.protocols import PRETRAIN_MARKER
    from spal.engine.pretrain import PretrainConfig

    protocol = load_protocol("synthetic-bench", "synthetic")
    assert protocol["train"]["pretrained"] == PRETRAIN_MARKER
    # `spal pretrain` / `make pretrain` without flags make exactly the benchmark's file.
    assert protocol["pretrain"] == dataclasses.asdict(PretrainConfig())
    # The benchmark population and the pretraining population are different generator draws.
    assert protocol["train"]["synthetic"]["seed"] != protocol["pretrain"]["data_seed"]
    assert len(protocol["seeds"]) == 5


def test_a_pretrain_marker_without_a_pretrain_object_is_refused(tmp_path) -> None:
    import json

    from harness.protocols import ProtocolError, read_protocol_file

    data = json.loads((PROTOCOL_DIR / "synthetic-bench.json").read_text())
    broken = dict(data)
    del broken["pretrain"]
    (tmp_path / "synthetic-bench.json").write_text(json.dumps(broken))
    with pytest.raises(ProtocolError, match="no pretrain object"):
        read_protocol_file(tmp_path / "synthetic-bench.json")
    orphan = {**data, "train": {**data["train"], "pretrained": None}}
    (tmp_path / "synthetic-bench.json").write_text(json.dumps(orphan))
    with pytest.raises(ProtocolError, match="needs train.pretrained"):
        read_protocol_file(tmp_path / "synthetic-bench.json")
    bad = {**data, "pretrain": {**data["pretrain"], "epochs": 0}}
    (tmp_path / "synthetic-bench.json").write_text(json.dumps(bad))
    with pytest.raises(ProtocolError, match="pretrain: pretrain epochs"):
        read_protocol_file(tmp_path / "synthetic-bench.json")
