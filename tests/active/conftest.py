"""The selection tests make hundreds of tiny faiss searches: on a shared CPU, OpenMP's thread start-up and
spinning cost far more than the searches themselves, so they run single-threaded here."""

from __future__ import annotations

import faiss
import pytest


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_faiss():
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)
