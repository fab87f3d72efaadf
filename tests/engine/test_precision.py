"""--precision: bf16 on CUDA and fp32 on the CPU unless told, validated everywhere; the CUDA step never syncs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spal import models
from spal.cli import build_parser, train_config_from_args
from spal.data import TrainAugment
from spal.distributed import DistContext
from spal.engine import trainer
from spal.engine.config import TrainConfig, resolve_precision
from spal.engine.trainer import EpochTargets, StepSettings, TrainImages, train_epoch
from spal.losses import InstanceMemory


def test_default_is_bf16_on_cuda_and_fp32_elsewhere_and_a_given_one_wins() -> None:
    assert resolve_precision(None, "cuda") == "bf16"
    assert resolve_precision(None, "cpu") == "fp32"
    assert resolve_precision("fp32", "cuda") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"


def test_config_and_flag_accept_only_the_known_precisions() -> None:
    assert TrainConfig().precision is None
    with pytest.raises(ValueError, match="precision = 'fp16' must be one of bf16, fp32"):
        TrainConfig(precision="fp16")
    parser = build_parser()
    args = parser.parse_args(["train", "-d", "synthetic", "--precision", "fp32"])
    assert train_config_from_args(args).precision == "fp32"
    assert train_config_from_args(parser.parse_args(["train", "-d", "synthetic"])).precision is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--precision", "fp16"])


def _step_inputs(device: torch.device, n: int = 256, height: int = 64, width: int = 32):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = models.create("resnet18", bn_groups=1).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, device=device)
    memory = InstanceMemory(torch.nn.functional.normalize(torch.randn(n, model.feature_dim, device=device), dim=1))
    labels = rng.integers(0, n // 8, size=n)
    components = np.arange(n) - np.arange(n) % 2
    edges = np.stack([components[::4][:-1], components[::4][1:]], axis=1)
    targets = EpochTargets(labels, int(labels.max()) + 1, components, edges)
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, fused=True if device.type == "cuda" else None)
    train = TrainImages(images, rng.integers(0, 4, size=n), TrainAugment(height, width, pad=3).to(device))
    return model, optimizer, memory, train, targets, DistContext(device=device)


def _settings(precision: str) -> StepSettings:
    return StepSettings(
        iters=3, batch_size=32, num_instances=4, seed=0, temperature=0.05, momentum=0.2, margin=1.0, lambda_sp=1.0,
        precision=precision,
    )  # fmt: skip


def test_bf16_on_the_cpu_trains_and_changes_the_numbers_while_fp32_stays_float32() -> None:
    cpu = torch.device("cpu")
    losses = {}
    for precision in ("fp32", "bf16"):
        model, optimizer, memory, train, targets, ctx = _step_inputs(cpu)
        losses[precision] = train_epoch(model, optimizer, memory, train, targets, epoch=0,
                                        settings=_settings(precision), ctx=ctx)  # fmt: skip
        assert np.isfinite(losses[precision]["loss"]) and memory.features.dtype == torch.float32
    assert losses["fp32"]["loss"] != losses["bf16"]["loss"]  # autocast really ran for bf16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_the_cuda_training_step_never_synchronises_with_the_host(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = torch.device("cuda")
    model, optimizer, memory, train, targets, ctx = _step_inputs(cuda)
    settings = _settings(precision)
    train_epoch(model, optimizer, memory, train, targets, epoch=0, settings=settings, ctx=ctx)  # warm-up
    real_batches = trainer.global_batches
    steps = []

    def strict_batches(*args, **kw):
        # Sync debugging on from the first batch to the end of the last step; the set-up before the loop and
        # the epoch's one read-back of the losses after it are outside.
        torch.cuda.set_sync_debug_mode("error")
        try:
            for batch in real_batches(*args, **kw):
                steps.append(len(batch))
                yield batch
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(trainer, "global_batches", strict_batches)
    losses = train_epoch(model, optimizer, memory, train, targets, epoch=1, settings=settings, ctx=ctx)
    assert steps == [32, 32, 32] and np.isfinite(losses["loss"])
    assert torch.cuda.get_sync_debug_mode() == 0


def test_settings_saved_with_the_old_amp_switch_still_load() -> None:
    from spal.engine.config import upgrade_saved_settings

    old = {**TrainConfig().to_dict(), "amp": True}
    del old["precision"]
    assert TrainConfig.from_dict(upgrade_saved_settings(old)).precision == "bf16"
    assert upgrade_saved_settings({"amp": False})["precision"] == "fp32"
    assert upgrade_saved_settings({"precision": None}) == {"precision": None}
    with pytest.raises(ValueError, match="unknown training settings: amp"):
        TrainConfig.from_dict(old)


def test_resume_compares_an_old_amp_checkpoint_in_todays_keys() -> None:
    old = {**TrainConfig().to_dict(), "amp": False}
    del old["precision"]
    # amp false trained in fp32: resuming it in fp32 is the same run, in bf16 a different one.
    assert TrainConfig(precision="fp32").resume_differences(old) == []
    assert TrainConfig(precision="bf16").resume_differences(old) == ["precision 'fp32' -> 'bf16'"]
