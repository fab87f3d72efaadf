"""Benchmark of ``spal.evaluation.evaluate`` at the size of a real test split, on synthetic features.

    python -m harness.bench.evaluation [--size msmt17|market1501|small] [--device cpu|cuda] [--out DIR]

Writes ``<out>/evaluation-<size>-<device>.json`` with the time and memory of one ``evaluate`` call, the
metrics it returned, a baseline measured in the same run, and the machine, versions and git commit.

The features imitate a re-id test split: one random centre per identity, a shift per camera (the domain gap
that makes cross-camera matches harder), and per-image noise whose scale varies a lot between images (hard
images), all L2-normalised. Each identity is seen by a few cameras. The numbers are not meant to look like a
trained model's, only to make the rankings non-trivial (matches spread through the gallery).

The baseline is the usual vectorised evaluation (torchreid style): for a subset of the queries, a stable sort
of every query's full distance row, then cumulative sums over the sorted match flags. It is timed on the
subset, extrapolated linearly to all queries (its cost is linear in the number of queries), and its metrics
on the subset are compared with ``evaluate`` on the same subset.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from harness.bench.common import load_note, machine, proc_status_mb, provenance, reset_peak_rss, write_record
from harness.bench.headlines import evaluation_headline
from spal.evaluation import evaluate

__all__ = ["main"]


@dataclasses.dataclass(frozen=True)
class Size:
    """Shape of a synthetic test split."""

    num_query: int
    num_gallery: int
    dims: int
    num_ids: int
    num_cams: int
    # Gallery images of identities that no query has (Market-1501's pid 0000 distractors).
    num_distractors: int
    # Queries on which the full-sort baseline runs.
    baseline_queries: int


# Test-split sizes of SPEC section 4 (MSMT17: 11,659 / 82,161 images of 3,060 ids and 15 cameras; Market-1501:
# 3,368 / 15,913 kept images of 750 ids, 2,793 of them distractors, and 6 cameras); 2048-d as ResNet-50.
SIZES = {
    "msmt17": Size(11_659, 82_161, 2048, 3_060, 15, 0, 1024),
    "market1501": Size(3_368, 15_913, 2048, 750, 6, 2_793, 1024),
    "small": Size(200, 1_500, 64, 60, 6, 100, 200),
}

# Feature model of make_features (norms relative to a centre's): noise, camera shift, per-image quality
# spread, identities per look-alike group and the share of a centre that the group has in common.
# Chosen so that at MSMT17 size the metrics land near a trained model's (mAP ~0.5, mINP ~0.1).
NOISE = 1.1
CAMERA_SHIFT = 0.65
QUALITY_SPREAD = 0.3
GROUP_SIZE = 30
GROUP_SHARE = 0.55
CAMERAS_PER_ID = (2, 6)
BLOCK_ROWS = 4096
BASELINE_CHUNK = 128
GEMM_PROBE_ROWS = 512


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (0)."""
    parser = argparse.ArgumentParser(prog="python -m harness.bench.evaluation", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="msmt17")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results/bench"), help="folder of the JSON result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notes", default="", help="free text stored in the result (e.g. machine load)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU; use --device cpu")
    size = SIZES[args.size]
    device = torch.device(args.device)
    load_before = os.getloadavg()
    rss_at_start = proc_status_mb("VmRSS")

    rng = np.random.default_rng(args.seed)
    labels = make_labels(size, rng)
    query, gallery = make_features(size, labels, torch.Generator().manual_seed(args.seed))
    query, gallery = query.to(device), gallery.to(device)
    label_tensors = [torch.from_numpy(x).to(device) for x in labels]

    # Warm-up on a slice: library loading, thread pools, CUDA context and cuBLAS handles.
    evaluate(query[:64], gallery[:4096], *_first(label_tensors, 64, 4096))
    rss_before = proc_status_mb("VmRSS")
    peak_reset = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, metrics = _timed(lambda: evaluate(query, gallery, *label_tensors), device)
    memory = {
        "rss_at_start_mb": rss_at_start,
        "inputs_mb": (query.nbytes + gallery.nbytes) / 2**20,
        "rss_before_evaluate_mb": rss_before,
        "peak_rss_during_evaluate_mb": proc_status_mb("VmHWM") if peak_reset else None,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_scope": "since the reset before evaluate" if peak_reset else "unavailable (no clear_refs)",
    }
    if memory["peak_rss_during_evaluate_mb"] is not None and rss_before is not None:
        memory["evaluate_increment_mb"] = memory["peak_rss_during_evaluate_mb"] - rss_before
    if device.type == "cuda":
        memory["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    baseline = _baseline(size, query, gallery, label_tensors, device)
    baseline["evaluate_speedup"] = baseline["naive_full_sort_extrapolated_s"] / seconds["wall_s"]
    if device.type == "cpu":
        baseline["gemm_probe"] = _gemm_probe(query, gallery)

    result = {
        "benchmark": "spal.evaluation.evaluate",
        "size": args.size,
        "device": args.device,
        "shapes": dataclasses.asdict(size),
        "timing": seconds,
        "memory": memory,
        "metrics": metrics,
        "baseline": baseline,
        "machine": machine(device),
        "provenance": provenance(),
        "notes": f"{args.notes.strip()} {load_note(load_before, os.getloadavg())}".strip(),
    }
    path = write_record(f"evaluation-{args.size}-{args.device}", result, evaluation_headline, args.out)
    sys.stdout.write(
        f"evaluate {args.size} on {args.device}: {seconds['wall_s']:.1f} s, "
        f"peak RSS {memory['peak_rss_during_evaluate_mb'] or memory['process_peak_rss_mb']:.0f} MB, "
        f"mAP {metrics['mAP']:.4f}; baseline {baseline['naive_full_sort_extrapolated_s']:.1f} s; -> {path}\n"
    )
    return 0


def make_labels(size: Size, rng: np.random.Generator) -> list[np.ndarray]:
    """``[query_pids, gallery_pids, query_camids, gallery_camids]`` (int64) for ``size``.

    Every identity has at least one query and two gallery images; the rest are spread with skewed weights
    (some identities have many images). Each identity is seen by 2 to 6 cameras, and each of its images comes
    from one of them. Distractor identities (pids after the queried ones) have one gallery image each.
    """
    weights = rng.lognormal(0.0, 0.6, size.num_ids)
    weights /= weights.sum()
    query_counts = 1 + rng.multinomial(size.num_query - size.num_ids, weights)
    gallery_counts = 2 + rng.multinomial(size.num_gallery - size.num_distractors - 2 * size.num_ids, weights)
    low, high = CAMERAS_PER_ID
    camera_sets = [
        rng.choice(size.num_cams, rng.integers(low, min(high, size.num_cams) + 1), replace=False)
        for _ in range(size.num_ids)
    ]

    def draw(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pids = np.repeat(np.arange(size.num_ids), counts)
        cams = np.concatenate([rng.choice(camera_sets[i], n) for i, n in enumerate(counts)])
        return pids, cams

    query_pids, query_cams = draw(query_counts)
    gallery_pids, gallery_cams = draw(gallery_counts)
    distractor_pids = size.num_ids + np.arange(size.num_distractors)
    gallery_pids = np.concatenate([gallery_pids, distractor_pids])
    gallery_cams = np.concatenate([gallery_cams, rng.integers(0, size.num_cams, size.num_distractors)])
    order = rng.permutation(size.num_gallery)
    return [query_pids, gallery_pids[order], query_cams, gallery_cams[order]]


def make_features(size: Size, labels: list[np.ndarray], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``(num_query, dims)`` and ``(num_gallery, dims)`` L2-normalised float32 features, built in row blocks
    so that no temporary is larger than a block.

    An image of identity ``i`` seen by camera ``c`` is ``normalise(q * centre_i + shift_c + noise)``: the
    centres of a group of ``GROUP_SIZE`` identities share a ``GROUP_SHARE`` of their energy (people who look
    alike), ``q`` is the image's quality (lognormal), the camera shift is the camera's bias, the noise is
    isotropic.
    """
    query_pids, gallery_pids, query_cams, gallery_cams = (torch.from_numpy(x) for x in labels)
    num_pids = int(gallery_pids.max()) + 1
    scale = 1 / math.sqrt(size.dims)
    num_groups = max(1, num_pids // GROUP_SIZE)
    groups = torch.randn(num_groups, size.dims, generator=generator)
    group_of = torch.randint(0, num_groups, (num_pids,), generator=generator)
    own = torch.randn(num_pids, size.dims, generator=generator)
    centres = (groups[group_of] * math.sqrt(GROUP_SHARE) + own * math.sqrt(1 - GROUP_SHARE)) * scale
    camera_shifts = torch.randn(size.num_cams, size.dims, generator=generator) * (CAMERA_SHIFT * scale)

    def build(pids: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(pids), size.dims)
        for start in range(0, len(pids), BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            block = torch.randn(len(pids[rows]), size.dims, generator=generator).mul_(NOISE * scale)
            quality = torch.empty(len(block), 1).log_normal_(0.0, QUALITY_SPREAD, generator=generator)
            block.add_(centres[pids[rows]] * quality).add_(camera_shifts[cams[rows]])
            out[rows] = torch.nn.functional.normalize(block, dim=1)
        return out

    return build(query_pids, query_cams), build(gallery_pids, gallery_cams)


def naive_full_sort(
    query: torch.Tensor,
    gallery: torch.Tensor,
    labels: Sequence[torch.Tensor],
    chunk: int = BASELINE_CHUNK,
) -> dict[str, float]:
    """The baseline: per query, a stable sort of the whole distance row and cumulative match counts.

    Args:
        query, gallery: ``(m, d)`` and ``(n, d)`` float32 features.
        labels: query pids, gallery pids, query camids, gallery camids, ``(m,)`` / ``(n,)`` int64.
        chunk: queries per block.

    Returns:
        ``mAP``, ``mINP``, ``rank1``, ``rank5``, ``rank10`` over the queries with a valid match.
    """
    query_pids, gallery_pids, query_cams, gallery_cams = labels
    gallery_norms = gallery.square().sum(dim=1)
    positions = torch.arange(1, gallery.shape[0] + 1, device=gallery.device, dtype=torch.float64)
    ap, inp, first = [], [], []
    for start in range(0, query.shape[0], chunk):
        rows = slice(start, start + chunk)
        distances = torch.addmm(gallery_norms.unsqueeze(0), query[rows], gallery.T, alpha=-2)
        same_pid = query_pids[rows, None] == gallery_pids[None, :]
        junk = same_pid & (query_cams[rows, None] == gallery_cams[None, :])
        distances.masked_fill_(junk, math.inf)
        order = torch.sort(distances, dim=1, stable=True).indices
        hits = (same_pid & ~junk).gather(1, order)
        num_hits = hits.sum(dim=1)
        valid = num_hits > 0
        hits, num_hits = hits[valid], num_hits[valid].double()
        ap.append((hits.cumsum(dim=1) / positions * hits).sum(dim=1) / num_hits)
        match_positions = torch.where(hits, positions, 0.0)
        inp.append(num_hits / match_positions.amax(dim=1))
        first.append(torch.where(hits, positions, math.inf).amin(dim=1))
    first_rank = torch.cat(first)
    return {
        "mAP": float(torch.cat(ap).mean()),
        "mINP": float(torch.cat(inp).mean()),
        **{f"rank{k}": float((first_rank <= k).double().mean()) for k in (1, 5, 10)},
    }


def _baseline(
    size: Size, query: torch.Tensor, gallery: torch.Tensor, labels: list[torch.Tensor], device: torch.device
) -> dict[str, object]:
    subset = min(size.baseline_queries, size.num_query)
    sub_labels = [labels[0][:subset], labels[1], labels[2][:subset], labels[3]]
    naive_seconds, naive_metrics = _timed(lambda: naive_full_sort(query[:subset], gallery, sub_labels), device)
    own_seconds, own_metrics = _timed(lambda: evaluate(query[:subset], gallery, *sub_labels), device)
    scale = size.num_query / subset
    agree = all(abs(naive_metrics[key] - own_metrics[key]) < 1e-6 for key in naive_metrics)
    return {
        "description": (
            "naive full-sort evaluation (torchreid style: stable sort of every query's whole distance "
            f"row, cumulative sums over the sorted match flags, {BASELINE_CHUNK} queries a block), timed on "
            f"the first {subset} queries against the full gallery and extrapolated linearly to all queries; "
            "evaluate() is also timed on that subset, and the metrics of both on the subset are compared"
        ),
        "subset_queries": subset,
        "naive_full_sort_subset_s": naive_seconds["wall_s"],
        "naive_full_sort_extrapolated_s": naive_seconds["wall_s"] * scale,
        "evaluate_subset_s": own_seconds["wall_s"],
        "subset_speedup": naive_seconds["wall_s"] / own_seconds["wall_s"],
        "metrics_agree_on_subset": agree,
        "naive_metrics_on_subset": naive_metrics,
        "evaluate_metrics_on_subset": {key: own_metrics[key] for key in naive_metrics},
    }


def _gemm_probe(query: torch.Tensor, gallery: torch.Tensor, rows: int = GEMM_PROBE_ROWS) -> dict[str, object]:
    """Time one ``(rows, n)`` block of the distance product with torch and with numpy (the BLAS that
    ``evaluate`` uses on the CPU)."""
    block = query[:rows].contiguous()
    out = np.empty((block.shape[0], gallery.shape[0]), np.float32)
    torch_s, _ = _timed(lambda: torch.mm(block, gallery.T), query.device)
    numpy_s, _ = _timed(lambda: np.matmul(block.numpy(), gallery.numpy().T, out=out), query.device)
    flop = 2 * block.shape[0] * gallery.shape[0] * gallery.shape[1]
    return {
        "description": f"one {block.shape[0]} x {gallery.shape[0]} block of the query . gallery product",
        "torch_mm_s": torch_s["wall_s"],
        "numpy_matmul_s": numpy_s["wall_s"],
        "torch_gflops": flop / torch_s["wall_s"] / 1e9,
        "numpy_gflops": flop / numpy_s["wall_s"] / 1e9,
    }


def _timed(function: Callable[[], dict], device: torch.device) -> tuple[dict[str, float], dict]:
    """Run ``function`` once; wall seconds, the process's CPU seconds (all threads; less sensitive than the
    wall time to other processes on the machine), and CUDA-event seconds on a GPU."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        begin.record()
    start, cpu_start = time.perf_counter(), time.process_time()
    value = function()
    if device.type == "cuda":
        end.record()
        torch.cuda.synchronize(device)
    seconds = {"wall_s": time.perf_counter() - start, "process_cpu_s": time.process_time() - cpu_start}
    if device.type == "cuda":
        seconds["cuda_event_s"] = begin.elapsed_time(end) / 1000
    return seconds, value


def _first(labels: list[torch.Tensor], num_query: int, num_gallery: int) -> list[torch.Tensor]:
    return [labels[0][:num_query], labels[1][:num_gallery], labels[2][:num_query], labels[3][:num_gallery]]


if __name__ == "__main__":
    sys.exit(main())
