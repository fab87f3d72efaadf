"""Training-step and feature-extraction throughput of a backbone (``make bench``).

Times, on the chosen device, full SPAL training steps (batched augmentation, forward, contrastive + support-pair
loss, backward, Adam, memory update) against plain feature extraction of the same images measured in the same
run (the ratio is the figure to compare across machines). On CUDA, CUDA events time the steps, peak GPU memory
is recorded, and the achieved TFLOP/s is computed from the model's FLOPs (``torch.utils.flop_counter``).

    python -m harness.bench.train_step [--arch resnet50 --height 256 --width 128 --batch-size 64 --bn-groups 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from harness.bench.common import load_note, machine, proc_status_mb, provenance, write_record
from harness.bench.headlines import train_step_headline
from spal import models
from spal.data import TrainAugment, normalize
from spal.distributed import DistContext
from spal.engine.config import PRECISIONS, resolve_precision
from spal.engine.trainer import EpochTargets, StepSettings, TrainImages, train_epoch
from spal.losses import InstanceMemory

__all__ = ["main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flops_per_image(model: torch.nn.Module, height: int, width: int, device: torch.device) -> float | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    x = torch.randn(2, 3, height, width, device=device, requires_grad=False)
    counter = FlopCounterMode(display=False)
    model.train()
    with counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its record; returns the exit status (0)."""
    case = _case(_parse_args(argv))
    load_before = os.getloadavg()
    workload = _workload(case)
    train_seconds = _time_training(case, workload)
    extract_seconds = _time_extraction(case, workload)
    images = case.iters * case.batch_size
    train_ips, extract_ips = images / train_seconds, images / extract_seconds
    flops = _flops_per_image(workload.model, case.height, case.width, case.device) if case.gpu else None
    record = _record(case, train_ips, extract_ips, flops, load_before)
    path = write_record(f"train-step-{case.arch}-{case.device.type}", record, train_step_headline, case.out)
    sys.stdout.write(f"train {train_ips:.1f} img/s, extract {extract_ips:.1f} img/s -> {path}\n")
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.bench.train_step")
    parser.add_argument("--arch", default=None, help="default: resnet50 on CUDA, resnet18 on the CPU")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bn-groups", type=int, default=1)
    parser.add_argument("--iters", type=int, default=None, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--memory-size", type=int, default=12936, help="instance memory rows (Market-1501's n)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None, help="default: bf16 on CUDA, fp32 on the CPU (as spal train)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class _Case:
    """What one run times: the command line's settings with the device's defaults filled in (a paper-sized
    ResNet-50 step on CUDA, a small ResNet-18 one on the CPU). ``out`` is the record's folder (None: the
    default of :func:`harness.bench.common.write_record`)."""

    device: torch.device
    arch: str
    height: int
    width: int
    batch_size: int
    bn_groups: int
    iters: int
    memory_rows: int
    precision: str
    out: str | None

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"


def _case(args: argparse.Namespace) -> _Case:
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    return _Case(
        device=device,
        arch=args.arch or ("resnet50" if gpu else "resnet18"),
        height=args.height or (256 if gpu else 64),
        width=args.width or (128 if gpu else 32),
        batch_size=args.batch_size,
        bn_groups=args.bn_groups,
        iters=args.iters or (50 if gpu else 5),
        memory_rows=args.memory_size,
        precision=resolve_precision(args.precision, device.type),
        out=args.out,
    )


@dataclasses.dataclass
class _Workload:
    """A model with its optimizer and instance memory, and one epoch's images and targets to train on.

    Attributes:
        images: the ``(512, 3, height, width)`` uint8 pool the training images are drawn from.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    memory: InstanceMemory
    train: TrainImages
    targets: EpochTargets
    settings: StepSettings
    images: torch.Tensor


def _workload(case: _Case) -> _Workload:
    """The workload, seeded (torch and numpy, seed 0) so that every run trains on the same numbers."""
    device = case.device
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = case.memory_rows
    model = models.create(case.arch, bn_groups=case.bn_groups).to(device)
    if case.gpu:
        model = model.to(memory_format=torch.channels_last)
    pool = 512
    images = torch.randint(0, 256, (pool, 3, case.height, case.width), dtype=torch.uint8, device=device)
    memory = InstanceMemory(torch.nn.functional.normalize(torch.randn(n, model.feature_dim, device=device), dim=1))
    labels = rng.integers(0, n // 16, size=n)
    # Support-pair constraints as late in a run: pairs of images in one must-link component, components
    # cannot-linked in a chain.
    components = np.arange(n) - np.arange(n) % 2
    edges = np.stack([components[::4][:-1], components[::4][1:]], axis=1)
    targets = EpochTargets(labels, int(labels.max()) + 1, components, edges)
    camids = rng.integers(0, 6, size=n)
    # The images of the benchmark are a pool of `pool` random ones; the indices map into it.
    image_index = torch.as_tensor(rng.integers(0, pool, size=n), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4, fused=case.gpu or None)
    augment = TrainAugment(case.height, case.width, pad=max(1, round(10 * case.width / 128))).to(device)
    settings = StepSettings(
        iters=case.iters,
        batch_size=case.batch_size,
        num_instances=4,
        seed=0,
        temperature=0.05,
        momentum=0.2,
        margin=1.0,
        lambda_sp=1.0,
        precision=case.precision,
    )
    train = TrainImages(images[image_index], camids, augment)
    return _Workload(model, optimizer, memory, train, targets, settings, images)


def _time_training(case: _Case, work: _Workload) -> float:
    """Seconds of ``case.iters`` full training steps, after 2 warm-up steps; on CUDA the peak GPU memory is
    reset after the warm-up, so it is the timed steps' peak."""
    ctx = DistContext(device=case.device)
    warm_up = dataclasses.replace(work.settings, iters=2)
    train_epoch(work.model, work.optimizer, work.memory, work.train, work.targets, epoch=0, settings=warm_up, ctx=ctx)
    _sync(case.device)
    if case.gpu:
        torch.cuda.reset_peak_memory_stats(case.device)
    start = time.perf_counter()
    train_epoch(
        work.model, work.optimizer, work.memory, work.train, work.targets, epoch=1, settings=work.settings, ctx=ctx
    )
    _sync(case.device)
    return time.perf_counter() - start


def _time_extraction(case: _Case, work: _Workload) -> float:
    """Seconds of ``case.iters`` forward passes (eval mode, no grad) of one batch, after one warm-up pass:
    the baseline measured in the same run."""
    work.model.eval()
    batch = normalize(work.images[: case.batch_size])
    with torch.no_grad():
        work.model(batch)
        _sync(case.device)
        start = time.perf_counter()
        for _ in range(case.iters):
            work.model(batch)
        _sync(case.device)
    return time.perf_counter() - start


def _record(
    case: _Case, train_ips: float, extract_ips: float, flops: float | None, load_before: tuple[float, ...]
) -> dict[str, Any]:
    """The benchmark's record: the case, the two throughputs (images a second) and their ratio, the achieved
    TFLOP/s (``flops`` a training image, CUDA only), peak memory, the machine and its load."""
    return {
        "benchmark": "train_step",
        "arch": case.arch,
        "input": [case.height, case.width],
        "batch_size": case.batch_size,
        "bn_groups": case.bn_groups,
        "precision": case.precision,
        "memory_rows": case.memory_rows,
        "timed_steps": case.iters,
        "train_images_per_s": round(train_ips, 2),
        "extract_images_per_s": round(extract_ips, 2),
        "ratio_train_to_extract_time_per_image": round(extract_ips / train_ips, 3),
        "baseline": "plain feature extraction (eval mode, no grad) of the same batch size, same run",
        "train_tflops_per_s": round(train_ips * flops / 1e12, 2) if flops else None,
        "train_flops_per_image": flops,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(case.device) / 2**30, 2) if case.gpu else None,
        "peak_rss_mib": proc_status_mb("VmHWM"),
        "machine": machine(case.device),
        "provenance": provenance(),
        "notes": load_note(load_before, os.getloadavg()),
    }


if __name__ == "__main__":
    sys.exit(main())
