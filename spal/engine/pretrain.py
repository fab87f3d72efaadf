"""An ImageNet stand-in for generated data: supervised identity pretraining of the backbone.

Real SPAL runs start from ImageNet weights; a run on the synthetic set that starts from random weights spends
its few steps learning to see at all, and its seed-to-seed spread hides everything the label phase does. So the
synthetic benchmark starts, like the real protocol, from a file given to ``--pretrained``: a backbone trained
with identity labels on a *separate* generated population (its own generator seed, hence its own identities,
clothes and cameras; never the benchmark's). Training is deterministic on one machine (fixed seeds,
deterministic kernels, no data-loading processes).

The file is cached under ``<data_dir>/pretrained/<arch>-<key>/`` where ``key`` hashes every input: the
:class:`PretrainConfig`, :data:`FORMAT_VERSION` and the source of the code that makes the file (this module, the
generator, the transforms and the models: :data:`RECIPE_SOURCES`), so that a change of the augmentation or of
the generator never reuses a file made by the old code. The same inputs reuse the file (after checking its
SHA-256 against the manifest), other inputs train a new one. The weight file is named
``<arch>-synthetic-<first 16 hex digits of its SHA-256>.pth`` and holds the backbone's state dict in
torchvision naming, exactly what ``--pretrained`` loads for an ImageNet file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from spal import datasets, models
from spal.data import TrainAugment, load_images
from spal.engine.checkpoint import atomic_write_text

__all__ = [
    "FORMAT_VERSION",
    "RECIPE_SOURCES",
    "PretrainConfig",
    "identity_records",
    "pretrain",
    "recipe_digest",
    "sha256_of",
]

log = logging.getLogger(__name__)

#: Bump when the meaning of a setting changes; source changes are caught by :data:`RECIPE_SOURCES` anyway.
FORMAT_VERSION = 1
_SPAL = Path(__file__).resolve().parents[1]
#: The code whose source is part of the cache key (paths inside the ``spal`` package).
RECIPE_SOURCES: tuple[str, ...] = (
    "engine/pretrain.py",
    "datasets/synthetic.py",
    "data/transforms.py",
    "models/registry.py",
    "models/reid.py",
    "models/resnet.py",
    "models/norm.py",
)


def recipe_digest() -> str:
    """SHA-256 over the source of :data:`RECIPE_SOURCES`, in order."""
    digest = hashlib.sha256()
    for name in RECIPE_SOURCES:
        digest.update(name.encode())
        digest.update((_SPAL / name).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the pretrained file.

    Attributes:
        arch: backbone name (``spal.models.names()``).
        layout, num_ids, num_cams, images_per_id, height, width, data_seed: the generated population
            (:func:`spal.datasets.synthetic.generate` arguments; ``data_seed`` must differ from the benchmark's).
        epochs, batch_size, lr, weight_decay: Adam on all images of the population, shuffled each epoch.
        temperature: of the cosine classifier over identities (logits ``cos / temperature``).
        seed: initialisation, shuffling and augmentation seed.
    """

    arch: str = "resnet18"
    layout: str = "market1501"
    num_ids: int = 400
    num_cams: int = 6
    images_per_id: int = 10
    height: int = 64
    width: int = 32
    data_seed: int = 1000
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    temperature: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in models.names():
            raise ValueError(f"pretrain arch {self.arch!r} is not one of {', '.join(models.names())}")
        for name in ("num_ids", "images_per_id", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"pretrain {name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.temperature <= 0 or self.weight_decay < 0:
            raise ValueError("pretrain lr and temperature must be positive and weight_decay non-negative")

    def key(self) -> str:
        """16 hex digits that change whenever any input of the file changes."""
        blob = json.dumps(
            {"format": FORMAT_VERSION, "recipe": recipe_digest(), **dataclasses.asdict(self)}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown pretrain settings: {', '.join(unknown)}")
        return cls(**values)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def identity_records(data: datasets.ReIDDataset) -> tuple[list[str], np.ndarray]:
    """Every image of a generated population with a real identity (train, query and gallery; Market-1501's
    distractors and junk left out), and ``(N,)`` int64 labels ``0..C-1`` in order of first appearance."""
    paths: list[str] = []
    pids: list[int] = []
    for split in (data.train, data.query, data.gallery):
        for path, pid, _ in split:
            if pid > 0:
                paths.append(path)
                pids.append(pid)
    _, labels = np.unique(np.array(pids), return_inverse=True)
    return paths, labels.astype(np.int64)


def _cached(folder: Path) -> Path | None:
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    entry = json.loads(manifest.read_text())
    weights = folder / entry["file"]
    if weights.is_file() and sha256_of(weights) == entry["sha256"]:
        return weights
    log.warning("the cached pretrained file in %s is missing or altered; training it again", folder)
    return None


def _population(cfg: PretrainConfig, data_dir: Path) -> datasets.ReIDDataset:
    from spal.datasets import synthetic

    root = data_dir / "pretrain-population" / f"{cfg.layout}-{cfg.key()}"
    spec = {
        "num_ids": cfg.num_ids,
        "num_cams": cfg.num_cams,
        "images_per_id": cfg.images_per_id,
        "height": cfg.height,
        "width": cfg.width,
        "seed": cfg.data_seed,
    }
    try:
        synthetic.generate(root, layout=cfg.layout, **spec)
    except FileExistsError:
        pass  # generated by an earlier call with the same key: the generator is a pure function of its inputs
    return datasets.create(cfg.layout, root)


def _train(cfg: PretrainConfig, images: torch.Tensor, labels: np.ndarray) -> torch.nn.Module:
    """Cosine-softmax identity classification; returns the trained backbone trunk."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = models.create(cfg.arch)
    num_classes = int(labels.max()) + 1
    classifier = torch.nn.Parameter(torch.randn(num_classes, model.feature_dim) * 0.01)
    optimizer = torch.optim.Adam([*model.parameters(), classifier], lr=cfg.lr, weight_decay=cfg.weight_decay)
    augment = TrainAugment(cfg.height, cfg.width, pad=max(1, round(10 * cfg.width / 128)))
    targets = torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(targets), generator=generator)
        batches = order.split(cfg.batch_size)
        total, correct, seen = 0.0, 0, 0
        for index in tqdm(batches, desc=f"pretrain {epoch + 1}/{cfg.epochs}", unit="batch", leave=False):
            if len(index) < 2:
                continue  # BatchNorm needs two images
            features = model(augment(images[index], generator))
            logits = features @ F.normalize(classifier, dim=1).T / cfg.temperature
            loss = F.cross_entropy(logits, targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == targets[index]).sum())
            seen += len(index)
        log.info(
            "pretrain epoch %d/%d: loss %.3f, training accuracy %.1f %%",
            epoch + 1,
            cfg.epochs,
            total / max(seen, 1),
            100.0 * correct / max(seen, 1),
        )
    return model.backbone


def pretrain(cfg: PretrainConfig, data_dir: str | os.PathLike[str], workers: int = 0) -> Path:
    """Return the pretrained backbone file for ``cfg``, training it (and generating its population) if it is
    not cached under ``data_dir`` yet.

    Returns:
        The weight file's path, ``<data_dir>/pretrained/<arch>-<key>/<arch>-synthetic-<sha16>.pth``; its
        ``manifest.json`` beside it records the inputs, the full SHA-256, torch's version and the images used.
    """
    folder = Path(data_dir).resolve() / "pretrained" / f"{cfg.arch}-{cfg.key()}"
    found = _cached(folder)
    if found is not None:
        log.info("using the cached pretrained backbone %s", found)
        return found
    data = _population(cfg, Path(data_dir).resolve())
    paths, labels = identity_records(data)
    log.info(
        "pretraining %s on %d images of %d generated identities (generator seed %d), %d epochs",
        cfg.arch,
        len(paths),
        int(labels.max()) + 1,
        cfg.data_seed,
        cfg.epochs,
    )
    images = load_images(paths, cfg.height, cfg.width, workers=workers, desc="decode pretrain population")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        trunk = _train(cfg, images, labels)
    finally:
        torch.use_deterministic_algorithms(previous)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".weights-{os.getpid()}.tmp"
    torch.save(trunk.state_dict(), staging)
    digest = sha256_of(staging)
    weights = folder / f"{cfg.arch}-synthetic-{digest[:16]}.pth"
    os.replace(staging, weights)
    manifest = {
        "file": weights.name,
        "sha256": digest,
        "config": dataclasses.asdict(cfg),
        "format_version": FORMAT_VERSION,
        "recipe_sha256": recipe_digest(),
        "num_images": len(paths),
        "num_identities": int(labels.max()) + 1,
        "torch": torch.__version__,
    }
    # Written last: a manifest names only a complete file.
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("wrote the pretrained backbone %s (sha256 %s)", weights, digest)
    return weights
