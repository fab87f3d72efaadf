"""``python -m harness <command>``: reproduce, ablation, sweep, report, compare, ci-regression, bench, demo, docker.

Imports are lazy so that ``reproduce`` can check for the data set (and fail fast) before torch is loaded.
"""

from __future__ import annotations

import sys

#: Every command with what it does, in one line each (``python -m harness --help`` lists them).
COMMANDS: dict[str, str] = {
    "reproduce": "train a protocol (paper; ci on synthetic data) for every seed into results/runs/ (resumable)",
    "ablation": "train the component ablations (selection, clustering, propagation, lambda) of a protocol",
    "sweep": "train the annotation-budget sweep of a protocol (budgets x selections)",
    "report": "regenerate results/REPORT.md and its figures from results/",
    "compare": "write the comparison tables of the finished runs and the paper (CSV, LaTeX) to results/tables/",
    "ci-regression": "run the ci protocol and check it against results/ci/baseline.json",
    "bench": "time the training step (benchmarks of the other phases: harness.bench.*)",
    "demo": "SPAL on the synthetic set next to the same run without labels (make demo)",
    "docker": "build the CUDA image, or run reproduce in it on all GPUs",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return (
        "usage: python -m harness COMMAND [options]   (python -m harness COMMAND --help for its options)\n\n"
        "commands:\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(_usage())
        return 2
    command, rest = argv[0], argv[1:]
    if command == "docker":
        from harness.docker import main as docker_main

        return docker_main(rest)
    from harness.cli import run_command

    return run_command(command, rest)


if __name__ == "__main__":
    sys.exit(main())
