"""The data set registry: names, unknown names, the expected-tree text, summary logging."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spal import datasets
from spal.datasets import ReIDDataset


def test_names_are_the_two_real_layouts() -> None:
    assert datasets.names() == ["market1501", "msmt17"]


def test_unknown_name_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid names: market1501, msmt17"):
        datasets.create("dukemtmc", tmp_path)
    with pytest.raises(ValueError, match="valid names"):
        datasets.expected_tree("synthetic", tmp_path)


def test_expected_tree_lists_folders_and_list_files(tmp_path: Path) -> None:
    market = datasets.expected_tree("market1501", tmp_path)
    assert str(tmp_path / "market1501" / "Market-1501-v15.09.15") in market
    assert all(f"{folder}/" in market for folder in ("bounding_box_train", "query", "bounding_box_test"))
    msmt = datasets.expected_tree("msmt17", tmp_path)
    assert str(tmp_path / "msmt17" / "MSMT17_V1") in msmt
    assert all(name in msmt for name in ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt"))


def test_log_summary_logs_the_table(caplog: pytest.LogCaptureFixture) -> None:
    data = ReIDDataset("toy", "/r", "/r/toy", [("/a", 0, 0), ("/b", 1, 1)], [("/c", 5, 0)], [("/d", 5, 1)])
    with caplog.at_level(logging.INFO, logger="spal.datasets"):
        data.log_summary()
    assert data.summary() in caplog.text
    with pytest.raises(ValueError, match="valid subsets: train, query, gallery"):
        data.subset("val")
