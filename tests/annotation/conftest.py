"""Fixtures of the annotation station tests (helpers live in annotation_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from annotation_helpers import TOKEN, Toy, make_toy
from fastapi.testclient import TestClient

from spal.annotation import create_app


@pytest.fixture
def toy(tmp_path: Path) -> Toy:
    return make_toy(tmp_path)


@pytest.fixture
def client(toy: Toy) -> TestClient:
    """A client of the station of ``toy``'s logs dir that sends the access token in the header."""
    return TestClient(create_app(toy.logs_dir, TOKEN), headers={"X-SPAL-Token": TOKEN})
