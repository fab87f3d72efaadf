"""harness/bench/label_phase.py: its dense reference, its constraint answers, a small end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# The benchmark's baseline is a bare faiss search: without faiss (a stock GPU image) these tests skip, saying so.
pytest.importorskip("faiss", reason="the label-phase benchmark's baseline is a bare faiss k-NN search")

from harness.bench.headlines import label_phase_headline  # noqa: E402
from harness.bench.label_phase import (  # noqa: E402
    SIZES,
    dense_reference_jaccard,
    main,
    make_features,
    truthful_pairs,
)
from spal.clustering import jaccard_distance  # noqa: E402


def test_dense_reference_agrees_with_jaccard_distance() -> None:
    features, _, _ = make_features(SIZES["small"], np.random.default_rng(0))
    features = features[:400]
    ours = jaccard_distance(features)
    dense = dense_reference_jaccard(features, 30, 6)
    full = np.ones(ours.shape, dtype=np.float32)
    coo = ours.tocoo()
    full[coo.row, coo.col] = coo.data
    assert (dense < 1).sum() > 4 * 400  # real neighbourhoods, not just the diagonal
    np.testing.assert_allclose(full, dense, atol=1e-5, rtol=0)


def test_truthful_pairs_are_distinct_and_half_inside_an_identity() -> None:
    pids = np.repeat(np.arange(50), np.arange(2, 52))
    pairs = truthful_pairs(pids, np.random.default_rng(1))
    n = len(pids)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    assert np.all(pids[pairs[:n, 0]] == pids[pairs[:n, 1]])
    assert len(pairs) > 1.9 * n


def test_small_run_writes_the_result(tmp_path: Path) -> None:
    assert main(["--size", "small", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "label-phase-small-cpu.json").read_text())
    timing = result["timing"]
    for key in ("knn_baseline_s", "jaccard_s", "dbscan_plain_s", "dbscan_constrained_s", "selection_s"):
        assert timing[key] > 0
    assert set(timing["jaccard_steps_s"]) == {"knn", "encode", "query_expansion", "min_sums", "assemble"}
    assert timing["label_phase_over_knn"] == timing["label_phase_s"] / timing["knn_baseline_s"]
    assert result["memory"]["label_phase_process_peak_rss_mb"] > 0
    assert result["clusters_plain"]["num_clusters"] > 0
    assert {"machine", "provenance", "notes"} <= set(result)
    assert {"git_commit", "git_dirty", "torch", "faiss", "date"} <= set(result["provenance"])
    # The benchmark writes its own headline (what the report shows), the one of the figures in the file.
    headline = result.pop("headline")
    assert headline == label_phase_headline("label-phase-small-cpu.json", result)
    assert headline[0]["what"] == "label phase (small, cpu)" and headline[0]["ratio"].endswith("x the k-NN")
