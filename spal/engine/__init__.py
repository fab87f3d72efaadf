"""The training engine: the epoch loop (protocol), one epoch of steps (trainer), checkpoints."""

from spal.engine.config import TrainConfig

__all__ = ["TrainConfig"]
