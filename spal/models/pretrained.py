"""Load a local ImageNet checkpoint into a backbone trunk; nothing is ever downloaded."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_pretrained", "clean_state_dict"]

log = logging.getLogger(__name__)

_NESTED_KEYS = ("state_dict", "model")


def clean_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Extract a plain backbone state dict from a loaded checkpoint object.

    Accepts a state dict, or a dict holding one under ``"state_dict"`` (or ``"model"``). Strips any number of
    leading ``"module."`` prefixes (DataParallel / DDP saves), drops the ImageNet classifier (``fc.*``) and
    any non-tensor entry.
    """
    state: Mapping[str, object] = checkpoint
    for key in _NESTED_KEYS:
        nested = state.get(key)
        if isinstance(nested, Mapping):
            state = nested
            break
    cleaned: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        while name.startswith("module."):
            name = name[len("module.") :]
        if name.startswith("fc."):
            continue
        cleaned[name] = value
    return cleaned


def _summary(names: list[str], shown: int = 5) -> str:
    if not names:
        return "none"
    more = f" ... (+{len(names) - shown})" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def load_pretrained(trunk: nn.Module, path: str | Path, download_hint: str) -> None:
    """Copy the weights of the checkpoint at ``path`` into ``trunk`` (in place).

    Args:
        trunk: the backbone whose parameter names match the checkpoint's (torchvision / IBN-Net naming).
        path: a ``.pth`` or ``.pth.tar`` file holding a state dict, possibly nested and ``module.``-prefixed.
        download_hint: what the user should fetch, for the error message when ``path`` is missing.

    Raises:
        FileNotFoundError: ``path`` is not a file (the message says which file to put where).
        ValueError: the file is unreadable, holds no tensor of ``trunk``, or a tensor's shape disagrees.

    Missing and unexpected tensor names are reported in one log line; the BatchNorm step counters
    (``num_batches_tracked``) that older checkpoints lack are not counted as missing.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found at {path}: {download_hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"cannot read pretrained weights {path} ({err.__class__.__name__}: {str(err).splitlines()[0]}); "
            "it must be a torch.save'd state dict: re-download it, or re-save only its tensors with "
            "torch.save(state_dict, PATH)"
        ) from err
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    state = clean_state_dict(checkpoint)
    own = trunk.state_dict()
    matched = [name for name in state if name in own]
    if not matched:
        raise ValueError(
            f"none of the {len(state)} tensors in {path} matches the backbone "
            f"(e.g. {_summary(sorted(own), 3)}); is it the right architecture? {download_hint}"
        )
    wrong_shape = [
        f"{name} {tuple(state[name].shape)} vs {tuple(own[name].shape)}"
        for name in matched
        if state[name].shape != own[name].shape
    ]
    if wrong_shape:
        raise ValueError(f"{path} does not fit the backbone, shapes differ: {_summary(wrong_shape)}")
    result = trunk.load_state_dict(state, strict=False)
    missing = [name for name in result.missing_keys if not name.endswith("num_batches_tracked")]
    log.info(
        "loaded %d tensors from %s; missing %d: %s; unexpected %d: %s",
        len(matched),
        path,
        len(missing),
        _summary(missing),
        len(result.unexpected_keys),
        _summary(result.unexpected_keys),
    )
