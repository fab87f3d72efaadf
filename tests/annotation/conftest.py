"""Fixtures of the annotation station tests (helpers live in annotation_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The station is an optional part (a bare GPU image has no fastapi): without it these tests skip, saying why.
pytest.importorskip("fastapi", reason="the annotation station needs fastapi and uvicorn (make setup installs them)")

from annotation_helpers import TOKEN, Toy, make_toy  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from spal.annotation import create_app  # noqa: E402


@pytest.fixture
def toy(tmp_path: Path) -> Toy:
    return make_toy(tmp_path)


@pytest.fixture
def client(toy: Toy) -> TestClient:
    """A client of the station of ``toy``'s logs dir that sends the access token in the header."""
    return TestClient(create_app(toy.logs_dir, TOKEN), headers={"X-SPAL-Token": TOKEN})
