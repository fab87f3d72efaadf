"""BatchNorm over 16 images at every world size (SPEC 2): the rule, and one DDP step on 1, 2 and 4 gloo processes
equal to one process with the matching groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spal import models
from spal.distributed import DistContext, average_buffers
from spal.models import BatchNormLayoutError, bn_groups_for, resolve_bn_groups

BATCH, H, W = 64, 32, 16


def test_paper_batch_gives_groups_of_16_at_one_two_and_four_processes() -> None:
    assert [bn_groups_for(64, w) for w in (1, 2, 4)] == [4, 2, 1]
    assert [64 // (w * bn_groups_for(64, w)) for w in (1, 2, 4)] == [16, 16, 16]
    assert bn_groups_for(32, 1) == 2 and bn_groups_for(32, 1, bn_batch=32) == 1


@pytest.mark.parametrize("world", [3, 5, 8])
def test_other_world_sizes_are_refused_naming_the_counts_that_work(world: int) -> None:
    with pytest.raises(BatchNormLayoutError) as info:
        bn_groups_for(64, world)
    text = str(info.value)
    assert len(text.splitlines()) == 1
    assert f"{world} processes" in text and "run on 1, 2 or 4 processes" in text


def test_a_batch_that_is_no_multiple_of_16_is_refused_and_explicit_groups_win() -> None:
    with pytest.raises(BatchNormLayoutError, match="multiple of 16.*--bn-groups"):
        bn_groups_for(24, 1)
    assert resolve_bn_groups(64, 1, None) == 4
    assert resolve_bn_groups(64, 2, None) == 2
    assert resolve_bn_groups(64, 1, 1) == 1  # explicit: BatchNorm over the whole batch
    assert resolve_bn_groups(24, 1, 3) == 3
    with pytest.raises(BatchNormLayoutError, match="--bn-groups dividing 32"):
        resolve_bn_groups(64, 2, 3)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, 3, H, W, generator=g), torch.randn(BATCH, 512, generator=g)


def _model(groups: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("resnet18", bn_groups=groups).train()


def _step(model: torch.nn.Module, x: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """One forward / backward of the engine's kind: the loss is a mean over this process's images."""
    features = model(x)
    (features * up).sum(1).mean().backward()
    return features.detach()


def _worker(rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        x, up = _inputs()
        model = _model(bn_groups_for(BATCH, world))
        ddp = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
        share = BATCH // world  # each process trains on its contiguous slice of the global batch
        part = slice(rank * share, (rank + 1) * share)
        features = _step(ddp, x[part], up[part])
        parts = [torch.empty_like(features) for _ in range(world)]
        dist.all_gather(parts, features)
        average_buffers(model, DistContext(rank=rank, world_size=world))
        if rank == 0:
            torch.save(
                {
                    "features": torch.cat(parts),
                    "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                    "buffers": dict(model.named_buffers()),
                },
                out,
            )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 4])
def test_one_ddp_step_equals_one_process_with_the_matching_groups(tmp_path: Path, world: int) -> None:
    out = tmp_path / "rank0.pt"
    mp.start_processes(
        _worker, args=(world, str(tmp_path / "rendezvous"), str(out)), nprocs=world, start_method="spawn"
    )
    multi = torch.load(out, weights_only=True)

    x, up = _inputs()
    single = _model(4)  # one process, 4 groups of 16: the paper's layout on one GPU
    features = _step(single, x, up)

    # The same BatchNorm statistics: the outputs (normalised with each group's batch statistics) and the running
    # statistics (averaged over the processes once, as the engine does after an epoch) agree.
    torch.testing.assert_close(multi["features"], features, rtol=1e-4, atol=1e-5)
    for name, buffer in single.named_buffers():
        torch.testing.assert_close(multi["buffers"][name].float(), buffer.float(), rtol=1e-4, atol=1e-5)
    # The same gradients: DDP's mean over processes of per-slice means is the global mean.
    grads = {n: p.grad for n, p in single.named_parameters() if p.grad is not None}
    assert grads.keys() == multi["grads"].keys()
    for name, grad in grads.items():
        torch.testing.assert_close(multi["grads"][name], grad, rtol=1e-3, atol=1e-6, msg=name)
    # A plain (ungrouped) BatchNorm over the whole batch would differ: the check can see a wrong layout.
    assert not torch.allclose(_step(_model(1), x, up), features, atol=1e-3)
