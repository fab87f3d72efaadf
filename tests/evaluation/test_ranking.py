"""evaluate() against a per-query brute force written from SPEC 3.6, hand-computed cases and sklearn."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from spal.evaluation import evaluate, pairwise_squared_distance
from spal.evaluation import ranking as ranking_module


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The cases are tiny: one thread avoids OpenMP wake-ups, which dominate on a busy machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def reference_metrics(qf, gf, q_pids, g_pids, q_cams, g_cams, ranks=(1, 5, 10)):
    """SPEC 3.6 literally: one query at a time, float64 Euclidean distances, stable sort, junk removed."""
    qf, gf = np.asarray(qf, np.float64), np.asarray(gf, np.float64)
    aps, inps, first_ranks = [], [], []
    for i in range(len(qf)):
        distance = np.sqrt(((gf - qf[i]) ** 2).sum(axis=1))
        order = np.argsort(distance, kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hits = g_pids[order][keep] == q_pids[i]
        if not hits.any():
            continue
        match_ranks = np.flatnonzero(hits) + 1
        aps.append(np.mean(np.arange(1, len(match_ranks) + 1) / match_ranks))
        inps.append(len(match_ranks) / match_ranks[-1])
        first_ranks.append(match_ranks[0])
    if not aps:
        return {"mAP": 0.0, "mINP": 0.0, **{f"rank{k}": 0.0 for k in ranks}, "num_valid_queries": 0}
    first_ranks = np.array(first_ranks)
    result = {"mAP": float(np.mean(aps)), "mINP": float(np.mean(inps))}
    result.update({f"rank{k}": float(np.mean(first_ranks <= k)) for k in ranks})
    result["num_valid_queries"] = len(aps)
    return result


def assert_metrics_equal(actual, expected, tol=1e-6):
    assert actual.keys() == expected.keys()
    assert actual["num_valid_queries"] == expected["num_valid_queries"]
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=tol), key


def random_case(seed):
    """Sizes, labels and features varied by seed; integer features make float32 distances exact and tied."""
    rng = np.random.default_rng(seed)
    num_query, num_gallery, dims = rng.integers(1, 25), rng.integers(1, 60), rng.integers(1, 6)
    num_pids, num_cams = rng.integers(1, 8), rng.integers(1, 4)
    if seed % 4 == 3:
        qf, gf = rng.normal(size=(num_query, dims)), rng.normal(size=(num_gallery, dims))
    else:
        qf = rng.integers(-2, 3, size=(num_query, dims))
        gf = rng.integers(-2, 3, size=(num_gallery, dims))
    labels = {
        "q_pids": rng.integers(0, num_pids, num_query),
        "g_pids": rng.integers(0, num_pids, num_gallery),
        "q_cams": rng.integers(0, num_cams, num_query),
        "g_cams": rng.integers(0, num_cams, num_gallery),
    }
    chunk = [None, 1, 2, 3, 7, int(num_query) + 5][seed % 6]
    ranks = [(1, 5, 10), (1,), (2, 3, 100)][seed % 3]
    return qf.astype(np.float32), gf.astype(np.float32), labels, chunk, ranks


@pytest.mark.parametrize("seed", range(120))
def test_matches_brute_force_reference(seed):
    qf, gf, lab, chunk, ranks = random_case(seed)
    args = (lab["q_pids"], lab["g_pids"], lab["q_cams"], lab["g_cams"])
    expected = reference_metrics(qf, gf, *args, ranks=ranks)
    assert_metrics_equal(evaluate(qf, gf, *args, ranks=ranks, chunk_size=chunk), expected)


@pytest.mark.parametrize("seed", range(0, 120, 7))
def test_small_candidate_budget_gives_the_same_result(seed, monkeypatch):
    # Forces the candidates of a block to be sorted in many small row groups.
    monkeypatch.setattr(ranking_module, "_CANDIDATE_BUDGET", 5)
    qf, gf, lab, chunk, ranks = random_case(seed)
    args = (lab["q_pids"], lab["g_pids"], lab["q_cams"], lab["g_cams"])
    assert_metrics_equal(
        evaluate(qf, gf, *args, ranks=ranks, chunk_size=chunk), reference_metrics(qf, gf, *args, ranks=ranks)
    )


def one_query(gallery_positions, gallery_pids, gallery_cams, query_cam=0, query_pid=1, ranks=(1, 5, 10)):
    """1-D features: the query at 0, gallery images at the given positions on a line."""
    return evaluate(
        np.zeros((1, 1), np.float32),
        np.array(gallery_positions, np.float32)[:, None],
        [query_pid],
        gallery_pids,
        [query_cam],
        gallery_cams,
        ranks=ranks,
    )


def test_hand_computed_ap_inp_and_cmc():
    # Ranked gallery: match, other, match, other -> matches at ranks 1 and 3.
    result = one_query([1, 2, 3, 4], [1, 2, 1, 2], [1, 1, 1, 1], ranks=(1, 2, 3))
    assert result["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert result["mINP"] == pytest.approx(2 / 3)
    assert (result["rank1"], result["rank2"], result["rank3"]) == (1.0, 1.0, 1.0)
    assert result["num_valid_queries"] == 1


def test_first_match_at_rank_three():
    result = one_query([4, 1, 2, 3], [1, 2, 2, 1], [1, 1, 1, 1], ranks=(1, 2, 3))
    # Order: idx1 (other), idx2 (other), idx3 (match), idx0 (match) -> ranks 3 and 4.
    assert result["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert result["mINP"] == pytest.approx(2 / 4)
    assert (result["rank1"], result["rank2"], result["rank3"]) == (0.0, 0.0, 1.0)


def test_same_pid_same_camera_is_removed_not_counted():
    # The closest image is the query's identity in the query's camera: removed, so the others move up.
    result = one_query([1, 2, 3], [1, 2, 1], [0, 1, 1], ranks=(1, 2))
    # Kept ranking: idx1 (other) rank 1, idx2 (match) rank 2.
    assert result["mAP"] == pytest.approx(1 / 2)
    assert result["mINP"] == pytest.approx(1 / 2)
    assert (result["rank1"], result["rank2"]) == (0.0, 1.0)


def test_other_pid_same_camera_stays_as_negative():
    result = one_query([1, 2], [2, 1], [0, 1], ranks=(1,))
    assert result["mAP"] == pytest.approx(1 / 2)


def test_labels_have_no_special_values():
    # pid -1 and 0 are plain labels here: a pid -1 query matches pid -1 gallery images.
    result = one_query([1, 2], [0, -1], [1, 1], query_pid=-1, ranks=(1,))
    assert result["mAP"] == pytest.approx(1 / 2)
    assert result["num_valid_queries"] == 1


@pytest.mark.parametrize(("pids", "expected_ap"), [([2, 1], 1 / 2), ([1, 2], 1.0)])
def test_ties_are_broken_by_gallery_index(pids, expected_ap):
    # Two identical gallery features: the lower index ranks first.
    result = one_query([1, 1], pids, [1, 1], ranks=(1,))
    assert result["mAP"] == pytest.approx(expected_ap)


def test_duplicated_gallery_features_match_reference():
    rng = np.random.default_rng(7)
    base = rng.normal(size=(10, 8)).astype(np.float32)
    gallery = np.concatenate([base, base[::-1], base[:3]])
    queries = rng.normal(size=(6, 8)).astype(np.float32)
    labels = (
        rng.integers(0, 3, 6),
        rng.integers(0, 3, len(gallery)),
        rng.integers(0, 2, 6),
        rng.integers(0, 2, len(gallery)),
    )
    assert_metrics_equal(evaluate(queries, gallery, *labels), reference_metrics(queries, gallery, *labels))


def test_queries_without_valid_match_are_skipped():
    queries = np.array([[0.0], [10.0], [20.0]], np.float32)
    gallery = np.array([[1.0], [11.0], [12.0]], np.float32)
    # Query 1 (pid 5) only has a same-camera image; query 2 (pid 9) has none at all.
    result = evaluate(queries, gallery, [1, 5, 9], [1, 5, 2], [0, 0, 0], [1, 0, 1], ranks=(1,))
    assert result["num_valid_queries"] == 1
    assert result["mAP"] == 1.0
    assert result["rank1"] == 1.0


def test_nothing_matches_returns_zeros_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="spal.evaluation.ranking"):
        result = evaluate(np.ones((3, 4)), np.ones((5, 4)), [1, 2, 3], [7] * 5, [0, 0, 0], [1] * 5)
    assert result == {
        "mAP": 0.0,
        "mINP": 0.0,
        "rank1": 0.0,
        "rank5": 0.0,
        "rank10": 0.0,
        "num_valid_queries": 0,
    }
    assert "none of the 3 queries" in caplog.text


def test_empty_gallery_returns_zeros():
    result = evaluate(np.ones((2, 3)), np.ones((0, 3)), [1, 2], [], [0, 0], [], ranks=(1,))
    assert result["num_valid_queries"] == 0


def test_average_precision_agrees_with_sklearn():
    # Imported here: the module's gpu-marked test runs on bare GPU images without scikit-learn.
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="the reference is scikit-learn's")
    rng = np.random.default_rng(3)
    qf = rng.normal(size=(15, 16)).astype(np.float32)
    gf = rng.normal(size=(80, 16)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 4, 15), rng.integers(0, 4, 80)
    q_cams, g_cams = rng.integers(0, 3, 15), rng.integers(0, 3, 80)
    aps = []
    for i in range(15):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        y_true = g_pids[keep] == q_pids[i]
        if y_true.any():
            distance = np.linalg.norm(gf[keep].astype(np.float64) - qf[i], axis=1)
            aps.append(sklearn_metrics.average_precision_score(y_true, -distance))
    result = evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams)
    assert result["num_valid_queries"] == len(aps)
    assert result["mAP"] == pytest.approx(np.mean(aps), abs=1e-6)


def test_perfect_retrieval_scores_one():
    features = np.eye(6, dtype=np.float32)
    pids = np.arange(6)
    result = evaluate(features, features, pids, pids, np.zeros(6, int), np.ones(6, int))
    assert all(result[key] == 1.0 for key in ("mAP", "mINP", "rank1", "rank5", "rank10"))
    assert result["num_valid_queries"] == 6


def test_torch_numpy_and_float64_inputs_agree():
    qf, gf, lab, _, _ = random_case(5)
    args = (lab["q_pids"], lab["g_pids"], lab["q_cams"], lab["g_cams"])
    from_numpy = evaluate(qf, gf, *args)
    from_torch = evaluate(torch.from_numpy(qf), torch.from_numpy(gf), *(torch.from_numpy(a) for a in args))
    from_float64 = evaluate(qf.astype(np.float64), gf.astype(np.float64), *(list(a) for a in args))
    assert from_numpy == from_torch == from_float64


def test_autocast_and_reduced_precision_settings_are_ignored():
    rng = np.random.default_rng(11)
    qf = torch.from_numpy(rng.normal(size=(20, 64)).astype(np.float32))
    gf = torch.from_numpy(rng.normal(size=(200, 64)).astype(np.float32))
    labels = (
        rng.integers(0, 5, 20),
        rng.integers(0, 5, 200),
        rng.integers(0, 3, 20),
        rng.integers(0, 3, 200),
    )
    expected = evaluate(qf, gf, *labels)
    saved = torch.backends.mkldnn.matmul.fp32_precision
    try:
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert evaluate(qf, gf, *labels) == expected
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = saved


def test_ranking_keys_and_sort_keys_order_like_a_stable_sort():
    values = torch.tensor([0.5, 0.0, -0.0, -2.0, -1.0, 3.0, 0.5, -1.0])
    cols = torch.arange(values.numel())
    keys = ranking_module._sort_keys(torch.zeros_like(cols), values, cols, col_bits=3)
    expected = torch.from_numpy(np.argsort(values.numpy(), kind="stable"))
    assert torch.equal(torch.argsort(keys), expected)


def test_pairwise_squared_distance_matches_brute_force():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    expected = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    actual = pairwise_squared_distance(torch.from_numpy(x), torch.from_numpy(y))
    assert actual.shape == (7, 9)
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-10)
    same = pairwise_squared_distance(torch.from_numpy(x).float(), torch.from_numpy(x).float())
    assert bool((same >= 0).all())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_features": np.ones((2, 3)), "gallery_features": np.ones((4, 5))}, "same model"),
        ({"query_features": np.ones(3)}, "must be 2-D"),
        ({"query_pids": [1, 2, 3]}, "one label per image"),
        ({"gallery_camids": np.zeros(4, np.float32)}, "integer labels"),
        ({"ranks": (0, 1)}, "positive ints"),
        ({"ranks": ()}, "positive ints"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"query_features": np.array([[np.nan, 0, 0], [0, 0, 0]])}, "NaN or inf"),
        ({"gallery_features": [[1.0, 2.0, 3.0]] * 4}, "torch tensor or a numpy array"),
    ],
)
def test_bad_input_is_rejected_with_a_useful_message(kwargs, message):
    arguments = {
        "query_features": np.ones((2, 3)),
        "gallery_features": np.ones((4, 3)),
        "query_pids": [1, 2],
        "gallery_pids": [1, 2, 1, 2],
        "query_camids": [0, 0],
        "gallery_camids": [1, 1, 1, 1],
        **kwargs,
    }
    with pytest.raises((ValueError, TypeError), match=message):
        evaluate(**arguments)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_reference_even_with_tf32_enabled():
    saved = torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        for seed in range(20):
            qf, gf, lab, chunk, ranks = random_case(seed)
            args = (lab["q_pids"], lab["g_pids"], lab["q_cams"], lab["g_cams"])
            on_gpu = evaluate(
                torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda(), *args, ranks=ranks, chunk_size=chunk
            )
            assert_metrics_equal(on_gpu, reference_metrics(qf, gf, *args, ranks=ranks))
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved
