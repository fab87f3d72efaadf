"""What every benchmark record shares: the machine, the versions and commit, peak memory, the load."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from harness.bench.headlines import Headline

__all__ = [
    "proc_status_mb",
    "reset_peak_rss",
    "machine",
    "provenance",
    "load_note",
    "write_record",
    "BENCH_DIR",
]

BENCH_DIR = Path(__file__).resolve().parents[2] / "results" / "bench"


def proc_status_mb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``: resident now, ``VmHWM``: peak) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process, so it measures what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def machine(device: torch.device) -> dict[str, Any]:
    """The hardware a figure was measured on."""
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = platform.uname()
    return {
        "system": uname.system,
        "machine": uname.machine,
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def provenance() -> dict[str, Any]:
    """Versions, commit and date (the environment record of :mod:`harness.environment`)."""
    from harness.environment import collect_environment

    env = collect_environment(Path(__file__).resolve().parents[2])
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **env}


def load_note(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """Say how busy the machine was: a load above the CPU count makes the times pessimistic."""
    return (
        f"1/5/15-minute load average {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} at the start, "
        f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} at the end, on {os.cpu_count()} CPUs; a load above the "
        "CPU count means other processes shared the CPUs and the times are pessimistic."
    )


def write_record(name: str, payload: dict[str, Any], headline: Headline, out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` (default ``results/bench/``) with the benchmark's ``headline`` of it
    (:mod:`harness.bench.headlines`, what the report shows) and return its path."""
    folder = Path(out_dir) if out_dir is not None else BENCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    record = {**payload, "headline": headline(path.name, payload)}
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
