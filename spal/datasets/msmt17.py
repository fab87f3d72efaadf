"""MSMT17 (Wei et al., CVPR 2018), version 1, as distributed: ``<root>/msmt17/MSMT17_V1/``.

Layout (SPEC section 4): image folders ``train/`` and ``test/`` and four list files. ``list_train.txt`` and
``list_val.txt`` name images under ``train/`` (together the training set), ``list_query.txt`` and
``list_gallery.txt`` images under ``test/``. A line is
``<pid>/<pid>_<index>_<camera>_<date><time>_<frame>_<n>.jpg <label>``; the label equals the pid folder and is
used as it is; the camera is the third underscore field of the file name (01..15), 0-based in the records.
Only the list files are read (the image folders must exist, the images themselves are not scanned).
"""

from __future__ import annotations

import os
import re

from spal.datasets.base import DatasetError, Record, ReIDDataset

__all__ = [
    "DOWNLOAD_URL",
    "FOLDERS",
    "LISTS",
    "NAME",
    "RELATIVE_DIR",
    "dataset_dir",
    "expected_tree",
    "load",
    "parse_line",
]

NAME = "msmt17"
#: Path of the data set folder relative to the data-dir.
RELATIVE_DIR = os.path.join("msmt17", "MSMT17_V1")
DOWNLOAD_URL = "https://www.pkuvmc.com/dataset.html"
#: image folders inside the data set folder.
FOLDERS: tuple[str, ...] = ("train", "test")
#: subset -> (list files, image folder they are relative to).
LISTS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("list_train.txt", "list_val.txt"), "train"),
    "query": (("list_query.txt",), "test"),
    "gallery": (("list_gallery.txt",), "test"),
}

_ENTRY_PATTERN = re.compile(r"(\d{4})/(\d{4})_(\d+)_(\d{2})_(\d{4}[a-z]+)_(\d+)_(\d+)\.jpg")


def dataset_dir(root: str | os.PathLike[str]) -> str:
    """The absolute path of the data set folder under the data-dir ``root``."""
    return os.path.join(os.path.abspath(root), RELATIVE_DIR)


def expected_tree(root: str | os.PathLike[str]) -> str:
    """A human-readable description of the folders and list files that must exist under ``root``."""
    base = dataset_dir(root)
    lines = [f"  {base}/"] + [f"    {folder}/   (<pid>/*.jpg)" for folder in FOLDERS]
    lines += [f"    {name}" for names, _ in LISTS.values() for name in names]
    return "\n".join(lines)


def parse_line(line: str, list_file: str, line_number: int) -> tuple[str, int, int]:
    """Parse one list-file line ``<pid>/<pid>_<index>_<camera>_<date><time>_<frame>_<n>.jpg <label>``.

    Args:
        line: the line, without or with its end-of-line characters.
        list_file: the list file's path (for error messages).
        line_number: 1-based line number (for error messages).

    Returns:
        ``(relative_path, pid, camid)``: the path as written, pid = the label, camid 0-based.

    Raises:
        DatasetError: naming the file and line, when the line does not have this form, the camera is 00, or
            the label differs from the pid folder.
    """
    where = f"{list_file}, line {line_number}"
    fields = line.split()
    match = _ENTRY_PATTERN.fullmatch(fields[0]) if len(fields) == 2 else None
    if match is None or not fields[1].isdigit():
        raise DatasetError(
            f"malformed MSMT17 list entry in {where}: {line.strip()!r}\n"
            "expected '<pid>/<pid>_<index>_<camera>_<date><time>_<frame>_<n>.jpg <label>', e.g. "
            "'0000/0000_000_01_0303morning_0015_0.jpg 0'; restore the list file from the MSMT17_V1 archive"
        )
    folder_pid, name_pid, camera, label = (
        int(match.group(1)),
        int(match.group(2)),
        int(match.group(4)),
        int(fields[1]),
    )
    if camera == 0:
        raise DatasetError(f"camera 00 in {where}: {line.strip()!r}; MSMT17 cameras are numbered from 01")
    if not label == folder_pid == name_pid:
        raise DatasetError(
            f"label {label} does not match the pid folder / file name in {where}: {line.strip()!r}; "
            "restore the list file from the MSMT17_V1 archive"
        )
    return fields[0], label, camera - 1


def _read_list(list_file: str, image_folder: str) -> list[Record]:
    """Records ``(absolute path, pid, camid)`` of one list file, in file order; blank lines are skipped."""
    if not os.path.isfile(list_file):
        raise DatasetError(
            f"MSMT17 list file not found: {list_file}\nrestore it from the MSMT17_V1 archive (download: {DOWNLOAD_URL})"
        )
    records = []
    with open(list_file, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                relative, pid, camid = parse_line(line, list_file, line_number)
                records.append((os.path.join(image_folder, relative), pid, camid))
    if not records:
        raise DatasetError(f"MSMT17 list file is empty: {list_file}; restore it from the MSMT17_V1 archive")
    return records


def load(root: str | os.PathLike[str]) -> ReIDDataset:
    """Load MSMT17_V1 from the data-dir ``root`` (the folder that holds ``msmt17/``).

    Raises:
        DatasetError: the data set folder, an image folder or a list file is missing, a list file is empty, or
            a list line does not parse.
    """
    base = dataset_dir(root)
    if not os.path.isdir(base):
        raise DatasetError(
            f"MSMT17 not found: expected the folder {base}\n"
            f"request MSMT17_V1 at {DOWNLOAD_URL} and extract it so that this tree exists:\n"
            f"{expected_tree(root)}\n"
            "(pass the folder that holds msmt17/ as the data dir)"
        )
    for folder in FOLDERS:
        path = os.path.join(base, folder)
        if not os.path.isdir(path):
            raise DatasetError(
                f"MSMT17 image folder not found: {path}\n"
                f"the data set folder must hold:\n{expected_tree(root)}\nre-extract the MSMT17_V1 archive"
            )
    subsets: dict[str, list[Record]] = {}
    for subset, (list_names, folder) in LISTS.items():
        image_folder = os.path.join(base, folder)
        subsets[subset] = [r for name in list_names for r in _read_list(os.path.join(base, name), image_folder)]
    return ReIDDataset(NAME, os.path.abspath(root), base, subsets["train"], subsets["query"], subsets["gallery"])
