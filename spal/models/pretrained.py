"""ImageNet weights (SPEC 3.8): find the file, hash it, load it strictly into a backbone trunk.

Nothing is ever downloaded: the file comes from ``--pretrained PATH`` or from torch's hub cache, where
torchvision keeps the weights it downloads, and a run that finds neither stops before any work.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "PretrainedError",
    "PretrainedWeights",
    "PretrainedNotFoundError",
    "clean_state_dict",
    "file_sha256",
    "find_in_hub_cache",
    "hub_checkpoint_dir",
    "load_pretrained",
]

log = logging.getLogger(__name__)

_NESTED_KEYS = ("state_dict", "model")


class PretrainedError(ValueError):
    """A weight file that cannot be loaded (unreadable, or not the backbone's tensors); the message names it."""


class PretrainedNotFoundError(FileNotFoundError):
    """No weight file where one was asked for; the one-line message names the file, the folders, the source."""


@dataclass(frozen=True)
class PretrainedWeights:
    """A weight file a run loads, as its records name it: ``name`` (the file name) and ``sha256`` (hex)."""

    path: Path
    name: str
    sha256: str

    @classmethod
    def from_file(cls, path: str | Path) -> PretrainedWeights:
        path = Path(path).expanduser().resolve()
        return cls(path=path, name=path.name, sha256=file_sha256(path))


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hub_checkpoint_dir() -> Path:
    """Torch's hub cache for weight files: ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
    by default ``~/.cache/torch/hub/checkpoints``), where torchvision stores the weights it downloads."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_in_hub_cache(file_names: Sequence[str], what: str, source: str) -> Path:
    """The first of ``file_names`` present in :func:`hub_checkpoint_dir`.

    Raises:
        PretrainedNotFoundError: none is there; one line naming the files, the folder searched, ``source`` (where
            to download them) and the ``--pretrained`` choices.
    """
    folder = hub_checkpoint_dir()
    for name in file_names:
        if (folder / name).is_file():
            return folder / name
    raise PretrainedNotFoundError(
        f"no {what} weights: --pretrained PATH not given and {' or '.join(file_names)} not in {folder} (torch's hub "
        f"cache, $TORCH_HOME/hub/checkpoints); download it from {source} into that folder, or pass "
        "--pretrained PATH (make reproduce ... PRETRAINED=PATH), or --pretrained none for random weights on purpose"
    )


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
    """Copy the weights of the checkpoint at ``path`` into ``trunk`` (in place), strictly.

    Args:
        trunk: the backbone whose parameter names match the checkpoint's (torchvision / IBN-Net naming).
        path: a ``.pth`` or ``.pth.tar`` file holding a state dict, possibly nested and ``module.``-prefixed.
        download_hint: what the user should fetch, for the error message when ``path`` is missing.

    Only the ImageNet classifier (``fc.*``) may be left unused, and only the BatchNorm step counters
    (``num_batches_tracked``, which files saved before torch 0.4.1 lack and which no computation reads) may be
    missing; any other missing or unexpected tensor, or a shape mismatch, is an error naming the keys.

    Raises:
        FileNotFoundError: ``path`` is not a file (the message says which file to put where).
        PretrainedError: the file is unreadable, or its tensors do not match ``trunk`` exactly (the message names
            them).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found at {path}: {download_hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise PretrainedError(
            f"cannot read pretrained weights {path} ({err.__class__.__name__}: {str(err).splitlines()[0]}); "
            "it must be a torch.save'd state dict: re-download it, or re-save only its tensors with "
            "torch.save(state_dict, PATH)"
        ) from err
    if not isinstance(checkpoint, Mapping):
        raise PretrainedError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    state = clean_state_dict(checkpoint)
    own = trunk.state_dict()
    missing = sorted(name for name in own if name not in state and not name.endswith("num_batches_tracked"))
    unexpected = sorted(name for name in state if name not in own)
    wrong_shape = [
        f"{name} {tuple(state[name].shape)} vs {tuple(own[name].shape)}"
        for name in sorted(state)
        if name in own and state[name].shape != own[name].shape
    ]
    if missing or unexpected or wrong_shape:
        raise PretrainedError(
            f"{path} does not fit the backbone ({len(own)} tensors): missing {len(missing)}: {_summary(missing)}; "
            f"unexpected {len(unexpected)}: {_summary(unexpected)}; shapes differ {len(wrong_shape)}: "
            f"{_summary(wrong_shape)}. Is it the right architecture? {download_hint}"
        )
    trunk.load_state_dict(state, strict=False)  # strict above, up to the step counters
    log.info("loaded %d tensors from %s", len(state), path)
