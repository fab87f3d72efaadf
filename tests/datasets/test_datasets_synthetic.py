"""The synthetic generator: real layouts, requested sizes, determinism, junk / distractors, query matches,
atomic writing, and an appearance model where one identity across cameras is harder than within a camera."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spal.datasets import ReIDDataset, create, market1501, synthetic

TINY = {"num_ids": 8, "num_cams": 3, "images_per_id": 6, "height": 32, "width": 16, "seed": 0}
NUM_TRAIN_IDS = NUM_TEST_IDS = 4
LAYOUT_DIRS = {"market1501": ("market1501", "Market-1501-v15.09.15"), "msmt17": ("msmt17", "MSMT17_V1")}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each layout generated twice with TINY, in two unrelated folders, the second by two worker processes:
    ``{layout: (root_a, root_b)}``."""
    out = {}
    for layout in LAYOUT_DIRS:
        first = synthetic.generate(tmp_path_factory.mktemp("a") / "data", layout, **TINY)
        second = synthetic.generate(tmp_path_factory.mktemp("elsewhere") / "x" / "y", layout, **TINY, workers=2)
        out[layout] = (first, second)
    return out


def dataset_folder(root: Path, layout: str) -> Path:
    return root.joinpath(*LAYOUT_DIRS[layout])


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", list(LAYOUT_DIRS))
def test_counts_match_the_request(trees: dict, layout: str) -> None:
    root = trees[layout][0]
    data = create(layout, root)
    assert root == root.absolute() and data.root == str(root)
    assert data.statistics("train") == (NUM_TRAIN_IDS, NUM_TRAIN_IDS * TINY["images_per_id"], TINY["num_cams"])
    assert sorted({pid for _, pid, _ in data.train}) == list(range(NUM_TRAIN_IDS))
    all_cams = {camid for _, _, camid in data.train + data.query + data.gallery}
    assert all_cams <= set(range(TINY["num_cams"]))
    test_images = [r for r in data.query + data.gallery if r[1] != 0 or layout == "msmt17"]
    assert len(test_images) == NUM_TEST_IDS * TINY["images_per_id"]
    assert len({pid for _, pid, _ in test_images}) == NUM_TEST_IDS
    assert set(data.pids("query").tolist()) <= set(data.pids("gallery").tolist())
    assert all(
        Counter(pid for _, pid, _ in test_images).get(pid) == TINY["images_per_id"] for pid in data.pids("query")
    )


def test_market_train_and_test_identities_are_disjoint(trees: dict) -> None:
    data = create("market1501", trees["market1501"][0])
    raw_train = {market1501.parse_name(path)[0] for path, _, _ in data.train}
    assert raw_train.isdisjoint(set(data.pids("query").tolist()) | set(data.pids("gallery").tolist()))
    assert 0 not in raw_train and 0 not in data.pids("query")


@pytest.mark.parametrize("layout", list(LAYOUT_DIRS))
def test_same_arguments_give_byte_identical_files_wherever_written(trees: dict, layout: str, tmp_path: Path) -> None:
    first, second = (file_bytes(dataset_folder(root, layout)) for root in trees[layout])
    assert len(first) > 2 * TINY["num_ids"]
    assert first == second
    other_seed = file_bytes(dataset_folder(synthetic.generate(tmp_path, layout, **{**TINY, "seed": 1}), layout))
    assert other_seed != first


def test_market_gallery_holds_junk_and_distractors_only_there(trees: dict) -> None:
    folder = dataset_folder(trees["market1501"][0], "market1501")
    names = {sub: os.listdir(folder / sub) for sub in ("bounding_box_train", "query", "bounding_box_test")}
    junk = [n for n in names["bounding_box_test"] if n.startswith("-1_")]
    distractors = [n for n in names["bounding_box_test"] if n.startswith("0000_")]
    assert junk and distractors
    assert not any(n.startswith(("-1_", "0000_")) for n in names["bounding_box_train"] + names["query"])
    data = create("market1501", trees["market1501"][0])
    assert len(data.gallery) == len(names["bounding_box_test"]) - len(junk)
    assert int((data.pids("gallery") == 0).sum()) == len(distractors)
    assert -1 not in data.pids("gallery")


def test_msmt_lists_are_non_empty_cover_every_image_once_and_split_train_ids(trees: dict) -> None:
    folder = dataset_folder(trees["msmt17"][0], "msmt17")
    lists = {
        name: (folder / name).read_text().splitlines()
        for name in ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
    }
    assert all(lists.values())
    listed = Counter(
        f"{'train' if name in ('list_train.txt', 'list_val.txt') else 'test'}/{line.split()[0]}"
        for name, lines in lists.items()
        for line in lines
    )
    on_disk = Counter(str(p.relative_to(folder)) for p in folder.rglob("*.jpg"))
    assert listed == on_disk and set(listed.values()) == {1}
    train_ids = {line.split()[1] for line in lists["list_train.txt"]}
    val_ids = {line.split()[1] for line in lists["list_val.txt"]}
    assert train_ids and val_ids and train_ids.isdisjoint(val_ids)


@pytest.mark.parametrize("layout", list(LAYOUT_DIRS))
def test_every_query_has_a_same_identity_gallery_image_from_another_camera(trees: dict, layout: str) -> None:
    data = create(layout, trees[layout][0])
    assert data.query
    gallery = set(zip(data.pids("gallery").tolist(), data.camids("gallery").tolist()))
    for _, pid, cam in data.query:
        assert any(g_pid == pid and g_cam != cam for g_pid, g_cam in gallery)


def test_images_are_plain_jpegs_of_the_requested_size(trees: dict) -> None:
    data = create("market1501", trees["market1501"][0])
    for path, _, _ in data.train[:3] + data.gallery[-3:]:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (TINY["width"], TINY["height"]))
            assert not {"exif", "comment", "icc_profile", "xmp"} & set(image.info)


def pixel_features(data: ReIDDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every image of a real identity as a centred, L2-normalised 8 x 4 RGB vector, its pid and its camera."""
    # Train and test pids are separate label sets (Market-1501 relabels train, MSMT17 starts both at 0): shift
    # the test pids past the train ones. Market-1501 distractors (pid 0) belong to no identity: left out.
    offset = data.statistics("train")[0]
    records = data.train + [
        (path, pid + offset, cam)
        for path, pid, cam in data.query + data.gallery
        if not (data.name == "market1501" and pid == 0)
    ]
    x = np.stack([np.asarray(Image.open(p).resize((4, 8), Image.Resampling.BOX), float).ravel() for p, _, _ in records])
    x -= x.mean(axis=1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.array([pid for _, pid, _ in records]), np.array([cam for _, _, cam in records])


@pytest.mark.parametrize("layout", list(LAYOUT_DIRS))
def test_same_camera_pairs_are_easier_than_cross_camera_pairs_and_both_than_other_identities(
    trees: dict, layout: str
) -> None:
    x, pids, cams = pixel_features(create(layout, trees[layout][0]))
    i, j = np.triu_indices(len(x), 1)
    similarity = np.einsum("kd,kd->k", x[i], x[j])
    same_id, same_cam = pids[i] == pids[j], cams[i] == cams[j]
    within_camera = similarity[same_id & same_cam].mean()
    across_cameras = similarity[same_id & ~same_cam].mean()
    other_ids = similarity[~same_id].mean()
    assert within_camera > across_cameras + 0.1
    assert across_cameras > other_ids + 0.1
    # Not trivially separable: some identity's cross-camera pair is less alike than some other-identity pair.
    assert similarity[same_id & ~same_cam].min() < similarity[~same_id].max()


def test_generate_takes_the_command_line_positional_order_and_layout_camera_default(tmp_path: Path) -> None:
    root = synthetic.generate(tmp_path, "msmt17", 12, None, 2, 16, 8, 0)
    data = create("msmt17", root)
    assert data.statistics("train")[1:] == (6 * 2, synthetic.DEFAULTS["msmt17"]["num_cams"]) == (12, 6)


def test_existing_tree_is_never_overwritten(trees: dict) -> None:
    with pytest.raises(FileExistsError, match="already exists"):
        synthetic.generate(trees["market1501"][0], "market1501", **TINY)


def test_interrupted_generation_leaves_no_tree_and_ensure_then_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = synthetic._write_jpeg
    written = []

    def failing_write(path: Path, pixels: np.ndarray) -> None:
        if len(written) == 5:
            raise KeyboardInterrupt
        written.append(path)
        real_write(path, pixels)

    monkeypatch.setattr(synthetic, "_write_jpeg", failing_write)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(tmp_path, "market1501", **TINY)
    assert os.listdir(tmp_path / "market1501") == []  # no tree, no leftover staging folder

    monkeypatch.setattr(synthetic, "_write_jpeg", real_write)
    monkeypatch.setitem(synthetic.DEFAULTS, "market1501", TINY)
    assert synthetic.ensure(tmp_path) == tmp_path
    before = file_bytes(dataset_folder(tmp_path, "market1501"))
    assert create("market1501", tmp_path).statistics("train")[0] == NUM_TRAIN_IDS

    def must_not_generate(*args: object, **kwargs: object) -> Path:
        raise AssertionError("ensure() regenerated an existing tree")

    monkeypatch.setattr(synthetic, "generate", must_not_generate)
    assert synthetic.ensure(tmp_path, "market1501") == tmp_path
    assert file_bytes(dataset_folder(tmp_path, "market1501")) == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layout": "duke"}, "valid layouts: market1501, msmt17"),
        ({"num_cams": 10}, "num_cams must be in 2..9"),
        ({"num_cams": 1}, "num_cams must be in 2..9"),
        ({"num_ids": 3}, "num_ids must be in 4..9999"),
        ({"images_per_id": 1}, "images_per_id must be at least 2"),
        ({"height": 8}, "at least 16 x 8"),
    ],
)
def test_invalid_arguments_are_refused_before_writing(tmp_path: Path, changes: dict, message: str) -> None:
    arguments = {"layout": "market1501", **TINY, **changes}
    with pytest.raises(ValueError, match=message):
        synthetic.generate(tmp_path, **arguments)
    assert not tmp_path.joinpath("market1501").exists()


@pytest.mark.parametrize("layout", list(LAYOUT_DIRS))
def test_num_train_ids_moves_identities_from_train_to_test(tmp_path: Path, layout: str) -> None:
    root = synthetic.generate(tmp_path, layout, **{**TINY, "num_ids": 10}, num_train_ids=3)
    data = create(layout, root)
    assert data.statistics("train")[:2] == (3, 3 * TINY["images_per_id"])
    test_ids = {pid for _, pid, _ in data.query + data.gallery if pid > 0 or layout == "msmt17"}
    assert len(test_ids) == 7
    assert set(data.pids("query").tolist()) <= set(data.pids("gallery").tolist())


def test_num_train_ids_must_leave_two_identities_on_each_side(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_train_ids must leave at least 2 of the 8 identities on each side"):
        synthetic.generate(tmp_path, "market1501", **TINY, num_train_ids=7)
    assert not tmp_path.joinpath("market1501").exists()
