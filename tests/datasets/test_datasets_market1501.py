"""Market-1501 loader: name parsing, junk and distractors, relabelling, 0-based cameras, layout errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spal.datasets import DatasetError, create, market1501

TRAIN = [
    "0015_c6s3_000200_01.jpg",
    "0002_c1s1_000451_03.jpg",
    "0007_c2s1_000301_01.jpg",
    "0007_c3s2_000100_02.jpg",
]
QUERY = ["0001_c1s1_001051_00.jpg", "0003_c4s2_000050_00.jpg"]
GALLERY = [
    "0001_c2s1_000301_01.jpg",
    "0003_c5s1_000200_04.jpg",
    "0000_c1s1_000151_01.jpg",  # distractor: kept
    "-1_c1s1_000401_03.jpg",  # junk: dropped
    "-1_c3s1_000102_01.jpg",
]


def write_market(root: Path, train=TRAIN, query=QUERY, gallery=GALLERY, extra: dict | None = None) -> Path:
    """Write empty files with the given names in a Market-1501 tree under the data-dir ``root``."""
    base = root / "market1501" / "Market-1501-v15.09.15"
    subsets = {"bounding_box_train": train, "query": query, "bounding_box_test": gallery}
    for folder, names in subsets.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        for name in [*names, *(extra or {}).get(folder, [])]:
            (base / folder / name).write_bytes(b"")
    return base


def test_loads_records_with_relabelled_train_pids_and_zero_based_cameras(tmp_path: Path) -> None:
    base = write_market(tmp_path, extra={"query": ["Thumbs.db"], "bounding_box_test": ["Thumbs.db", "readme.txt"]})
    data = create("market1501", tmp_path)

    # Train: sorted by file name, pids 2, 7, 15 -> 0, 1, 2; c1 -> 0.
    assert data.train == [
        (str(base / "bounding_box_train" / "0002_c1s1_000451_03.jpg"), 0, 0),
        (str(base / "bounding_box_train" / "0007_c2s1_000301_01.jpg"), 1, 1),
        (str(base / "bounding_box_train" / "0007_c3s2_000100_02.jpg"), 1, 2),
        (str(base / "bounding_box_train" / "0015_c6s3_000200_01.jpg"), 2, 5),
    ]
    # Query and gallery keep their pids; junk (-1) dropped, distractors (0) kept, non-jpg files ignored.
    assert [(pid, cam) for _, pid, cam in data.query] == [(1, 0), (3, 3)]
    assert sorted((pid, cam) for _, pid, cam in data.gallery) == [(0, 0), (1, 1), (3, 4)]
    assert all(os.path.isabs(path) and os.path.isfile(path) for path, _, _ in data.train + data.query + data.gallery)
    assert data.name == "market1501"
    assert data.dataset_dir == str(base)


def test_statistics_and_summary(tmp_path: Path) -> None:
    write_market(tmp_path)
    data = create("market1501", tmp_path)
    assert [data.statistics(subset) for subset in ("train", "query", "gallery")] == [(3, 4, 4), (2, 2, 2), (3, 3, 3)]
    assert [(pid, camid) for _, pid, camid in data.train] == [(0, 0), (1, 1), (1, 2), (2, 5)]
    lines = data.summary().splitlines()
    assert lines[1].split() == ["subset", "#", "ids", "#", "images", "#", "cameras"]
    assert [line.split() for line in lines[3:]] == [
        ["train", "3", "4", "4"],
        ["query", "2", "2", "2"],
        ["gallery", "3", "3", "3"],
    ]


def test_missing_data_set_names_full_path_download_page_and_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        create("market1501", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "market1501" / "Market-1501-v15.09.15") in message
    assert "https://zheng-lab-anu.github.io/Project/project_reid.html" in message
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        assert folder in message


@pytest.mark.parametrize("folder", ["bounding_box_train", "query", "bounding_box_test"])
def test_missing_image_folder_names_its_path(tmp_path: Path, folder: str) -> None:
    base = write_market(tmp_path)
    for name in os.listdir(base / folder):
        (base / folder / name).unlink()
    (base / folder).rmdir()
    with pytest.raises(DatasetError, match=str(base / folder)):
        create("market1501", tmp_path)


def test_image_folder_without_images_is_an_error(tmp_path: Path) -> None:
    base = write_market(tmp_path, query=["Thumbs.db"])
    with pytest.raises(DatasetError, match=f"no .jpg images: {base / 'query'}"):
        create("market1501", tmp_path)


@pytest.mark.parametrize(
    "bad_name",
    [
        "0002_c0s1_000451_03.jpg",
        "2_c1s1_000451_03.jpg",
        "0002_c1s1_451_03.jpg",
        "-2_c1s1_000451_03.jpg",
        "0002_c1s1_000451.jpg",
        "0002-c1s1-000451-03.jpg",
        "copy of 0002_c1s1_000451_03.jpg",
    ],
)
def test_malformed_jpg_name_names_the_file(tmp_path: Path, bad_name: str) -> None:
    base = write_market(tmp_path, gallery=GALLERY + [bad_name])
    with pytest.raises(DatasetError) as error:
        create("market1501", tmp_path)
    assert str(base / "bounding_box_test" / bad_name) in str(error.value)


@given(
    pid=st.integers(0, 9999),
    camera=st.integers(1, 9),
    sequence=st.integers(0, 9),
    frame=st.integers(0, 999999),
    box=st.integers(0, 99),
)
def test_parse_name_round_trips(pid: int, camera: int, sequence: int, frame: int, box: int) -> None:
    name = f"/x/{pid:04d}_c{camera}s{sequence}_{frame:06d}_{box:02d}.jpg"
    assert market1501.parse_name(name) == (pid, camera - 1)
    junk = f"/x/-1_c{camera}s{sequence}_{frame:06d}_{box:02d}.jpg"
    assert market1501.parse_name(junk) == (-1, camera - 1)
