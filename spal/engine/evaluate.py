"""Evaluate a saved checkpoint on a data set's query and gallery (``spal evaluate``)."""

from __future__ import annotations

import logging
from typing import Any

from spal import models
from spal.distributed import init_distributed
from spal.engine.checkpoint import load_checkpoint
from spal.engine.config import TrainConfig, upgrade_saved_settings

__all__ = ["evaluate_checkpoint"]

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    path: str,
    dataset: str,
    data_dir: str,
    synthetic_layout: str | None = None,
    device: str = "auto",
    workers: int | None = None,
) -> dict[str, Any]:
    """Rebuild the model a checkpoint was trained with and return mAP / mINP / CMC in percent."""
    from spal.engine.runner import evaluate_on_test, load_dataset

    ckpt = load_checkpoint(path)
    saved = upgrade_saved_settings(ckpt.get("config", {}))
    saved.update(dataset=dataset, data_dir=data_dir, device=device)
    if synthetic_layout is not None:
        saved["synthetic_layout"] = synthetic_layout
    if workers is not None:
        saved["workers"] = workers
    cfg = TrainConfig.from_dict(saved)
    ctx = init_distributed(cfg.device)
    data = load_dataset(cfg)
    model = models.create(cfg.arch, pretrained=None, bn_groups=1).to(ctx.device)
    model.load_state_dict(ckpt["model"])
    log.info("evaluating %s (epoch %s) on %s", path, ckpt.get("epoch"), dataset)
    return evaluate_on_test(model, data, cfg, ctx)
