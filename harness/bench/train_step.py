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
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    arch = args.arch or ("resnet50" if gpu else "resnet18")
    height = args.height or (256 if gpu else 64)
    width = args.width or (128 if gpu else 32)
    iters = args.iters or (50 if gpu else 5)
    precision = resolve_precision(args.precision, device.type)
    load_before = os.getloadavg()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = args.memory_size
    model = models.create(arch, bn_groups=args.bn_groups).to(device)
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    pool = 512
    images = torch.randint(0, 256, (pool, 3, height, width), dtype=torch.uint8, device=device)
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
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4, fused=gpu or None)
    augment = TrainAugment(height, width, pad=max(1, round(10 * width / 128))).to(device)
    ctx = DistContext(device=device)
    settings = StepSettings(
        iters=iters,
        batch_size=args.batch_size,
        num_instances=4,
        seed=0,
        temperature=0.05,
        momentum=0.2,
        margin=1.0,
        lambda_sp=1.0,
        precision=precision,
    )
    train = TrainImages(images[image_index], camids, augment)
    warm_up = dataclasses.replace(settings, iters=2)
    train_epoch(model, optimizer, memory, train, targets, epoch=0, settings=warm_up, ctx=ctx)
    _sync(device)
    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    train_epoch(model, optimizer, memory, train, targets, epoch=1, settings=settings, ctx=ctx)
    _sync(device)
    train_seconds = time.perf_counter() - start

    model.eval()
    batch = normalize(images[: args.batch_size])
    with torch.no_grad():
        model(batch)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            model(batch)
        _sync(device)
    extract_seconds = time.perf_counter() - start

    train_ips = iters * args.batch_size / train_seconds
    extract_ips = iters * args.batch_size / extract_seconds
    flops = _flops_per_image(model, height, width, device) if gpu else None
    record = {
        "benchmark": "train_step",
        "arch": arch,
        "input": [height, width],
        "batch_size": args.batch_size,
        "bn_groups": args.bn_groups,
        "precision": precision,
        "memory_rows": n,
        "timed_steps": iters,
        "train_images_per_s": round(train_ips, 2),
        "extract_images_per_s": round(extract_ips, 2),
        "ratio_train_to_extract_time_per_image": round(extract_ips / train_ips, 3),
        "baseline": "plain feature extraction (eval mode, no grad) of the same batch size, same run",
        "train_tflops_per_s": round(train_ips * flops / 1e12, 2) if flops else None,
        "train_flops_per_image": flops,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if gpu else None,
        "peak_rss_mib": proc_status_mb("VmHWM"),
        "machine": machine(device),
        "provenance": provenance(),
        "notes": load_note(load_before, os.getloadavg()),
    }
    path = write_record(f"train-step-{arch}-{device.type}", record, train_step_headline, args.out)
    sys.stdout.write(f"train {train_ips:.1f} img/s, extract {extract_ips:.1f} img/s -> {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
