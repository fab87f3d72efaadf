"""``--oracle human``: the training loop's selector that serves the annotation page and waits for people."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spal.active.annotations import AnnotationLog
from spal.active.constraints import ConstraintGraph
from spal.active.kinds import KINDS, STRATEGY_KINDS
from spal.annotation.server import serve
from spal.annotation.session import human_select
from spal.annotation.store import StationFiles, write_private_text
from spal.datasets.base import Record

__all__ = ["HumanSelect", "make_human_select"]

logger = logging.getLogger(__name__)


class HumanSelect:
    """``--oracle human`` for the training loop: :func:`human_select` bound to a run, with the page served.

    The first call starts the server in this process (unless ``serve_page`` is false) and logs its URL with
    the address (the link with the access token goes to :attr:`StationFiles.link`, mode 0600); people may also
    run ``spal annotate --logs-dir DIR`` on the same logs dir.

    Args:
        logs_dir: the run's logs dir.
        timeout: seconds to wait for answers each epoch (``None``: until the queue is settled).
        serve_page: start the annotation server in this process.
        host, port: where that server listens (``port=0``: a free port).
        kinds: the candidate kinds to ask (see :func:`human_select`).
    """

    def __init__(
        self,
        logs_dir: str | os.PathLike[str],
        timeout: float | None = None,
        serve_page: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        kinds: Sequence[str] = KINDS,
    ) -> None:
        self.logs_dir = Path(logs_dir)
        self.timeout = timeout
        self.kinds = tuple(kinds)
        self.serve_page = serve_page
        self.host, self.port = host, port
        self.url: str | None = None
        self._stop: Callable[[], None] | None = None

    def __call__(
        self,
        *,
        epoch: int,
        labels: np.ndarray,
        features: Any,
        constraints: ConstraintGraph,
        budget: Any,
        log: AnnotationLog,
        records: Sequence[Record],
        neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[tuple[int, int, bool]]:
        """Run :func:`human_select` for one epoch (keyword arguments as there)."""
        if self.serve_page and self._stop is None:
            self.url, self._stop = serve(self.logs_dir, host=self.host, port=self.port)
            # The token goes to a file only this user reads; the log (and train.log, readable by others) gets
            # the address and where the link is.
            link = write_private_text(StationFiles.of(self.logs_dir).link, self.url + "\n")
            logger.info(
                "annotation page (answer the support pairs here): %s; open the link with its access token "
                "written in %s (readable by you only)",
                self.url.split("?")[0],
                link,
            )
        return human_select(
            epoch,
            labels,
            features,
            constraints,
            budget,
            log,
            records,
            self.logs_dir,
            timeout=self.timeout,
            kinds=self.kinds,
            neighbours=neighbours,
        )

    def close(self) -> None:
        """Stop the in-process server, if one runs."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def make_human_select(cfg: Any) -> HumanSelect:
    """The :class:`HumanSelect` of a training config (``logs_dir``, ``annotation_timeout``, ``selection``)."""
    # Random draws need no station: that ablation uses the ground-truth oracle.
    if cfg.selection not in STRATEGY_KINDS:
        raise ValueError(
            f"--oracle human supports --selection {', '.join(STRATEGY_KINDS)}, not "
            f"{cfg.selection!r}; use --oracle ground-truth for that strategy"
        )
    return HumanSelect(cfg.logs_dir, timeout=cfg.annotation_timeout, kinds=STRATEGY_KINDS[cfg.selection])
