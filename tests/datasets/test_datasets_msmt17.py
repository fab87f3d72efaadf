"""MSMT17_V1 loader: list-file parsing, 0-based cameras, layout and parse errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spal.datasets import DatasetError, create

LISTS = {
    "list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0001/0001_003_15_0113noon_0990_1.jpg 1"],
    "list_val.txt": ["0000/0000_001_02_0303afternoon_0020_0.jpg 0"],
    "list_query.txt": ["0000/0000_000_03_0302morning_0001_0.jpg 0"],
    "list_gallery.txt": [
        "0000/0000_001_04_0302morning_0002_0.jpg 0",
        "0002/0002_000_10_0302noon_0100_2.jpg 2",
    ],
}


def write_msmt(root: Path, lists: dict[str, list[str]] = LISTS) -> Path:
    """Write list files and image folders of an MSMT17_V1 tree under the data-dir ``root`` (no images)."""
    base = root / "msmt17" / "MSMT17_V1"
    for folder in ("train", "test"):
        (base / folder).mkdir(parents=True)
    for name, lines in lists.items():
        (base / name).write_text("".join(line + "\n" for line in lines))
    return base


def test_loads_lists_with_train_and_val_combined(tmp_path: Path) -> None:
    base = write_msmt(tmp_path)
    data = create("msmt17", tmp_path)
    train, test = base / "train", base / "test"
    assert data.train == [
        (str(train / "0000" / "0000_000_01_0303morning_0015_0.jpg"), 0, 0),
        (str(train / "0001" / "0001_003_15_0113noon_0990_1.jpg"), 1, 14),
        (str(train / "0000" / "0000_001_02_0303afternoon_0020_0.jpg"), 0, 1),
    ]
    assert data.query == [(str(test / "0000" / "0000_000_03_0302morning_0001_0.jpg"), 0, 2)]
    assert [(pid, cam) for _, pid, cam in data.gallery] == [(0, 3), (2, 9)]
    assert all(os.path.isabs(path) for path, _, _ in data.train + data.query + data.gallery)
    assert data.name == "msmt17"
    assert data.statistics("train") == (2, 3, 3)


def test_blank_lines_and_crlf_are_accepted(tmp_path: Path) -> None:
    base = write_msmt(tmp_path)
    (base / "list_query.txt").write_bytes(b"0000/0000_000_03_0302morning_0001_0.jpg 0\r\n\r\n")
    assert [(pid, cam) for _, pid, cam in create("msmt17", tmp_path).query] == [(0, 2)]


def test_missing_data_set_names_full_path_download_page_and_contents(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        create("msmt17", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "msmt17" / "MSMT17_V1") in message
    assert "https://www.pkuvmc.com/dataset.html" in message
    for name in ("train/", "test/", *LISTS):
        assert name in message


@pytest.mark.parametrize("list_name", sorted(LISTS))
def test_missing_list_file_names_it(tmp_path: Path, list_name: str) -> None:
    base = write_msmt(tmp_path)
    (base / list_name).unlink()
    with pytest.raises(DatasetError, match=f"list file not found: {base / list_name}"):
        create("msmt17", tmp_path)


@pytest.mark.parametrize("folder", ["train", "test"])
def test_missing_image_folder_names_it(tmp_path: Path, folder: str) -> None:
    base = write_msmt(tmp_path)
    (base / folder).rmdir()
    with pytest.raises(DatasetError, match=f"image folder not found: {base / folder}"):
        create("msmt17", tmp_path)


def test_empty_list_file_is_an_error(tmp_path: Path) -> None:
    base = write_msmt(tmp_path, {**LISTS, "list_val.txt": []})
    with pytest.raises(DatasetError, match=f"empty: {base / 'list_val.txt'}"):
        create("msmt17", tmp_path)


@pytest.mark.parametrize(
    "bad_line",
    [
        "0000/0000_000_01_0303morning_0015_0.jpg",  # no label
        "0000/0000_000_01_0303morning_0015_0.jpg zero",  # label not a number
        "0000/0000_000_01_0303morning_0015_0.jpg 0 extra",
        "0000/0000_000_1_0303morning_0015_0.jpg 0",  # one-digit camera
        "0000/0000_000_00_0303morning_0015_0.jpg 0",  # camera 00
        "0000_000_01_0303morning_0015_0.jpg 0",  # no pid folder
        "0000/0000_000_01_0303morning_0015_0.png 0",
        "0001/0000_000_01_0303morning_0015_0.jpg 1",  # folder and file name disagree
        "0000/0000_000_01_0303morning_0015_0.jpg 5",  # label and folder disagree
    ],
)
def test_malformed_line_names_file_and_line_number(tmp_path: Path, bad_line: str) -> None:
    base = write_msmt(tmp_path, {**LISTS, "list_gallery.txt": [*LISTS["list_gallery.txt"], bad_line]})
    with pytest.raises(DatasetError) as error:
        create("msmt17", tmp_path)
    assert f"{base / 'list_gallery.txt'}, line 3" in str(error.value)
