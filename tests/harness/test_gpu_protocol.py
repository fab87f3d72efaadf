"""The GPU protocol record's pure parts on hand-made timings (the CUDA parts run in `make gpu-check`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench.gpu_protocol import (
    MSMT17,
    PROJECTION_FORMULA,
    build_record,
    cut_train_lists,
    device_slug,
    epoch_phases,
    projected_total_s,
    warmup_seconds,
)
from spal import datasets
from spal.datasets import synthetic


def epoch(i: int, train: float, label: tuple[float, float, float], checkpoint: float, evaluate: float | None = None):
    record = {
        "epoch": i, "time_train": train, "time_distance": label[0], "time_cluster": label[1],
        "time_select": label[2], "time_checkpoint": checkpoint, "time_extract": 0.0, "mAP": None,
    }  # fmt: skip
    if evaluate is not None:
        record["time_evaluate"] = evaluate
    return record


METRICS = [
    epoch(0, 10.0, (1.0, 0.5, 0.5), 0.2),
    epoch(1, 4.0, (0.5, 0.25, 0.25), 0.1),
    epoch(2, 4.4, (0.7, 0.15, 0.15), 0.3, evaluate=6.0),
]


def test_phases_sum_the_label_steps_and_default_a_missing_evaluation_to_zero() -> None:
    phases = epoch_phases(METRICS)
    assert [p["label_phase_s"] for p in phases] == [2.0, 1.0, 1.0]
    assert [p["evaluation_s"] for p in phases] == [0.0, 0.0, 6.0]
    assert [p["train_s"] for p in phases] == [10.0, 4.0, 4.4]
    assert [p["checkpoint_s"] for p in phases] == [0.2, 0.1, 0.3]


def test_warmup_is_the_first_epochs_extra_time_and_never_negative() -> None:
    assert warmup_seconds([10.0, 4.0, 4.4]) == pytest.approx(5.8)
    assert warmup_seconds([3.0, 4.0]) == 0.0
    with pytest.raises(ValueError, match="two epochs"):
        warmup_seconds([10.0])


def test_projection_is_the_written_formula() -> None:
    total = projected_total_s(startup_s=20, warmup_s=6, test_decode_s=9, label_phase_s=1, train_s=4, checkpoint_s=0.5,
                              evaluation_s=7)  # fmt: skip
    assert total == 20 + 6 + 9 + 50 * (1 + 4 + 0.5) + 5 * 7
    assert "epochs = 50" in PROJECTION_FORMULA and "evaluations = 5" in PROJECTION_FORMULA
    assert projected_total_s(startup_s=0, warmup_s=0, test_decode_s=0, label_phase_s=1, train_s=1, checkpoint_s=0,
                             evaluation_s=1, epochs=2, evaluations=1) == 5  # fmt: skip


def test_record_from_hand_made_timings() -> None:
    # Wall time: 29 s in the epochs' phases (10 + 2 + 0.2, 4 + 1 + 0.1, 4.4 + 1 + 0.3 + 6) plus 13 s of start-up.
    record = build_record(
        metrics=METRICS, run_wall_s=42.0, iters=400, batch_size=64, ceiling_img_s=8000.0, evaluation_full_s=8.0,
        test_decode_s=10.0, device="NVIDIA H100 80GB HBM3", torch_version="2.14.1", git_commit="abc",
        extra={"generate_s": 30.0},
    )  # fmt: skip
    assert record["startup_s"] == pytest.approx(13.0)
    assert record["train_s"] == pytest.approx(4.2)
    assert record["warmup_s"] == pytest.approx(5.8)
    assert record["label_phase_s"] == pytest.approx(1.0) and record["label_phase_max_s"] == pytest.approx(2.0)
    assert record["checkpoint_s"] == pytest.approx(0.2)
    assert record["train_img_s"] == pytest.approx(round(25600 / 4.2, 1))
    assert record["ratio"] == pytest.approx(round(25600 / 4.2 / 8000, 4))
    expected = 13.0 + 5.8 + 10.0 + 50 * (1.0 + 4.2 + 0.2) + 5 * 8.0
    assert record["projected_total_s"] == pytest.approx(round(expected, 1))
    assert record["meets_targets"] == {"projected_total_s": True, "ratio": False, "label_phase_s": True}
    assert record["device"] == "NVIDIA H100 80GB HBM3" and record["git_commit"] == "abc"
    assert record["torch"] == "2.14.1" and record["generate_s"] == 30.0
    assert record["projection_formula"] == PROJECTION_FORMULA
    assert [p["epoch"] for p in record["per_epoch"]] == [0, 1, 2]


def test_a_missing_ceiling_leaves_the_ratio_unknown_and_one_epoch_is_refused() -> None:
    record = build_record(
        metrics=METRICS[:2], run_wall_s=20.0, iters=400, batch_size=64, ceiling_img_s=None, evaluation_full_s=8.0,
        test_decode_s=10.0, device="x", torch_version="2.14.1", git_commit=None,
    )  # fmt: skip
    assert record["ratio"] is None and record["meets_targets"]["ratio"] is False
    with pytest.raises(ValueError, match="at least two"):
        build_record(
            metrics=METRICS[:1], run_wall_s=20.0, iters=400, batch_size=64, ceiling_img_s=1.0, evaluation_full_s=8.0,
            test_decode_s=10.0, device="x", torch_version="2.14.1", git_commit=None,
        )  # fmt: skip


def test_device_slug() -> None:
    assert device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert device_slug("NVIDIA H200") == "nvidia-h200"


def test_train_lists_are_cut_to_an_exact_count_keeping_every_identity(tmp_path: Path) -> None:
    root = synthetic.generate(tmp_path, "msmt17", num_ids=20, num_cams=4, images_per_id=6, height=16, width=8)
    before = datasets.create("msmt17", root)
    assert len(before.train) == 60
    cut_train_lists(tmp_path / "msmt17" / "MSMT17_V1", 53)
    after = datasets.create("msmt17", root)
    assert len(after.train) == 53
    assert after.statistics("train")[0] == before.statistics("train")[0] == 10
    assert after.query == before.query and after.gallery == before.gallery
    assert MSMT17["train_images"] == 32_621 and MSMT17["train_ids"] == 1_041


def test_a_real_runs_metrics_make_a_record(tmp_path: Path) -> None:
    import json

    from spal.engine.config import TrainConfig
    from spal.engine.runner import run_training

    root = synthetic.generate(tmp_path / "d", "market1501", num_ids=8, num_cams=3, images_per_id=5, height=32,
                              width=16, seed=3)  # fmt: skip
    logs = tmp_path / "l"
    cfg = TrainConfig(
        dataset="synthetic", data_dir=str(root), logs_dir=str(logs), arch="resnet18", height=32, width=16,
        batch_size=16, epochs=2, iters=2, eval_step=2, workers=0, k1=6, k2=2, min_samples=2, device="cpu",
        synthetic={"num_ids": 8, "num_cams": 3, "images_per_id": 5, "height": 32, "width": 16, "seed": 3},
    )  # fmt: skip
    final = run_training(cfg)
    metrics = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    record = build_record(
        metrics=metrics, run_wall_s=final["wall_time_s"], iters=2, batch_size=16, ceiling_img_s=None,
        evaluation_full_s=1.0, test_decode_s=1.0, device="cpu", torch_version="x", git_commit=None,
    )  # fmt: skip
    assert final["precision"] == "fp32"
    assert [p["epoch"] for p in record["per_epoch"]] == [0, 1]
    assert all(p["checkpoint_s"] > 0 and p["train_s"] > 0 for p in record["per_epoch"])
    assert record["per_epoch"][1]["evaluation_s"] > 0 and record["startup_s"] > 0
