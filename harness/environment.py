"""What a run ran on: library versions, GPU, CPU, host and the exact source (git commit and dirty flag).

:func:`collect_environment` returns the ``env.json`` object of the run contract. Everything is probed,
nothing is assumed: a missing ``nvidia-smi``, git, or repository gives ``null`` in the matching keys rather
than a guess, and the dirty flag counts every change git reports outside ``results/`` (untracked files
included), so that a run made from an uncommitted tree says so. ``results/`` is left out because the harness
writes there: without the exclusion a user's first ``make reproduce`` would mark every later run dirty although
the code is unchanged. :func:`tracked_files` tells committed reference results from a user's own runs.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_KEYS",
    "RESULTS_FOLDER",
    "collect_environment",
    "cpu_name",
    "git_state",
    "nvidia_smi_gpus",
    "parse_nvidia_smi",
    "tracked_files",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The keys of ``env.json`` (run contract), in order.
ENV_KEYS: tuple[str, ...] = (
    "torch",
    "torchvision",
    "faiss",
    "numpy",
    "python",
    "cuda",
    "gpu_name",
    "gpu_count",
    "driver",
    "cpu",
    "cpu_count",
    "hostname",
    "git_commit",
    "git_dirty",
    "date",
)

#: The folder (relative to the repository root) that the harness writes results to; the dirty flag ignores it.
RESULTS_FOLDER = "results"

# Probing tools must never hang a run: a stuck driver or a huge repository gives up after this long.
_PROBE_TIMEOUT_S = 20


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """stdout of ``cmd`` when it exits 0, else ``None`` (missing tool, failure or timeout)."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.debug("%s failed: %s", cmd[0], err)
        return None
    if done.returncode != 0:
        logger.debug("%s exited %d: %s", " ".join(cmd), done.returncode, done.stderr.strip())
        return None
    return done.stdout


def git_state(repo: Path | str | None = None) -> tuple[str | None, bool | None]:
    """The full commit SHA of ``HEAD`` and whether the working tree differs from it.

    Args:
        repo: a folder inside the repository (default: this project's root).

    Returns:
        ``(sha, dirty)``: ``sha`` is 40 hex digits, or ``None`` outside a repository or before the first
        commit; ``dirty`` is True when ``git status --porcelain`` lists anything outside
        :data:`RESULTS_FOLDER` (untracked files included), ``None`` when git cannot tell (no git, not a
        repository).
    """
    folder = Path(repo) if repo is not None else REPO_ROOT
    if shutil.which("git") is None:
        return None, None
    # ":(top)" makes both pathspecs relative to the repository root whatever folder inside it ``repo`` names.
    pathspec = [":(top)", f":(top,exclude){RESULTS_FOLDER}"]
    status = _run(["git", "status", "--porcelain", "--", *pathspec], cwd=folder)
    dirty = None if status is None else bool(status.strip())
    head = _run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=folder)
    sha = head.strip() if head else None
    return sha or None, dirty


def tracked_files(folder: Path | str) -> set[Path] | None:
    """The files under ``folder`` that git tracks (committed or staged), as resolved absolute paths.

    Returns:
        the set (empty when git tracks nothing there), or ``None`` when git cannot tell (no git, ``folder``
        missing or not inside a repository).
    """
    folder = Path(folder).resolve()
    if shutil.which("git") is None or not folder.is_dir():
        return None
    # -z: names come verbatim (no quoting of unusual characters); they are relative to ``folder``.
    out = _run(["git", "ls-files", "-z", "--", "."], cwd=folder)
    if out is None:
        return None
    return {folder / name for name in out.split("\0") if name}


def parse_nvidia_smi(text: str) -> list[tuple[str, str]]:
    """Parse ``nvidia-smi --query-gpu=name,driver_version --format=csv,noheader`` output.

    Returns:
        one ``(gpu name, driver version)`` per GPU line, in order; blank lines are skipped.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, driver = line.rpartition(",")
        gpus.append((name.strip(), driver.strip()))
    return gpus


def nvidia_smi_gpus() -> list[tuple[str, str]]:
    """``(name, driver)`` per GPU as ``nvidia-smi`` reports them; empty when it is absent or fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    return parse_nvidia_smi(out) if out else []


def cpu_name() -> str:
    """The CPU model name: ``/proc/cpuinfo`` on Linux, ``platform`` elsewhere, ``"unknown"`` if neither."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _module_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return getattr(module, "__version__", None)


def collect_environment(repo: Path | str | None = None) -> dict[str, Any]:
    """The ``env.json`` object of a run: exactly the keys of :data:`ENV_KEYS`.

    Args:
        repo: the source tree whose commit is recorded (default: this project's root).

    Returns:
        versions (``torch``, ``torchvision``, ``faiss``, ``numpy``, ``python``; ``cuda`` is the CUDA version
        torch was built with, ``None`` for a CPU build), GPU facts (``gpu_name`` of device 0 and
        ``gpu_count`` from torch.cuda, else from ``nvidia-smi``; ``driver`` from ``nvidia-smi``; ``None`` / 0
        without a GPU),
        ``cpu``, ``cpu_count``, ``hostname``, ``git_commit`` (full SHA or ``None``), ``git_dirty`` (bool, or
        ``None`` when git cannot tell) and ``date`` (ISO 8601, UTC).
    """
    import torch

    smi = nvidia_smi_gpus()
    if torch.cuda.is_available():
        gpu_count = torch.cuda.device_count()
        gpu_name: str | None = torch.cuda.get_device_name(0)
    else:
        gpu_count = len(smi)
        gpu_name = smi[0][0] if smi else None
    sha, dirty = git_state(repo)
    env = {
        "torch": torch.__version__,
        "torchvision": _module_version("torchvision"),
        "faiss": _module_version("faiss"),
        "numpy": _module_version("numpy"),
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "gpu_name": gpu_name,
        "gpu_count": gpu_count,
        "driver": smi[0][1] if smi else None,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count() or 1,
        "hostname": socket.gethostname(),
        "git_commit": sha,
        "git_dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if dirty:
        logger.warning("the source tree has uncommitted changes; env.json records git_dirty = true")
    return env
