"""``python -m harness <command>``: reproduce, ablation, sweep, report, compare, ci-regression, bench, demo, docker.

Imports are lazy so that ``reproduce`` can check for the data set (and fail fast) before torch is loaded.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = (
        "reproduce",
        "ablation",
        "sweep",
        "report",
        "compare",
        "ci-regression",
        "bench",
        "demo",
        "docker",
    )
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        sys.stderr.write(f"usage: python -m harness {{{','.join(commands)}}} [options]\n")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "docker":
        from harness.docker import main as docker_main

        return docker_main(rest)
    from harness.cli import run_command

    return run_command(command, rest)


if __name__ == "__main__":
    sys.exit(main())
