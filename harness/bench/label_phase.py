"""Benchmark of one epoch's label phase (SPEC section 1) at a real training set's size, on synthetic features.

    python -m harness.bench.label_phase [--size msmt17|market1501|small] [--device cpu|cuda] [--out DIR]

Times, separately and in this order: the bare faiss k-NN search (k = k1, the baseline), ``jaccard_distance``
(with its steps, from its DEBUG log records), ``constrained_dbscan`` without constraints, and, when
``spal.active`` is importable, ``constrained_dbscan`` under a ``ConstraintGraph`` holding ~2n random truthful
answers (as in a late epoch) and one call of ``select_support_pairs`` (selection + propagation). The label
phase is Jaccard + constrained DBSCAN + selection; the result reports its ratio to the k-NN baseline and the
process's peak resident memory (``resource.getrusage`` and the per-step VmHWM marks), inputs and libraries
included.

For ``--size market1501`` it also times THE DENSE REFERENCE below (:func:`dense_reference_jaccard`, the usual
dense way of computing the same distances, n x n arrays throughout) and checks that both agree; the dense part
runs last, so the peak memory of the label phase is read before it.

Writes ``<out>/label-phase-<size>-<device>.json``.

The features imitate a training set in mid-training: identities in families of similar-looking ones (10 ids
around a shared direction), a shift per camera, each identity seen by 2 to 6 of the cameras, and per-image
noise of log-normal scale (a few images are very noisy). They are not a trained model's features; they are
tuned so that DBSCAN yields impure clusters (purity ~0.88 at the full sizes) and rich neighbourhoods (about
200 stored distances a row), which makes the Jaccard step more expensive than well-separated clusters would.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np
import scipy.sparse as sp
import torch

from harness.bench.common import load_note, machine, proc_status_mb, provenance, reset_peak_rss, write_record
from harness.bench.headlines import label_phase_headline
from spal.clustering import cluster_statistics, constrained_dbscan, jaccard_distance, neighbour_table
from spal.clustering.jaccard import half_list_length, ranked_neighbours
from spal.clustering.knn import torch_knn

__all__ = ["SIZES", "Size", "dense_reference_jaccard", "main", "make_features", "truthful_pairs"]

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Size:
    """Shape of a synthetic training set."""

    num_images: int
    dims: int
    num_ids: int
    num_cams: int
    # Norm of the per-camera shift: with fewer cameras each shift is shared by more identities, so it is
    # smaller there (chosen so that DBSCAN at eps 0.6 gives clusters of purity ~0.88 at both full sizes).
    camera_shift: float


# Training-set sizes of SPEC section 4 (MSMT17: 32,621 images of 1,041 ids, 15 cameras; Market-1501: 12,936
# images of 751 ids, 6 cameras); 2048-d as ResNet-50.
SIZES = {
    "msmt17": Size(32_621, 2048, 1_041, 15, 0.5),
    "market1501": Size(12_936, 2048, 751, 6, 0.3),
    "small": Size(3_000, 256, 100, 6, 0.3),
}

# Feature model (see the module docstring): ids per family, spread of an id around its family direction,
# per-image noise norm exp(N(log NOISE, NOISE_SPREAD)).
FAMILY = 10
ID_SPREAD = 0.7
NOISE = 1.0
NOISE_SPREAD = 0.8
CAMERAS_PER_ID = (2, 6)
BLOCK_ROWS = 4096


# What the record's derived figures mean, stored in it.
_DEFINITIONS = {
    "clustering_s": "jaccard_s + dbscan_constrained_s (dbscan_plain_s when spal.active is missing)",
    "label_phase_s": "clustering_s + selection_s (select_support_pairs: selection and propagation)",
    "peak_rss_mb": "per step: the kernel's peak-RSS mark (VmHWM) reset just before the step, so "
    "the whole process (inputs and libraries included) at its highest during that step",
    "label_phase_process_peak_rss_mb": "the largest of those peaks and getrusage's ru_maxrss, "
    "read after the label phase (before the dense reference, if any)",
}

# The goals the label phase is held to, stored in the record.
_TARGETS = {
    "label_phase_s_below": 90.0,
    "label_phase_process_peak_rss_mb_below": 4096.0,
    "label_phase_over_knn_below": 3.0,
    "scope": "MSMT17 size on the project's 2-core CPU machine",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (0)."""
    args = _parse_args(argv)
    size = SIZES[args.size]
    device = torch.device(args.device)
    load_before = os.getloadavg()
    features, pids, _ = make_features(size, np.random.default_rng(args.seed))
    features = features.to(device)
    _warm_up(features, args)
    meter = _Meter(device)
    distances, result = _measure_label_phase(args, size, features, pids, meter)
    if args.size == "market1501":
        # Last, so that the label phase's peak memory above was read before the dense arrays existed.
        result["dense_reference"] = _compare_with_dense(features, distances, args, meter)
        meter.peak_mb["process_peak_rss_mb"] = meter.process_peak_mb()
    result.update(
        {
            "targets": _TARGETS,
            "machine": machine(device),
            "provenance": provenance(),
            "notes": _notes(args.notes, load_before, result.get("constraints")),
        }
    )
    path = write_record(f"label-phase-{args.size}-{args.device}", result, label_phase_headline, args.out)
    sys.stdout.write(_summary_line(args, meter, path))
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.bench.label_phase", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="msmt17")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results/bench"), help="folder of the JSON result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k1", type=int, default=30)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--min-samples", type=int, default=4)
    parser.add_argument("--notes", default="", help="free text stored in the result (e.g. machine load)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU; use --device cpu")
    return args


def _warm_up(features: torch.Tensor, args: argparse.Namespace) -> None:
    """Every timed step once on a slice: library loading, thread pools, CUDA context."""
    constrained_dbscan(jaccard_distance(features[:256], args.k1, args.k2), args.eps, args.min_samples)
    _bare_knn(features[:256], args.k1)


def _measure_label_phase(
    args: argparse.Namespace, size: Size, features: torch.Tensor, pids: np.ndarray, meter: _Meter
) -> tuple[sp.csr_matrix, dict[str, Any]]:
    """Time the k-NN baseline and the label phase's steps in turn.

    Returns:
        ``(distances, result)``: the ``(n, n)`` sparse Jaccard distances and the record so far, whose
        ``timing`` and ``memory`` are ``meter``'s own dictionaries (steps timed later still land in them).
    """
    meter.run("knn_baseline", lambda: _bare_knn(features, args.k1))
    distances, neighbours, jaccard_steps = _time_jaccard(features, args, meter)
    plain = meter.run("dbscan_plain", lambda: constrained_dbscan(distances, args.eps, args.min_samples))
    active = _constrained_part(args, features, pids, distances, meter, neighbours)
    timing, memory = meter.seconds, meter.peak_mb
    timing["jaccard_steps_s"] = jaccard_steps
    timing.update(_phase_totals(timing))
    memory["label_phase_process_peak_rss_mb"] = meter.process_peak_mb()
    result = {
        "benchmark": "label phase: jaccard_distance + constrained_dbscan + select_support_pairs",
        "definitions": _DEFINITIONS,
        "size": args.size,
        "device": args.device,
        "shapes": dataclasses.asdict(size),
        "parameters": {"k1": args.k1, "k2": args.k2, "eps": args.eps, "min_samples": args.min_samples},
        "timing": timing,
        "memory": memory,
        "distances": {"nnz": int(distances.nnz), "stored_per_row": distances.nnz / size.num_images},
        "clusters_plain": cluster_statistics(plain, pids),
        **active,
    }
    return distances, result


def _time_jaccard(
    features: torch.Tensor, args: argparse.Namespace, meter: _Meter
) -> tuple[sp.csr_matrix, tuple[np.ndarray, np.ndarray], dict[str, float]]:
    """Time ``jaccard_distance`` with the k-NN table it starts from, as the training loop builds it (one
    table an epoch, shared by the Jaccard step and the selection).

    Returns:
        ``(distances, neighbours, steps)``: the sparse distances, the k-NN table and the seconds of each step
        (``knn`` for the table, then the steps ``spal.clustering.jaccard`` logs).
    """
    table: dict[str, Any] = {}

    def jaccard() -> sp.csr_matrix:
        start = time.perf_counter()
        table["neighbours"] = neighbour_table(features, args.k1)
        table["knn_s"] = time.perf_counter() - start
        return jaccard_distance(features, args.k1, args.k2, neighbours=table["neighbours"])

    with _StageRecorder() as stages:
        distances = meter.run("jaccard", jaccard)
    return distances, table["neighbours"], {"knn": table["knn_s"], **stages.seconds}


def _phase_totals(timing: Mapping[str, Any]) -> dict[str, float]:
    """The label phase's totals (see :data:`_DEFINITIONS`) and their ratios to the k-NN baseline, from the
    steps' seconds (``<step>_s``)."""
    knn = timing["knn_baseline_s"]
    clustering = timing["jaccard_s"] + timing.get("dbscan_constrained_s", timing["dbscan_plain_s"])
    label_phase = clustering + timing.get("selection_s", 0.0)
    return {
        "clustering_s": clustering,
        "label_phase_s": label_phase,
        "jaccard_over_knn": timing["jaccard_s"] / knn,
        "clustering_over_knn": clustering / knn,
        "label_phase_over_knn": label_phase / knn,
    }


def _summary_line(args: argparse.Namespace, meter: _Meter, path: Path) -> str:
    timing = meter.seconds
    return (
        f"label phase {args.size} on {args.device}: {timing['label_phase_s']:.1f} s "
        f"({timing['label_phase_over_knn']:.2f} x the {timing['knn_baseline_s']:.1f} s k-NN), "
        f"peak RSS {meter.peak_mb['label_phase_process_peak_rss_mb']:.0f} MB -> {path}\n"
    )


def make_features(size: Size, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Synthetic training features (see the module docstring).

    Returns:
        ``(features, pids, camids)``: ``(n, dims)`` float32 L2-normalised tensor, ``(n,)`` int64 identities
        (each with at least 2 images, the rest spread with skewed weights) and ``(n,)`` int64 cameras.
    """
    n, d = size.num_images, size.dims
    weights = rng.lognormal(0.0, 0.6, size.num_ids)
    counts = 2 + rng.multinomial(n - 2 * size.num_ids, weights / weights.sum())
    low, high = CAMERAS_PER_ID
    camera_sets = [
        rng.choice(size.num_cams, rng.integers(low, min(high, size.num_cams) + 1), replace=False)
        for _ in range(size.num_ids)
    ]
    pids = np.repeat(np.arange(size.num_ids), counts)
    camids = np.concatenate([rng.choice(camera_sets[i], c) for i, c in enumerate(counts)])
    order = rng.permutation(n)
    pids, camids = pids[order], camids[order]
    scale = 1 / math.sqrt(d)
    families = rng.standard_normal((size.num_ids // FAMILY + 1, d)).astype(np.float32) * scale
    centres = families[np.arange(size.num_ids) // FAMILY]
    centres += rng.standard_normal((size.num_ids, d)).astype(np.float32) * (ID_SPREAD * scale)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    shifts = rng.standard_normal((size.num_cams, d)).astype(np.float32)
    shifts *= size.camera_shift / np.linalg.norm(shifts, axis=1, keepdims=True)
    features = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        block = rng.standard_normal((len(pids[rows]), d), dtype=np.float32)
        noise = rng.lognormal(math.log(NOISE), NOISE_SPREAD, len(block)).astype(np.float32)
        block *= (noise * scale)[:, None]
        block += centres[pids[rows]] + shifts[camids[rows]]
        features[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return torch.from_numpy(features), pids.astype(np.int64), camids.astype(np.int64)


def dense_reference_jaccard(features: torch.Tensor | np.ndarray, k1: int, k2: int) -> np.ndarray:
    """THE DENSE REFERENCE: the same distances computed the usual dense way, for timing and agreement only.

    This is how the Jaccard distance is commonly computed for re-id clustering (SpCL's re-ranking code follows
    this plan): Python loops over the points with numpy inside, an ``n x n`` float32 weight matrix ``V``, its
    query-expanded copy, an inverted index of its columns and an ``n x n`` result, so about 3 n^2 x 4 bytes
    of memory (2 GB at Market-1501 size, 13 GB at MSMT17 size). The k-NN lists come from the same search as
    ``jaccard_distance`` so that only the Jaccard part is compared.

    Args:
        features: ``(n, d)`` L2-normalised features.
        k1, k2: as in :func:`spal.clustering.jaccard_distance`.

    Returns:
        ``(n, n)`` float32 distances (1 where the supports do not overlap).
    """
    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    n = len(x)
    k = min(k1, n)
    half = min(half_list_length(k1), k)
    _, idx = ranked_neighbours(x, k)

    def reciprocal(i: int, length: int) -> np.ndarray:
        forward = idx[i, :length]
        return forward[(idx[forward, :length] == i).any(axis=1)]

    recip = [reciprocal(i, k) for i in range(n)]
    recip_half = [reciprocal(i, half) for i in range(n)]
    weights = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        expanded = [recip[i]]
        for c in recip[i]:
            candidate = recip_half[c]
            if np.intersect1d(candidate, recip[i]).size > 2 / 3 * candidate.size:
                expanded.append(candidate)
        members = np.unique(np.concatenate(expanded))
        logits = np.exp(2 * (x[members] @ x[i]).astype(np.float64) - 2)
        weights[i, members] = logits / logits.sum()
    if k2 != 1:
        expanded_weights = np.empty_like(weights)
        for i in range(n):
            expanded_weights[i] = weights[idx[i, : min(k2, k)]].mean(axis=0)
        weights = expanded_weights
    columns = weights.T.copy()
    inverted = [np.flatnonzero(columns[j]) for j in range(n)]
    del columns
    distances = np.empty((n, n), dtype=np.float32)
    for i in range(n):
        overlap = np.zeros(n, dtype=np.float32)
        for j in np.flatnonzero(weights[i]):
            rows = inverted[j]
            overlap[rows] += np.minimum(weights[i, j], weights[rows, j])
        distances[i] = np.maximum(1 - overlap / (2 - overlap), 0)
    return distances


def _bare_knn(features: torch.Tensor, k: int) -> None:
    """The baseline: one exact inner-product search of the features against themselves, nothing else."""
    if features.is_cuda and not (hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0):
        torch_knn(features, k)
        return
    x = np.ascontiguousarray(features.detach().cpu().numpy())
    index: faiss.Index = faiss.IndexFlatIP(x.shape[1])
    if features.is_cuda:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(x)
    index.search(x, k)


def _constrained_part(
    args: argparse.Namespace,
    features: torch.Tensor,
    pids: np.ndarray,
    distances: sp.csr_matrix,
    meter: _Meter,
    neighbours: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Constrained DBSCAN and the support-pair step, when ``spal.active`` provides them."""
    names = ("ConstraintGraph", "GroundTruthOracle", "Budget", "select_support_pairs")
    try:
        active = importlib.import_module("spal.active")
        missing = [name for name in names if not hasattr(active, name)]
    except ImportError as error:
        return {"constraints": {"skipped": f"spal.active is not importable: {error}"}}
    if missing:
        return {"constraints": {"skipped": f"spal.active lacks {', '.join(missing)}"}}
    n = len(pids)
    rng = np.random.default_rng(args.seed + 1)
    pairs = truthful_pairs(pids, rng)
    graph = active.ConstraintGraph(n)

    def answer_all() -> None:
        for a, b in pairs.tolist():
            if pids[a] == pids[b]:
                graph.add_must_link(a, b)
            else:
                graph.add_cannot_link(a, b)

    meter.run("constraint_graph_build", answer_all)
    labels = meter.run("dbscan_constrained", lambda: constrained_dbscan(distances, args.eps, args.min_samples, graph))
    budget = active.Budget(2 * n)
    oracle = active.GroundTruthOracle(pids)
    asked = meter.run(
        "selection",
        lambda: active.select_support_pairs(labels, features, graph, budget, oracle, neighbours=neighbours),
    )
    components = graph.component_ids()
    return {
        "constraints": {
            "answers": len(pairs),
            "description": "half the pairs drawn inside an identity, half uniformly; answers from the pids",
            "ml_components_with_two_or_more": int((np.bincount(components, minlength=n) > 1).sum()),
            "cannot_link_edges": int(len(graph.cannot_link_edges())),
        },
        "clusters_constrained": cluster_statistics(labels, pids),
        "selection": {"pairs_asked": len(asked), "budget_left": int(budget.remaining)},
    }


def truthful_pairs(pids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(~2n, 2)`` int64 pairs of distinct points: n inside an identity, ~n drawn uniformly.

    ``pids`` must be ``0 .. num_ids - 1`` with at least two images each (as :func:`make_features` makes them).
    """
    n = len(pids)
    by_pid = np.argsort(pids, kind="stable")
    group_start = np.searchsorted(pids[by_pid], pids)
    group_size = np.bincount(pids)[pids]
    rank = np.empty(n, dtype=np.int64)
    rank[by_pid] = np.arange(n)
    rank -= group_start
    first = rng.integers(0, n, n)
    # Another member of the same identity: a random rank among the others, skipping the first's own.
    offset = rng.integers(0, group_size[first] - 1)
    offset += offset >= rank[first]
    second = by_pid[group_start[first] + offset]
    uniform = rng.integers(0, n, (n, 2))
    uniform = uniform[uniform[:, 0] != uniform[:, 1]]
    return np.concatenate([np.stack([first, second], axis=1), uniform]).astype(np.int64)


def _compare_with_dense(
    features: torch.Tensor, distances: sp.csr_matrix, args: argparse.Namespace, meter: _Meter
) -> dict[str, Any]:
    dense = meter.run("dense_reference", lambda: dense_reference_jaccard(features, args.k1, args.k2))
    ours = np.ones(distances.shape, dtype=np.float32)
    coo = distances.tocoo()
    ours[coo.row, coo.col] = coo.data
    seconds = meter.seconds["dense_reference_s"]
    return {
        "description": "dense_reference_jaccard in this module: n x n arrays, Python loops over the points",
        "dense_reference_s": seconds,
        "dense_reference_peak_rss_mb": meter.peak_mb["dense_reference_peak_rss_mb"],
        "jaccard_s": meter.seconds["jaccard_s"],
        "dense_over_jaccard": seconds / meter.seconds["jaccard_s"],
        "max_abs_difference": float(np.abs(ours - dense).max()),
    }


class _StageRecorder(logging.Handler):
    """Collects the step times that ``spal.clustering.jaccard`` logs at DEBUG level, inside a ``with``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, float] = {}
        self._logger = logging.getLogger("spal.clustering.jaccard")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", None)
        if stage is not None:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + float(getattr(record, "seconds", 0.0))

    def __enter__(self) -> _StageRecorder:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


class _Meter:
    """Runs steps one at a time and records their wall time and the process's peak RSS during each."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, Any] = {}
        # Everything before the first step (features, libraries, warm-up).
        self.peak_mb: dict[str, Any] = {"setup_peak_rss_mb": proc_status_mb("VmHWM")}

    def process_peak_mb(self) -> float:
        """The process's peak RSS so far: resetting VmHWM also resets ``ru_maxrss``, so take the largest of
        the per-step peaks and the current mark."""
        marks = [value for value in self.peak_mb.values() if value is not None]
        return max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, *marks])

    def run(self, name: str, function: Callable[[], _T]) -> _T:
        """Call ``function`` once; ``seconds[name + "_s"]`` and ``peak_mb[name + "_peak_rss_mb"]`` get its
        wall time (after a CUDA synchronisation on a GPU) and peak resident memory (None off Linux)."""
        reset = reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        value = function()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[f"{name}_s"] = time.perf_counter() - start
        self.peak_mb[f"{name}_peak_rss_mb"] = proc_status_mb("VmHWM") if reset else None
        return value


def _notes(extra: str, load_before: tuple[float, ...], constraints: dict | None) -> str:
    parts = [extra.strip()]
    if constraints and "skipped" in constraints:
        parts.append(f"Constrained DBSCAN and selection not timed: {constraints['skipped']}.")
    parts.append(load_note(load_before, os.getloadavg()))
    return " ".join(part for part in parts if part)


if __name__ == "__main__":
    sys.exit(main())
