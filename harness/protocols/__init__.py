"""Versioned run protocols: every hyper-parameter of a run, named, in one JSON file a protocol.

A protocol file (``harness/protocols/<name>.json``) holds:

- ``name`` (the file's stem), ``version`` (an integer, raised whenever a setting changes, so that runs made
  under different settings are never averaged together), ``description`` and ``seeds`` (the default seeds);
- ``layout``: the GPU layout the numbers assume (``gpus``, ``per_gpu_batch`` and ``bn_group_size``: how many
  images BatchNorm normalises together);
- ``train``: a value for every key of ``spal.engine.config.TrainConfig`` (:data:`TRAIN_KEYS`), the defaults,
  except those the layout decides (:data:`DERIVED_TRAIN_KEYS`);
- ``datasets``: per data set a ``description``, optionally ``num_train_images``, a ``train`` object of
  overrides and, for generated data, ``layouts`` (per on-disk layout, a further ``train`` object of
  overrides);
- ``ablation``: the variants of the ablation study, each ``{"name", "description", "overrides"}``; the name is
  ``key=value[,key=value]`` over TrainConfig keys (:func:`variant_name`), e.g. ``"selection=random"``;
- ``sweep``: ``{"budgets": [...], "selections": [...]}``, the annotation-budget sweep;
- optionally ``pretrain``: the :class:`spal.engine.pretrain.PretrainConfig` of a backbone pretrained on a
  separate generated population; ``train.pretrained`` = :data:`PRETRAIN_MARKER` then stands for its file,
  which the harness makes (or finds in the data dir's cache) before the runs.

What follows from other values is never written in a file, so that it cannot disagree: the loader adds
``layout.global_batch`` (``gpus x per_gpu_batch``), ``train.batch_size`` (the global batch) and ``train.bn_groups``
(the one-process value ``global_batch / bn_group_size``; :func:`bn_groups_for` gives it at other world sizes).

Overrides replace whole values (a ``synthetic`` object in an override replaces the default one). The merged
``train`` object must name every TrainConfig key and no other: :func:`load_protocol` checks this and the type
and range of every value.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spal import models
from spal.active.budget import check_budget
from spal.engine.config import CHOICES, TrainConfig

__all__ = [
    "PROTOCOL_DIR",
    "TRAIN_KEYS",
    "DERIVED_TRAIN_KEYS",
    "PRETRAIN_MARKER",
    "ProtocolError",
    "apply_overrides",
    "bn_groups_for",
    "load_protocol",
    "parse_variant",
    "protocol_names",
    "read_protocol_file",
    "validate_train",
    "variant_name",
    "variants",
]

PROTOCOL_DIR = Path(__file__).resolve().parent

#: The keys of ``spal.engine.config.TrainConfig`` in its order: a protocol's ``train`` object names every one.
TRAIN_KEYS: tuple[str, ...] = tuple(TrainConfig.keys())

_TOP_LEVEL_KEYS = {
    "name",
    "version",
    "description",
    "seeds",
    "layout",
    "train",
    "datasets",
    "ablation",
    "sweep",
}
_OPTIONAL_KEYS = {"pretrain"}
#: ``train.pretrained`` value meaning "the file the protocol's ``pretrain`` object makes".
PRETRAIN_MARKER = "@pretrain"
_LAYOUT_KEYS = ("gpus", "per_gpu_batch", "bn_group_size")
#: The ``train`` keys the layout decides; the loader fills them in (a file that states them is refused).
DERIVED_TRAIN_KEYS = ("batch_size", "bn_groups")


class ProtocolError(ValueError):
    """A protocol file or an override is malformed; the message names the file, the key and the fix."""


def protocol_names(directory: Path | str | None = None) -> list[str]:
    """The names of the protocols in ``directory`` (default: this package's folder), sorted."""
    folder = Path(directory) if directory is not None else PROTOCOL_DIR
    return sorted(p.stem for p in folder.glob("*.json"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_keys(keys: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(keys) - set(TRAIN_KEYS))
    if unknown:
        raise ProtocolError(
            f"{where}: unknown TrainConfig key(s) {', '.join(unknown)}; valid keys: {', '.join(TRAIN_KEYS)}"
        )


def validate_train(train: Mapping[str, Any], where: str = "train") -> None:
    """Check a complete train config: every key of :data:`TRAIN_KEYS`, no other, each value valid.

    Raises:
        ProtocolError: naming ``where`` and the offending key(s).
    """
    _check_keys(train, where)
    missing = [k for k in TRAIN_KEYS if k not in train]
    if missing:
        raise ProtocolError(f"{where}: missing TrainConfig key(s) {', '.join(missing)}; add them to the protocol")
    # TrainConfig is the one definition of what a setting may be (types, ranges, relations).
    try:
        TrainConfig.from_dict(dict(train))
    except ValueError as err:
        raise ProtocolError(f"{where}: {err}") from err


def apply_overrides(train: Mapping[str, Any], overrides: Mapping[str, Any], where: str = "overrides") -> dict[str, Any]:
    """Return a copy of ``train`` with ``overrides`` (whole values replaced), validated.

    Raises:
        ProtocolError: for an unknown key or a bad value, naming ``where``.
    """
    _check_keys(overrides, where)
    merged = copy.deepcopy(dict(train))
    merged.update(copy.deepcopy(dict(overrides)))
    validate_train(merged, where)
    return merged


def variant_name(overrides: Mapping[str, Any]) -> str:
    """The run-variant name of overrides: ``"key=value,key=value"`` in their order; ``"full"`` if none."""
    if not overrides:
        return "full"
    return ",".join(f"{key}={value}" for key, value in overrides.items())


def parse_variant(name: str) -> dict[str, str]:
    """Split a variant name into ``{key: value}`` strings; ``"full"`` gives ``{}``.

    Raises:
        ProtocolError: when a part is not ``key=value``.
    """
    if name == "full":
        return {}
    parsed: dict[str, str] = {}
    for part in name.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ProtocolError(f"variant {name!r}: {part!r} is not key=value (write e.g. 'selection=random')")
        parsed[key] = value
    return parsed


def _same_value(text: str, value: Any) -> bool:
    if str(value) == text:
        return True
    try:
        return _is_number(value) and float(text) == float(value)
    except ValueError:
        return False


def _sweep_budget(budget: str) -> int | str:
    """A sweep budget as TrainConfig takes it: a plain count becomes an int, ``"<x>n"`` stays a string."""
    return int(budget) if budget.isdigit() else budget


def _derive_from_layout(data: dict[str, Any], where: str) -> None:
    """Check ``data["layout"]`` and add what follows from it: ``layout.global_batch``, ``train.batch_size`` and
    ``train.bn_groups`` (in :data:`TRAIN_KEYS` order)."""
    layout = data["layout"]
    if not isinstance(layout, dict):
        raise ProtocolError(f"{where}: layout must be an object with {', '.join(_LAYOUT_KEYS)}")
    stated = sorted(set(layout) & {"global_batch"}) + [f"train.{k}" for k in DERIVED_TRAIN_KEYS if k in data["train"]]
    if stated:
        raise ProtocolError(
            f"{where}: {', '.join(stated)} follow(s) from the layout (gpus x per_gpu_batch, / bn_group_size): "
            "remove them"
        )
    if any(not (_is_int(layout.get(k)) and layout[k] > 0) for k in _LAYOUT_KEYS):
        raise ProtocolError(f"{where}: layout must give positive integers {', '.join(_LAYOUT_KEYS)}")
    global_batch = layout["gpus"] * layout["per_gpu_batch"]
    if global_batch % layout["bn_group_size"]:
        raise ProtocolError(f"{where}: layout gpus x per_gpu_batch must be a multiple of bn_group_size")
    layout["global_batch"] = global_batch
    derived = {"batch_size": global_batch, "bn_groups": global_batch // layout["bn_group_size"]}
    train = {**data["train"], **derived}
    # TrainConfig's order, with any unknown key kept at the end for validate_train to name.
    data["train"] = {k: train[k] for k in TRAIN_KEYS if k in train} | {
        k: v for k, v in train.items() if k not in TRAIN_KEYS
    }


def _check_ablation(ablation: Any, train: Mapping[str, Any], where: str) -> None:
    if not isinstance(ablation, list):
        raise ProtocolError(f"{where}: ablation must be a list of {{name, description, overrides}} objects")
    for i, entry in enumerate(ablation):
        at = f"{where}: ablation[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "description", "overrides"}:
            raise ProtocolError(f"{at} must have exactly the keys name, description, overrides")
        apply_overrides(train, entry["overrides"], at)
        parsed = parse_variant(entry["name"])
        overrides = entry["overrides"]
        if list(parsed) != list(overrides) or not all(_same_value(parsed[k], overrides[k]) for k in parsed):
            raise ProtocolError(
                f"{at}: name {entry['name']!r} does not match its overrides {overrides!r}; "
                f"name it {variant_name(overrides)!r}"
            )


def _check_sweep(sweep: Any, train: Mapping[str, Any], where: str) -> None:
    if not isinstance(sweep, dict) or not {"budgets", "selections"} <= set(sweep):
        raise ProtocolError(f"{where}: sweep must be an object with 'budgets' and 'selections' lists")
    if not all(isinstance(b, str) for b in sweep["budgets"]):
        raise ProtocolError(f'{where}: sweep budgets must be strings such as "0" or "0.5n"')
    for budget in sweep["budgets"]:
        try:
            check_budget(budget)
        except ValueError as err:
            raise ProtocolError(f"{where}: sweep: {err}") from err
    for selection in sweep["selections"]:
        if selection not in CHOICES["selection"]:
            raise ProtocolError(
                f"{where}: sweep: selection = {selection!r} must be one of {', '.join(CHOICES['selection'])}"
            )


def read_protocol_file(path: Path | str) -> dict[str, Any]:
    """Read and validate one protocol file (defaults, every data set and layout, ablation and sweep).

    Raises:
        ProtocolError: naming the file and what is wrong in it.
    """
    path = Path(path)
    where = str(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ProtocolError(f"{where}: no such protocol file") from err
    except json.JSONDecodeError as err:
        raise ProtocolError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}: the top level must be a JSON object")
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS - _OPTIONAL_KEYS)
    missing = sorted(_TOP_LEVEL_KEYS - set(data))
    if unknown or missing:
        raise ProtocolError(
            f"{where}: top-level keys must be {', '.join(sorted(_TOP_LEVEL_KEYS))} "
            f"(missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'})"
        )
    if data["name"] != path.stem:
        raise ProtocolError(f"{where}: name {data['name']!r} must equal the file name {path.stem!r}")
    if not (_is_int(data["version"]) and data["version"] >= 1):
        raise ProtocolError(f"{where}: version must be an integer >= 1 (raise it whenever a setting changes)")
    if not (isinstance(data["description"], str) and data["description"]):
        raise ProtocolError(f"{where}: description must be a non-empty string")
    if not (isinstance(data["seeds"], list) and data["seeds"] and all(_is_int(s) for s in data["seeds"])):
        raise ProtocolError(f"{where}: seeds must be a non-empty list of integers")
    _derive_from_layout(data, where)
    validate_train(data["train"], f"{where}: train")
    _check_ablation(data["ablation"], data["train"], where)
    _check_sweep(data["sweep"], data["train"], where)
    _check_pretrain(data, where)
    if not (isinstance(data["datasets"], dict) and data["datasets"]):
        raise ProtocolError(f"{where}: datasets must be a non-empty object keyed by data set name")
    for dataset, entry in data["datasets"].items():
        layouts = entry.get("layouts") if isinstance(entry, dict) else None
        for layout in layouts or [None]:
            _merge_dataset(data, dataset, layout, where)
    return data


def _check_pretrain(data: Mapping[str, Any], where: str) -> None:
    from spal.engine.pretrain import PretrainConfig

    uses = data["train"].get("pretrained") == PRETRAIN_MARKER
    if "pretrain" not in data:
        if uses:
            raise ProtocolError(f"{where}: train.pretrained is {PRETRAIN_MARKER!r} but there is no pretrain object")
        return
    if not uses:
        raise ProtocolError(f"{where}: a pretrain object needs train.pretrained = {PRETRAIN_MARKER!r}")
    try:
        PretrainConfig.from_dict(dict(data["pretrain"]))
    except (TypeError, ValueError) as err:
        raise ProtocolError(f"{where}: pretrain: {err}") from err


def _not_derived(overrides: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    stated = [k for k in DERIVED_TRAIN_KEYS if k in overrides]
    if stated:
        raise ProtocolError(f"{where}: train.{', train.'.join(stated)} follow(s) from the protocol's layout: remove")
    return overrides


def _merge_dataset(data: Mapping[str, Any], dataset: str, layout: str | None, where: str) -> dict[str, Any]:
    """The defaults of ``data`` with the overrides of ``dataset`` (and of its ``layout``), validated."""
    entry = data["datasets"][dataset]
    at = f"{where}: datasets.{dataset}"
    allowed = {"description", "num_train_images", "train", "layouts"}
    if not isinstance(entry, dict) or not set(entry) <= allowed or "description" not in entry:
        raise ProtocolError(f"{at} must be an object with a description and only the keys {sorted(allowed)}")
    train = apply_overrides(data["train"], _not_derived(entry.get("train", {}), at), at)
    if layout is not None:
        layouts = entry.get("layouts") or {}
        if layout not in layouts:
            raise ProtocolError(f"{at}: no layout {layout!r}; choose one of {', '.join(layouts) or '(none)'}")
        at = f"{at}.layouts.{layout}"
        train = apply_overrides(train, _not_derived(layouts[layout].get("train", {}), at), at)
        if train["synthetic_layout"] != layout:
            raise ProtocolError(f"{at}: train.synthetic_layout must be {layout!r}")
    if train["dataset"] != dataset:
        raise ProtocolError(f"{at}: train.dataset is {train['dataset']!r}; set it to {dataset!r}")
    return train


def load_protocol(
    name: str, dataset: str, layout: str | None = None, directory: Path | str | None = None
) -> dict[str, Any]:
    """Load protocol ``name`` for ``dataset``: its defaults merged with the data set's overrides, validated.

    Args:
        name: a protocol name (see :func:`protocol_names`).
        dataset: ``"market1501"``, ``"msmt17"`` or ``"synthetic"`` (whichever the protocol defines).
        layout: for generated data, the on-disk layout (``"market1501"`` or ``"msmt17"``); ``None`` takes the
            protocol's default ``synthetic_layout``. Ignored for data sets without layouts.
        directory: where the protocol files are (default: this package).

    Returns:
        ``{"protocol", "version", "description", "dataset", "dataset_description", "num_train_images" (int or
        None), "synthetic_layout" (str or None), "seeds", "layout", "train" (every TrainConfig key),
        "ablation", "sweep", "pretrain" (dict or None)}``.

    Raises:
        ProtocolError: for an unknown protocol, data set or layout, or an invalid file; the message lists the
            valid choices.
    """
    folder = Path(directory) if directory is not None else PROTOCOL_DIR
    names = protocol_names(folder)
    if name not in names:
        raise ProtocolError(f"unknown protocol {name!r}; choose one of {', '.join(names)} (files in {folder})")
    data = read_protocol_file(folder / f"{name}.json")
    if dataset not in data["datasets"]:
        raise ProtocolError(
            f"protocol {name!r} has no settings for data set {dataset!r}; choose one of {', '.join(data['datasets'])}"
        )
    entry = data["datasets"][dataset]
    if entry.get("layouts"):
        chosen = (
            layout if layout is not None else apply_overrides(data["train"], entry.get("train", {}))["synthetic_layout"]
        )
    else:
        chosen = None
    train = _merge_dataset(data, dataset, chosen, str(folder / f"{name}.json"))
    return {
        "protocol": name,
        "version": data["version"],
        "description": data["description"],
        "dataset": dataset,
        "dataset_description": entry["description"],
        "num_train_images": entry.get("num_train_images"),
        "synthetic_layout": chosen,
        "seeds": list(data["seeds"]),
        "layout": copy.deepcopy(data["layout"]),
        "train": train,
        "ablation": copy.deepcopy(data["ablation"]),
        "sweep": copy.deepcopy(data["sweep"]),
        "pretrain": copy.deepcopy(data.get("pretrain")),
    }


def variants(protocol: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run variant of a loaded protocol: the full method, the ablation, then the budget sweep.

    Returns:
        a list of ``{"name", "kind" ("full" | "ablation" | "sweep"), "overrides", "train"}`` with unique
        names; a sweep point equal to an earlier variant (e.g. DUS at the default budget = ``"full"``) is
        listed once, under the earlier name.
    """
    base = protocol["train"]
    out: list[dict[str, Any]] = [{"name": "full", "kind": "full", "overrides": {}, "train": dict(base)}]
    for entry in protocol["ablation"]:
        train = apply_overrides(base, entry["overrides"], f"ablation {entry['name']}")
        out.append({"name": entry["name"], "kind": "ablation", "overrides": dict(entry["overrides"]), "train": train})
    seen = {json.dumps(v["train"], sort_keys=True) for v in out}
    for selection in protocol["sweep"]["selections"]:
        for budget in protocol["sweep"]["budgets"]:
            if _sweep_budget(budget) == 0 and selection != base["selection"]:
                continue  # with no queries the selection strategy changes nothing: budget 0 is run once
            overrides: dict[str, Any] = {}
            if selection != base["selection"]:
                overrides["selection"] = selection
            if _sweep_budget(budget) != base["budget"]:
                overrides["budget"] = _sweep_budget(budget)
            train = apply_overrides(base, overrides, f"sweep {selection} {budget}")
            key = json.dumps(train, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append({"name": variant_name(overrides), "kind": "sweep", "overrides": overrides, "train": train})
    return out


def protocol_layouts(name: str, dataset: str, directory: Path | str | None = None) -> list[str | None]:
    """The on-disk layouts protocol ``name`` defines for ``dataset`` (``[None]`` for a data set without layouts)."""
    folder = Path(directory) if directory is not None else PROTOCOL_DIR
    entry = read_protocol_file(folder / f"{name}.json")["datasets"].get(dataset, {})
    return list(entry.get("layouts") or [None])


def bn_groups_for(protocol: Mapping[str, Any], world_size: int) -> int:
    """BatchNorm groups each process needs so that BN sees ``layout.bn_group_size`` images at a time.

    The rule is the library's (:func:`spal.models.bn_groups_for`, also ``spal train``'s default); with the
    paper's layout (global batch 64, groups of 16): 4 on one GPU, 2 on two, 1 on four.

    Raises:
        ProtocolError: when ``world_size`` does not divide the number of groups (say which GPU counts work).
    """
    layout = protocol["layout"]
    try:
        return models.bn_groups_for(layout["global_batch"], world_size, layout["bn_group_size"])
    except models.BatchNormLayoutError as err:
        raise ProtocolError(f"protocol {protocol['protocol']!r}: {err}") from err
