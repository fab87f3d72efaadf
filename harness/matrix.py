"""The run matrix: which cells a command runs, where they go, and running them with a progress line a cell.

The one home of what ``reproduce``, ``ablation``, ``sweep``, ``ci-regression`` and ``demo`` share: the repository
paths (:func:`results_dir`, :func:`logs_root`), building the cells of a protocol (:func:`build_cells`), the data
folder of a generated set (:func:`synthetic_data_dir`), the pretrained file a protocol makes
(:func:`resolve_pretrained`) and the loop over cells (:func:`run_matrix`), which is resumable: a finished cell is
read back, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.runs import Cell, CellResult, run_cell

__all__ = [
    "REPO_ROOT",
    "CellsRefused",
    "build_cells",
    "check_cells",
    "environment",
    "logs_root",
    "parse_override",
    "resolve_pretrained",
    "results_dir",
    "run_matrix",
    "synthetic_data_dir",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """Where run records go: ``$SPAL_RESULTS_DIR`` or the repository's ``results/``."""
    return Path(os.environ.get("SPAL_RESULTS_DIR", REPO_ROOT / "results"))


def logs_root() -> Path:
    """Where checkpoints and annotation logs go: ``$SPAL_LOGS_DIR`` or ``logs/runs/`` (outside git)."""
    return Path(os.environ.get("SPAL_LOGS_DIR", REPO_ROOT / "logs" / "runs"))


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (``lr=0.1`` is a float, ``budget=0.5n`` a string)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--override needs KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def synthetic_data_dir(data_dir: str, train: Mapping[str, Any]) -> str:
    """Each synthetic size gets its own folder, so trees of different sizes never mix."""
    spec = json.dumps(train.get("synthetic") or {}, sort_keys=True)
    tag = hashlib.sha1(spec.encode()).hexdigest()[:8]
    return str(Path(data_dir) / "synthetic" / f"{train['synthetic_layout']}-{tag}")


def environment() -> dict[str, Any]:
    """``env.json`` of this machine and checkout (inside the container, the commit the image was built from)."""
    from harness.environment import collect_environment

    env = collect_environment(REPO_ROOT)
    if env.get("git_commit") is None and os.environ.get("SPAL_GIT_COMMIT"):
        env["git_commit"] = os.environ["SPAL_GIT_COMMIT"]
        env["git_dirty"] = os.environ.get("SPAL_GIT_DIRTY", "unknown") == "true"
    return env


def _belongs(variant: Mapping[str, Any], kind: str, protocol: Mapping[str, Any]) -> bool:
    """Which variants a command runs: ``full`` always; the sweep also takes ablation cells that are sweep points.

    (``variants`` lists a run once, under its first name: random selection at the default budget is the
    ablation's ``selection=random`` and also a point of the sweep's random curve.)
    """
    if variant["kind"] == "full" or variant["kind"] == kind:
        return True
    if kind != "sweep":
        return False
    overrides = variant["overrides"]
    selection = overrides.get("selection", protocol["train"]["selection"])
    return set(overrides) <= {"selection", "budget"} and selection in protocol["sweep"]["selections"]


def build_cells(
    dataset: str,
    kind: str,
    *,
    protocol: str | None = None,
    seeds: Iterable[int] | None = None,
    layouts: Iterable[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    variants_wanted: Iterable[str] | None = None,
    pretrained: str | None = None,
) -> list[Cell]:
    """The cells of one command.

    Args:
        dataset: ``market1501`` | ``msmt17`` | ``synthetic``.
        kind: ``full`` (reproduce: the full method only), ``ablation`` or ``sweep``.
        protocol: the protocol name; ``None`` = ``ci`` for synthetic data, ``paper`` for real data.
        seeds: default: the protocol's.
        layouts: generated data only; default: every layout of the protocol for ``full``, its first otherwise.
        overrides: training settings changed in every cell (recorded in the variant name).
        variants_wanted: keep only these variant names (after ``kind`` has chosen).
        pretrained: the weights of every cell (a path, ``imagenet`` or ``none``) instead of the protocol's; where
            the file lies is not part of a variant's name.
    """
    from harness.protocols import load_protocol, protocol_layouts, variants

    protocol_name = protocol or ("ci" if dataset == "synthetic" else "paper")
    chosen_layouts = list(layouts) if layouts else protocol_layouts(protocol_name, dataset)
    if not layouts and kind != "full":
        # The ablation and the sweep are many runs each: by default they use the first layout only.
        chosen_layouts = chosen_layouts[:1]
    overrides = dict(overrides or {})
    cells = []
    for layout in chosen_layouts:
        loaded = load_protocol(protocol_name, dataset, layout=layout)
        chosen_seeds = list(seeds) if seeds else list(loaded["seeds"])
        for variant in variants(loaded):
            if not _belongs(variant, kind, loaded):
                continue
            if variants_wanted is not None and variant["name"] not in set(variants_wanted):
                continue
            name = variant["name"]
            if overrides:
                extra = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
                name = extra if name == "full" else f"{name},{extra}"
            for seed in chosen_seeds:
                cells.append(
                    Cell(
                        dataset=dataset,
                        protocol=protocol_name,
                        protocol_version=int(loaded["version"]),
                        seed=seed,
                        variant=name,
                        train={**variant["train"], **overrides, **({"pretrained": pretrained} if pretrained else {})},
                        gpus=int(loaded["layout"]["gpus"]),
                        layout=layout,
                        extra={"kind": variant["kind"], "overrides": {**variant["overrides"], **overrides}},
                        pretrain=loaded["pretrain"],
                    )
                )
    return cells


class CellsRefused(ValueError):
    """A cell cannot run here: its BatchNorm layout does not fit the world size, or its weights are missing."""


def check_cells(cells: Iterable[Cell]) -> None:
    """Refuse, before any run starts, cells whose world size cannot keep the protocol's BatchNorm groups or whose
    weight file is missing (a protocol's own pretrained file is made later, so it is not looked for).

    Raises:
        CellsRefused: with the one-line reason.
    """
    from harness.protocols import PRETRAIN_MARKER
    from harness.runs import process_layout
    from spal.models import BatchNormLayoutError, PretrainedNotFoundError
    from spal.models import resolve_pretrained as resolve_weights

    cells = list(cells)
    try:
        for cell in cells:
            process_layout(cell)
        wanted = {(c.train["arch"], c.train["pretrained"] or "") for c in cells}
        for arch, pretrained in sorted(wanted):
            if pretrained != PRETRAIN_MARKER:
                resolve_weights(arch, pretrained or None)
    except (BatchNormLayoutError, PretrainedNotFoundError) as error:
        raise CellsRefused(str(error)) from error


def resolve_pretrained(cell: Cell, data_dir: str, made: dict[str, str] | None = None) -> Cell:
    """Replace the protocol's pretrain marker by the file it stands for (made and cached under ``data_dir``).

    ``made`` (pretrain settings -> file) spares the cache check, which hashes the file, for every further cell
    of the same settings.
    """
    from harness.protocols import PRETRAIN_MARKER

    if cell.train.get("pretrained") != PRETRAIN_MARKER:
        return cell
    from spal.engine.pretrain import PretrainConfig, pretrain

    made = {} if made is None else made
    key = json.dumps(cell.pretrain or {}, sort_keys=True)
    if key not in made:
        made[key] = str(pretrain(PretrainConfig.from_dict(dict(cell.pretrain or {})), data_dir))
    return Cell(**{**cell.__dict__, "train": {**cell.train, "pretrained": made[key]}})


def run_matrix(
    cells: list[Cell],
    data_dir: str,
    *,
    results: Path | None = None,
    logs: Path | None = None,
    env: Mapping[str, Any] | None = None,
) -> list[CellResult]:
    """Run every cell in turn (resumably), logging one progress line a cell; a failed cell does not stop the rest.

    Args:
        data_dir: the data folder; generated sets and the pretrained file go into their own folders under it.
        results, logs: default :func:`results_dir` and :func:`logs_root`.
        env: default :func:`environment`.
    """
    results = results_dir() if results is None else results
    logs = logs_root() if logs is None else logs
    env = dict(environment() if env is None else env)
    out: list[CellResult] = []
    started = time.perf_counter()
    made: dict[str, str] = {}
    for index, cell in enumerate(cells, start=1):
        cell_dir = synthetic_data_dir(data_dir, cell.train) if cell.dataset == "synthetic" else data_dir
        result = run_cell(resolve_pretrained(cell, data_dir, made), results, logs, cell_dir, env)
        out.append(result)
        final = result.final or {}
        elapsed = time.perf_counter() - started
        log.info(
            "[%d/%d] %s %s seed %d: %s%s (%.0f s so far)",
            index,
            len(cells),
            cell.layout or cell.dataset,
            cell.variant,
            cell.seed,
            result.status,
            f", mAP {final['mAP']:.2f}, {final.get('queries_spent')} queries" if final.get("mAP") is not None else "",
            elapsed,
        )
    return out
