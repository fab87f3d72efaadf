"""The selection tests make hundreds of tiny faiss searches: on a shared CPU, OpenMP's thread start-up and
spinning cost far more than the searches themselves, so they run single-threaded here (without faiss, the
searches take the torch path and there is nothing to set)."""

from __future__ import annotations

import pytest

try:
    import faiss
except ImportError:
    faiss = None


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_faiss():
    if faiss is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)
