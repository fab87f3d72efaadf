"""The training engine: the epoch loop (runner), one epoch of steps (trainer), checkpoints."""

from spal.engine.config import TrainConfig

__all__ = ["TrainConfig"]
