"""Evaluation on CUDA from images decoded once a run gives the CPU path's numbers (gpu-marked)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spal import datasets, models
from spal.distributed import DistContext
from spal.engine.config import TrainConfig
from spal.engine.runner import EvalImages, evaluate_on_test

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_decoded_once_cuda_evaluation_matches_the_cpu_one(data_dir: Path) -> None:
    data = datasets.create("market1501", data_dir)
    cfg = TrainConfig(dataset="market1501", data_dir=str(data_dir), arch="resnet18", height=32, width=16,
                      batch_size=16, workers=2, precision="fp32")  # fmt: skip
    torch.manual_seed(0)
    model = models.create("resnet18", bn_groups=1)
    cpu = evaluate_on_test(model, data, cfg, DistContext(device=torch.device("cpu")))
    cuda = torch.device("cuda")
    model = model.to(cuda).to(memory_format=torch.channels_last)
    images = EvalImages(data, cfg, cuda)
    first = evaluate_on_test(model, data, cfg, DistContext(device=cuda), images)
    kept = dict(images.images)
    again = evaluate_on_test(model, data, cfg, DistContext(device=cuda), images)
    assert images.images.keys() == {"query", "gallery"} and all(images.images[k] is kept[k] for k in kept)
    assert all(t.dtype == torch.uint8 for t in kept.values())  # decoded once, kept as uint8
    assert first == again
    assert first["num_valid_queries"] == cpu["num_valid_queries"]
    # cuDNN may run the convolutions in TF32: near-ties can swap, so the metrics agree closely, not exactly.
    for key in ("mAP", "rank1"):
        assert abs(first[key] - cpu[key]) < 2.0, key
