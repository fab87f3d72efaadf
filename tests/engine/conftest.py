"""A tiny synthetic data set for the engine's end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from spal.datasets import synthetic


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("engine-data")
    synthetic.generate(out, "market1501", num_ids=12, num_cams=3, images_per_id=6, height=32, width=16, seed=5)
    return out
