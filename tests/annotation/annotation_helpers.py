"""Helpers of the annotation station tests: tiny synthetic inputs (12 images of 3 identities, real JPEG
files), a background runner for the trainer side, and a ground-truth answerer that goes through the API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from spal.annotation.store import StationFiles

TOKEN = "test-token-0123456789"


@dataclass
class Toy:
    """A clustering with mistakes over 12 images: the identities, cluster labels, features and records."""

    pids: np.ndarray  # (12,) int64 ground truth
    labels: np.ndarray  # (12,) int64 clusters, -1 outlier
    features: torch.Tensor  # (12, 16) float32, L2-normalised
    records: list[tuple[str, int, int]]
    logs_dir: Path

    @property
    def n(self) -> int:
        return len(self.pids)

    @property
    def files(self) -> StationFiles:
        return StationFiles.of(self.logs_dir)


def make_toy(root: Path) -> Toy:
    pids = np.repeat(np.arange(3), 4)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16))
    features = torch.from_numpy((centers[pids] + 0.4 * rng.normal(size=(12, 16))).astype(np.float32))
    features = torch.nn.functional.normalize(features, dim=1)
    # Image 4 (identity 1) is wrongly clustered with identity 0; image 11 is an outlier.
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, -1], dtype=np.int64)
    image_dir = root / "images"
    image_dir.mkdir()
    records = []
    outfits = [((200, 40, 40), (40, 40, 90)), ((40, 120, 200), (90, 80, 60)), ((230, 200, 60), (30, 30, 30))]
    for i, pid in enumerate(pids):
        path = image_dir / f"{pid:04d}_c{i % 3 + 1}s1_{i:06d}_00.jpg"
        _draw_person(outfits[pid], rng).save(path, format="JPEG")
        records.append((str(path), int(pid), i % 3))
    logs_dir = root / "logs"
    logs_dir.mkdir()
    return Toy(pids, labels, features, records, logs_dir)


def _draw_person(outfit: tuple[tuple[int, int, int], tuple[int, int, int]], rng: np.random.Generator) -> Image.Image:
    """A 64 x 128 stick person in the identity's shirt and trousers on a random background."""
    background = tuple(int(c) for c in rng.integers(120, 220, size=3))
    image = Image.new("RGB", (64, 128), background)
    draw = ImageDraw.Draw(image)
    dx = int(rng.integers(-4, 5))
    draw.ellipse((24 + dx, 8, 40 + dx, 26), fill=(224, 180, 150))
    draw.rectangle((18 + dx, 28, 46 + dx, 70), fill=outfit[0])
    draw.rectangle((20 + dx, 70, 30 + dx, 118), fill=outfit[1])
    draw.rectangle((34 + dx, 70, 44 + dx, 118), fill=outfit[1])
    return image


def queue_pair(toy: Toy, pair_id: str) -> dict[str, Any]:
    """The queue entry of ``pair_id`` (the tests read a and b from the file to answer with ground truth)."""
    queue = json.loads(toy.files.queue.read_text())
    return next(p for p in queue["pairs"] if p["id"] == pair_id)


def events_bytes(toy: Toy) -> bytes:
    return toy.files.events.read_bytes() if toy.files.events.exists() else b""


class Background:
    """Run a callable in a thread, keeping its result or exception."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = fn(*args, **kwargs)
            except BaseException as error:  # handed to the test thread by join()
                self.error = error

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float = 30.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the background call did not finish in time"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def answer_one(client: TestClient, toy: Toy, annotator: str = "alice") -> str | None:
    """Answer the pair served to ``annotator`` with the ground truth: its id, or ``None`` (none served)."""
    nxt = client.get("/api/next", params={"annotator": annotator}).json()
    if nxt["done"]:
        return None
    pair = queue_pair(toy, nxt["pair_id"])
    same = bool(toy.pids[pair["a"]] == toy.pids[pair["b"]])
    response = client.post("/api/answer", json={"pair_id": nxt["pair_id"], "same": same, "annotator": annotator})
    assert response.status_code == 200, response.text
    return nxt["pair_id"]


def answer_with_truth(client: TestClient, toy: Toy, worker: Background, annotator: str = "alice") -> list[str]:
    """Answer the served pairs with the ground truth until ``worker`` (the trainer side) ends; their ids."""
    asked: list[str] = []
    while worker.alive():
        pair_id = answer_one(client, toy, annotator)
        if pair_id is None:
            time.sleep(0.01)
        else:
            asked.append(pair_id)
    return asked
