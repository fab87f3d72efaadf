"""Each benchmark's headline: the figures a reader looks for in its result file (what was measured, against
which baseline measured in the same run, the ratio, peak memory, the machine).

Every benchmark writes its headline into its file (``headline``: a list of rows keyed by
:data:`HEADLINE_COLUMNS`, see :func:`harness.bench.common.write_record`); the report shows only that.
:func:`headline_of` also computes it for the files written before benchmarks did, and for pytest-benchmark's
file. Standard library only: the report imports this without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "HEADLINE_COLUMNS",
    "Headline",
    "evaluation_headline",
    "gpu_protocol_headline",
    "headline_of",
    "label_phase_headline",
    "pytest_benchmark_headline",
    "train_step_headline",
]

#: The keys of a headline row, in the report's column order.
HEADLINE_COLUMNS = ("what", "measured", "baseline (same run)", "ratio", "peak memory", "machine", "commit", "file")

Headline = Callable[[str, Mapping[str, Any]], list[dict[str, Any]]]


def _dig(data: Mapping[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _base(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    machine = _dig(data, "machine", "gpu") or _dig(data, "machine", "cpu_model") or _dig(data, "machine", "cpu")
    commit = _dig(data, "provenance", "git_commit") or data.get("git_commit")
    return {"file": name, "machine": machine, "commit": (commit or "")[:7]}


def evaluation_headline(name: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``harness.bench.evaluation``: the evaluation against a full sort of every row."""
    wall = _dig(data, "timing", "wall_s")
    baseline = _dig(data, "baseline", "naive_full_sort_extrapolated_s")
    peak = _dig(data, "memory", "peak_rss_during_evaluate_mb") or _dig(data, "memory", "process_peak_rss_mb")
    return [
        {
            **_base(name, data),
            "what": f"evaluate ({data.get('size')}, {data.get('device')})",
            "measured": f"{wall:.1f} s",
            "baseline (same run)": f"full sort of every row: {baseline:.1f} s",
            "ratio": f"{baseline / wall:.2f}x faster",
            "peak memory": f"{peak:.0f} MB",
        }
    ]


def label_phase_headline(name: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``harness.bench.label_phase``: the label phase against a bare k-NN, the Jaccard distance against the
    dense reference when it ran."""
    base = _base(name, data)
    timing = data.get("timing", {})
    row = {
        **base,
        "what": f"label phase ({data.get('size')}, {data.get('device')})",
        "measured": f"{timing.get('label_phase_s', float('nan')):.1f} s",
        "baseline (same run)": f"bare faiss k-NN (k = k1): {timing.get('knn_baseline_s', float('nan')):.1f} s",
        "ratio": f"{timing.get('label_phase_over_knn', float('nan')):.2f}x the k-NN",
        "peak memory": f"{_dig(data, 'memory', 'label_phase_process_peak_rss_mb') or float('nan'):.0f} MB",
    }
    rows = [row]
    dense = data.get("dense_reference")
    if isinstance(dense, Mapping) and dense.get("dense_reference_s"):
        rows.append(
            {
                **base,
                "what": f"Jaccard distance ({data.get('size')}, {data.get('device')})",
                "measured": f"{dense['jaccard_s']:.1f} s",
                "baseline (same run)": f"dense reference: {dense['dense_reference_s']:.1f} s",
                "ratio": f"{dense['dense_over_jaccard']:.2f}x faster",
                "peak memory": f"dense: {dense.get('dense_reference_peak_rss_mb') or float('nan'):.0f} MB",
            }
        )
    return rows


def train_step_headline(name: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``harness.bench.train_step``: training images a second against extraction."""
    peak = (
        f"{data['peak_gpu_memory_gib']} GiB GPU"
        if data.get("peak_gpu_memory_gib") is not None
        else f"{data.get('peak_rss_mib') or float('nan'):.0f} MB"
    )
    flops = f", {data['train_tflops_per_s']} TFLOP/s" if data.get("train_tflops_per_s") else ""
    return [
        {
            **_base(name, data),
            "what": f"training step ({data.get('arch')}, "
            f"{'x'.join(map(str, data.get('input', [])))}, batch {data.get('batch_size')}, "
            f"bn_groups {data.get('bn_groups')})",
            "measured": f"{data.get('train_images_per_s')} img/s{flops}",
            "baseline (same run)": f"extraction: {data.get('extract_images_per_s')} img/s",
            "ratio": f"{data.get('ratio_train_to_extract_time_per_image')}x the time per image",
            "peak memory": peak,
        }
    ]


def gpu_protocol_headline(name: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``harness.bench.gpu_protocol``: the paper protocol's training step against the CUDA-graph ceiling."""
    ratio = data.get("ratio")
    return [
        {
            **_base(name, data),
            "machine": data.get("device"),
            "what": "training step of the paper protocol (MSMT17 size)",
            "measured": f"{data.get('train_img_s')} img/s",
            "baseline (same run)": f"CUDA-graph ceiling: {data.get('ceiling_img_s')} img/s",
            "ratio": "n/a" if ratio is None else f"{ratio:.1%} of the ceiling",
            "peak memory": "",
        }
    ]


def pytest_benchmark_headline(name: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """pytest-benchmark's ``--benchmark-json`` file (``make bench``): one row a timed step."""
    if not isinstance(data.get("benchmarks"), list):
        return []
    info = data.get("machine_info", {})
    machine = _dig(info, "cpu", "brand_raw") or info.get("processor")
    commit = _dig(data, "commit_info", "id") or ""
    return [
        {
            "file": name,
            "machine": machine,
            "commit": commit[:7],
            "what": b.get("name"),
            "measured": f"{_dig(b, 'stats', 'mean'):.4f} s (mean of {_dig(b, 'stats', 'rounds')})",
            "baseline (same run)": "",
            "ratio": "",
            "peak memory": "",
        }
        for b in data["benchmarks"]
    ]


# Files written before the benchmarks wrote their headline, and pytest-benchmark's, by their name's prefix.
_BY_PREFIX: dict[str, Headline] = {
    "evaluation-": evaluation_headline,
    "label-phase-": label_phase_headline,
    "train-step-": train_step_headline,
    "gpu-protocol-": gpu_protocol_headline,
    "pytest-benchmark": pytest_benchmark_headline,
}


def headline_of(name: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The headline rows of the result file ``name`` holding ``data``: the ones it holds, else the ones its
    benchmark would have written; ``[]`` for a file of no known benchmark.

    Raises:
        KeyError, TypeError, ValueError: a file without a headline lacks a figure its benchmark writes.
    """
    if isinstance(data, Mapping) and isinstance(data.get("headline"), list):
        return data["headline"]
    for prefix, headline in _BY_PREFIX.items():
        if name.startswith(prefix):
            return headline(name, data)
    return []
