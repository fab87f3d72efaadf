"""The command line: help, clear one-line errors on bad input, works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _spal(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spal", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_train_help_lists_the_architectures(tmp_path: Path) -> None:
    done = _spal("train", "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "{resnet18,resnet50,resnet50_ibn_a}" in done.stdout.replace(" ", "")
    for flag in ("--budget", "--eps", "--k1", "--k2", "--pretrained", "--resume", "--bn-groups", "--selection"):
        assert flag in done.stdout


def test_missing_real_data_set_is_one_clear_error(tmp_path: Path) -> None:
    done = _spal(
        "train", "-d", "market1501", "--data-dir", str(tmp_path), "--logs-dir", str(tmp_path / "l"), cwd=tmp_path
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert str(tmp_path / "market1501" / "Market-1501-v15.09.15") in done.stderr


def test_bad_flag_value_is_refused(tmp_path: Path) -> None:
    done = _spal("train", "--selection", "greedy", cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
    done = _spal("train", "--budget", "lots", "--epochs", "0", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "budget" in done.stderr


def test_missing_pretrained_file_names_it(tmp_path: Path) -> None:
    done = _spal(
        "train",
        "-d",
        "synthetic",
        "--data-dir",
        str(tmp_path / "d"),
        "--logs-dir",
        str(tmp_path / "l"),
        "--pretrained",
        str(tmp_path / "resnet50.pth"),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "resnet50.pth" in done.stderr


def test_resnet50_without_imagenet_weights_stops_before_any_work(tmp_path: Path) -> None:
    done = _spal(
        "train",
        "-d",
        "synthetic",
        "-a",
        "resnet50",
        "--data-dir",
        str(tmp_path / "d"),
        "--logs-dir",
        str(tmp_path / "l"),
        cwd=tmp_path,
        env={"TORCH_HOME": str(tmp_path / "th")},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "ERROR" in x]
    assert "resnet50-0676ba61.pth" in line and str(tmp_path / "th" / "hub" / "checkpoints") in line
    assert "download.pytorch.org" in line
    assert "decode train" not in done.stderr and not (tmp_path / "l" / "checkpoint.pth").exists()


def test_synth_writes_the_layout_and_refuses_to_overwrite(tmp_path: Path) -> None:
    args = (
        "synth",
        "--layout",
        "msmt17",
        "--out",
        str(tmp_path / "d"),
        "--num-ids",
        "8",
        "--images-per-id",
        "4",
        "--height",
        "32",
        "--width",
        "16",
    )
    assert _spal(*args, cwd=tmp_path).returncode == 0
    assert (tmp_path / "d" / "msmt17" / "MSMT17_V1" / "list_gallery.txt").is_file()
    again = _spal(*args, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


# Issue 14, case 7: the help a newcomer reads is complete and points only at files that ship.
REPO = Path(__file__).resolve().parent.parent


def _options(help_text: str) -> list[str]:
    """The help entries of the options: each starts on a line indented by two spaces with a dash."""
    entries, current = [], None
    for line in help_text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            current = [line]
            entries.append(current)
        elif current is not None and line.strip():
            current.append(line)
    return [" ".join(" ".join(e).split()) for e in entries]


def test_train_help_gives_every_default_and_cites_only_shipped_files(tmp_path: Path) -> None:
    done = _spal("train", "--help", cwd=tmp_path)
    assert done.returncode == 0
    without_default = [
        e for e in _options(done.stdout) if "default" not in e and not e.startswith(("-h", "--resume", "--config"))
    ]
    assert without_default == []
    assert "--eps EPS DBSCAN radius on the Jaccard distance (default: 0.6; with -d synthetic: 0.45)" in _options(
        done.stdout
    )
    assert "SPEC" not in done.stdout and "docs/method.md" in done.stdout
    assert (REPO / "docs" / "method.md").is_file()
    readme = (REPO / "README.md").read_text()
    assert "SPEC.md" not in readme and "docs/method.md" in readme


def test_harness_help_lists_every_command_in_one_line(tmp_path: Path) -> None:
    from harness.__main__ import COMMANDS

    done = subprocess.run([sys.executable, "-m", "harness", "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.split("commands:", 1)[1].splitlines() if line.strip()]
    assert listed == list(COMMANDS) and len(COMMANDS) == 9
    for name, text in COMMANDS.items():
        assert f"{name}  " in done.stdout and text in done.stdout
