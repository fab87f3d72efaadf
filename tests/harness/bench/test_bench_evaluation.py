"""Smoke test of the evaluation benchmark at its smallest size."""

from __future__ import annotations

import json

from harness.bench import evaluation as bench
from harness.bench.headlines import evaluation_headline


def test_small_benchmark_writes_a_complete_result(tmp_path):
    assert bench.main(["--size", "small", "--out", str(tmp_path), "--notes", "smoke test"]) == 0
    result = json.loads((tmp_path / "evaluation-small-cpu.json").read_text())
    assert result["shapes"]["num_query"] == bench.SIZES["small"].num_query
    assert result["timing"]["wall_s"] > 0
    assert result["memory"]["process_peak_rss_mb"] > 0
    assert 0 < result["metrics"]["mAP"] < 1
    assert result["metrics"]["num_valid_queries"] > 0
    assert result["baseline"]["metrics_agree_on_subset"] is True
    assert result["baseline"]["naive_full_sort_extrapolated_s"] > 0
    assert result["baseline"]["gemm_probe"]["numpy_matmul_s"] > 0
    assert result["notes"].startswith("smoke test")
    assert {"git_commit", "git_dirty", "torch", "date"} <= result["provenance"].keys()
    assert result["provenance"]["torch"]
    # The benchmark writes its own headline (what the report shows), the one of the figures in the file.
    headline = result.pop("headline")
    assert headline == evaluation_headline("evaluation-small-cpu.json", result)
    assert headline[0]["what"] == "evaluate (small, cpu)" and headline[0]["ratio"].endswith("x faster")
