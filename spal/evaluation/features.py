"""Batched feature extraction and the end-to-end evaluation of a model on a query / gallery split."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from spal.datasets.base import Record
from spal.evaluation.ranking import evaluate

__all__ = ["evaluate_model", "extract_features"]


def extract_features(
    model: nn.Module,
    batches: Iterable[torch.Tensor | Sequence[object]],
    device: torch.device | str | None = None,
    desc: str = "extract",
    to_cpu: bool = True,
) -> torch.Tensor:
    """Run ``model`` over ``batches`` in eval mode and collect its L2-normalised outputs in order.

    Args:
        model: maps a ``(B, 3, H, W)`` float batch to ``(B, D)`` features; it must already sit on ``device``.
        batches: an iterable (e.g. a DataLoader without shuffling) of normalised image batches, either tensors
            ``(B, 3, H, W)`` or tuples / lists whose element 0 is that tensor (the rest is ignored).
        device: where the images are sent; ``None`` means the device of the model's first parameter or buffer
            (the CPU for a model without any).
        desc: label of the progress bar (shown on a terminal only).
        to_cpu: collect the features on the CPU; ``False`` keeps them on ``device`` (no device-to-host copy,
            hence no wait, after each batch).

    Returns:
        ``(N, D)`` float32 tensor on the CPU (or on ``device`` when ``to_cpu`` is False), one L2-normalised row
        per image, in the order the batches gave them.

    The model runs under ``torch.no_grad()`` in eval mode; its previous train/eval mode is restored
    afterwards, also when an error interrupts the extraction.
    """
    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    outputs: list[torch.Tensor] = []
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(images, torch.Tensor):
                    raise TypeError(
                        f"a batch must be an image tensor or a tuple whose element 0 is one, got "
                        f"{type(images).__name__}"
                    )
                features = model(images.to(device, non_blocking=True))
                if not isinstance(features, torch.Tensor) or features.dim() != 2:
                    raise ValueError(
                        "the model must return a (batch, dims) feature tensor in eval mode, got "
                        f"{type(features).__name__} {tuple(getattr(features, 'shape', ()))}"
                    )
                outputs.append(features.float().cpu() if to_cpu else features.float())
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError("batches yielded no images: check that the data set and its loader are not empty")
    return F.normalize(torch.cat(outputs), dim=1)


def evaluate_model(
    model: nn.Module,
    query_batches: Iterable[torch.Tensor | Sequence[object]],
    gallery_batches: Iterable[torch.Tensor | Sequence[object]],
    query_records: Sequence[Record],
    gallery_records: Sequence[Record],
    device: torch.device | str | None = None,
) -> dict[str, float | int]:
    """Extract query and gallery features with ``model`` and score them with ``evaluate`` (SPEC 3.6).

    Args:
        model, device: as in ``extract_features``; the ranking also runs on ``device``.
        query_batches, gallery_batches: batches of the query / gallery images, in the order of the records.
        query_records, gallery_records: ``(path, pid, camid)`` tuples, one per image.

    Returns:
        the dict of ``evaluate``: ``mAP``, ``mINP``, ``rank1``, ``rank5``, ``rank10`` (fractions) and
        ``num_valid_queries``.
    """
    device = _model_device(model) if device is None else torch.device(device)
    query = extract_features(model, query_batches, device, desc="query")
    gallery = extract_features(model, gallery_batches, device, desc="gallery")
    for name, features, records in (("query", query, query_records), ("gallery", gallery, gallery_records)):
        if features.shape[0] != len(records):
            raise ValueError(
                f"the {name} batches gave {features.shape[0]} images but there are {len(records)} {name} "
                "records: the loader must keep every image in record order (no shuffle, no drop_last)"
            )
    return evaluate(
        query.to(device),
        gallery.to(device),
        [pid for _, pid, _ in query_records],
        [pid for _, pid, _ in gallery_records],
        [camid for _, _, camid in query_records],
        [camid for _, _, camid in gallery_records],
    )


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device
