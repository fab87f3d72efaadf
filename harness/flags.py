"""Command-line flags shared by the harness's commands that run cells (``reproduce``, ``ablation``, ``sweep``,
``ci-regression``): apart from :mod:`harness.cli` so that a command's module can take them without importing
the dispatcher that imports it."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_run_flags"]


def add_run_flags(parser: argparse.ArgumentParser, layouts_help: str) -> None:
    """``--data-dir``, ``--layouts`` and ``--override``: the flags of every command that runs cells."""
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    parser.add_argument("--layouts", help=layouts_help)
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one training setting of every run (recorded in the variant name)",
    )
