"""Market-1501 (Zheng et al., ICCV 2015) as distributed: ``<root>/market1501/Market-1501-v15.09.15/``.

Layout (SPEC section 4): ``bounding_box_train/`` (train), ``query/`` and ``bounding_box_test/`` (gallery),
image names ``PPPP_cCsS_FFFFFF_NN.jpg`` (pid, camera 1..6, sequence, frame, box). Junk images (pid ``-1``) are
dropped at loading, distractors (pid ``0000``) are kept. Train pids are relabelled to ``0 .. K-1`` in sorted
pid order; query and gallery keep their pids. Camera ids are 0-based in the records (``c1`` -> 0). Files
that are not ``.jpg`` (``Thumbs.db``) are ignored; a ``.jpg`` whose name does not parse is an error.
"""

from __future__ import annotations

import os
import re

from spal.datasets.base import DatasetError, Record, ReIDDataset

__all__ = [
    "DOWNLOAD_URL",
    "FOLDERS",
    "NAME",
    "RELATIVE_DIR",
    "dataset_dir",
    "expected_tree",
    "load",
    "parse_name",
]

NAME = "market1501"
#: Path of the data set folder relative to the data-dir.
RELATIVE_DIR = os.path.join("market1501", "Market-1501-v15.09.15")
DOWNLOAD_URL = "https://zheng-lab-anu.github.io/Project/project_reid.html"
#: subset -> image folder inside the data set folder.
FOLDERS: dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
JUNK_PID = -1

_NAME_PATTERN = re.compile(r"(-1|\d{4})_c([1-9])s(\d)_(\d{6})_(\d{2})\.jpg")


def dataset_dir(root: str | os.PathLike[str]) -> str:
    """The absolute path of the data set folder under the data-dir ``root``."""
    return os.path.join(os.path.abspath(root), RELATIVE_DIR)


def expected_tree(root: str | os.PathLike[str]) -> str:
    """A human-readable description of the folders that must exist under ``root``."""
    base = dataset_dir(root)
    return "\n".join([f"  {base}/"] + [f"    {folder}/   (*.jpg)" for folder in FOLDERS.values()])


def parse_name(path: str) -> tuple[int, int]:
    """Parse a Market-1501 image name.

    Args:
        path: the image path (only its base name is parsed; the full path goes into error messages).

    Returns:
        ``(pid, camid)``: pid as written (``-1`` junk, ``0`` distractor), camid 0-based.

    Raises:
        DatasetError: the name is not ``PPPP_cCsS_FFFFFF_NN.jpg`` (or ``-1_cCsS_FFFFFF_NN.jpg``).
    """
    match = _NAME_PATTERN.fullmatch(os.path.basename(path))
    if match is None:
        raise DatasetError(
            f"malformed Market-1501 image name: {path}\n"
            "expected PPPP_cCsS_FFFFFF_NN.jpg (4-digit pid or -1 for junk, camera 1-9, sequence, "
            "6-digit frame, 2-digit box), e.g. 0002_c1s1_000451_03.jpg; remove or rename the file, "
            "or re-extract the archive"
        )
    return int(match.group(1)), int(match.group(2)) - 1


def _read_folder(folder: str) -> list[Record]:
    """Records ``(path, pid, camid)`` of the ``.jpg`` files of ``folder``, sorted by name, junk dropped.

    Other files (``Thumbs.db`` and the like) are ignored; a malformed ``.jpg`` name is an error.
    """
    if not os.path.isdir(folder):
        raise DatasetError(
            f"Market-1501 image folder not found: {folder}\n"
            f"the data set folder must hold {', '.join(FOLDERS.values())}; re-extract the archive "
            f"(download: {DOWNLOAD_URL})"
        )
    names = sorted(name for name in os.listdir(folder) if name.endswith(".jpg"))
    if not names:
        raise DatasetError(f"Market-1501 image folder holds no .jpg images: {folder}; re-extract the archive")
    records = []
    for name in names:
        path = os.path.join(folder, name)
        pid, camid = parse_name(path)
        if pid != JUNK_PID:
            records.append((path, pid, camid))
    return records


def load(root: str | os.PathLike[str]) -> ReIDDataset:
    """Load Market-1501 from the data-dir ``root`` (the folder that holds ``market1501/``).

    Raises:
        DatasetError: the data set folder, an image folder or its images are missing, or an image name does
            not parse.
    """
    base = dataset_dir(root)
    if not os.path.isdir(base):
        raise DatasetError(
            f"Market-1501 not found: expected the folder {base}\n"
            f"download Market-1501-v15.09.15.zip from {DOWNLOAD_URL} and extract it so that this "
            "tree exists:\n"
            f"{expected_tree(root)}\n"
            "(pass the folder that holds market1501/ as the data dir)"
        )
    train = _read_folder(os.path.join(base, FOLDERS["train"]))
    query = _read_folder(os.path.join(base, FOLDERS["query"]))
    gallery = _read_folder(os.path.join(base, FOLDERS["gallery"]))
    relabel = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in train}))}
    train = [(path, relabel[pid], camid) for path, pid, camid in train]
    return ReIDDataset(NAME, os.path.abspath(root), base, train, query, gallery)
