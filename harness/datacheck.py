"""Is the data set where the protocol expects it? Checked first, before torch is even imported.

The layouts come from :mod:`spal.datasets` (which needs numpy, not torch), so ``make reproduce`` without data
exits within a second with the tree to create instead of a traceback from deep inside training.
"""

from __future__ import annotations

from pathlib import Path

from spal.datasets import market1501, msmt17

__all__ = ["EXPECTED_TREES", "missing_paths", "expected_tree_message"]

# What a newcomer sees after "unpack it so that ... holds:": the layout with sizes and example names.
_EXAMPLE_TREES = {
    market1501.NAME: [
        "market1501/",
        "  Market-1501-v15.09.15/",
        "    bounding_box_train/   12,936 images  0002_c1s1_000451_03.jpg ...",
        "    query/                 3,368 images",
        "    bounding_box_test/    19,732 images (incl. -1_* junk and 0000_* distractors)",
    ],
    msmt17.NAME: [
        "msmt17/",
        "  MSMT17_V1/",
        "    train/               0000/0000_000_01_0303morning_0015_0.jpg ...",
        "    test/                0000/... (query and gallery images)",
        "    list_train.txt       '<path> <label>' per line, paths relative to train/",
        "    list_val.txt",
        "    list_query.txt       paths relative to test/",
        "    list_gallery.txt",
    ],
}

#: data set -> its folder under the data dir (``root``), the image folders and list files in it, where to
#: download it and the tree to show.
EXPECTED_TREES: dict[str, dict[str, object]] = {
    market1501.NAME: {
        "root": Path(market1501.RELATIVE_DIR).as_posix(),
        "dirs": list(market1501.FOLDERS.values()),
        "files": [],
        "download": market1501.DOWNLOAD_URL,
        "tree": _EXAMPLE_TREES[market1501.NAME],
    },
    msmt17.NAME: {
        "root": Path(msmt17.RELATIVE_DIR).as_posix(),
        "dirs": list(msmt17.FOLDERS),
        "files": [name for names, _ in msmt17.LISTS.values() for name in names],
        "download": msmt17.DOWNLOAD_URL,
        "tree": _EXAMPLE_TREES[msmt17.NAME],
    },
}


def missing_paths(dataset: str, data_dir: str | Path) -> list[Path]:
    """The folders and list files of ``dataset``'s layout that are absent under ``data_dir``."""
    spec = EXPECTED_TREES[dataset]
    root = Path(data_dir) / str(spec["root"])
    if not root.is_dir():
        return [root]
    wanted = [root / d for d in spec["dirs"]] + [root / f for f in spec["files"]]  # type: ignore[union-attr]
    return [p for p in wanted if not p.exists()]


def expected_tree_message(dataset: str, data_dir: str | Path) -> str:
    """A message that names what is missing and shows the tree to create under ``data_dir``."""
    spec = EXPECTED_TREES[dataset]
    missing = missing_paths(dataset, data_dir)
    lines = [
        f"{dataset} is not where the protocol expects it: missing {', '.join(str(p) for p in missing)}",
        f"Download it from {spec['download']} and unpack it so that {Path(data_dir).resolve()} holds:",
        "",
        *(f"  {line}" for line in spec["tree"]),  # type: ignore[union-attr]
        "",
        "Then run again, with DATA_DIR=<that folder> (make) or --data-dir <that folder>.",
    ]
    return "\n".join(lines)
