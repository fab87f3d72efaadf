"""env.json: the contract keys, and an honest git commit and dirty flag (checked on throw-away repos)."""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import pytest

from harness.environment import ENV_KEYS, collect_environment, git_state, parse_nvidia_smi, tracked_files

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    _git(folder, "init", "-q")
    return folder


def test_environment_has_exactly_the_contract_keys() -> None:
    import torch

    env = collect_environment()
    assert list(env) == list(ENV_KEYS)
    assert env["torch"] == torch.__version__
    assert isinstance(env["gpu_count"], int) and env["gpu_count"] >= 0
    assert (env["gpu_name"] is None) == (env["gpu_count"] == 0)
    assert isinstance(env["cpu_count"], int) and env["cpu_count"] >= 1
    assert env["faiss"] and env["numpy"] and env["python"].count(".") == 2
    assert datetime.datetime.fromisoformat(env["date"]).tzinfo is not None
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])


def test_git_state_before_and_after_the_first_commit(repo: Path) -> None:
    assert git_state(repo) == (None, False)
    (repo / "a.txt").write_text("a")
    assert git_state(repo) == (None, True)  # untracked files count
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    sha, dirty = git_state(repo)
    assert sha == _git(repo, "rev-parse", "HEAD").strip() and len(sha) == 40
    assert dirty is False


def test_results_outputs_leave_the_tree_clean_but_code_changes_do_not(repo: Path) -> None:
    (repo / "spal").mkdir()
    (repo / "spal" / "a.py").write_text("x = 1\n")
    (repo / "results").mkdir()
    (repo / "results" / "REPORT.md").write_text("old\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    # What `make reproduce` writes: new run files and a regenerated (tracked) report.
    (repo / "results" / "runs").mkdir()
    (repo / "results" / "runs" / "final.json").write_text("{}")
    (repo / "results" / "REPORT.md").write_text("new\n")
    assert git_state(repo)[1] is False
    assert git_state(repo / "spal")[1] is False  # asked from a sub-folder: same answer
    assert collect_environment(repo)["git_dirty"] is False
    (repo / "spal" / "a.py").write_text("x = 2\n")
    assert git_state(repo)[1] is True
    assert git_state(repo / "results")[1] is True  # the exclusion is from the root, not from the folder asked
    _git(repo, "checkout", "-q", "--", "spal/a.py")
    (repo / "spal" / "b.py").write_text("y = 1\n")
    assert git_state(repo)[1] is True  # an untracked source file counts


def test_tracked_files_tell_committed_results_from_local_ones(repo: Path) -> None:
    runs = repo / "results" / "runs"
    (runs / "committed").mkdir(parents=True)
    (runs / "committed" / "final.json").write_text("{}")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "reference results")
    (runs / "local").mkdir()
    (runs / "local" / "final.json").write_text("{}")
    tracked = tracked_files(runs)
    assert tracked == {(runs / "committed" / "final.json").resolve()}
    assert tracked_files(repo / "missing") is None


def test_outside_a_repository_nothing_is_claimed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "plain"
    folder.mkdir()
    assert git_state(folder) == (None, None)
    assert tracked_files(folder) is None


def test_parse_nvidia_smi() -> None:
    text = "NVIDIA H100 80GB HBM3, 550.54.15\n\nNVIDIA H100 80GB HBM3, 550.54.15\n"
    assert parse_nvidia_smi(text) == [("NVIDIA H100 80GB HBM3", "550.54.15")] * 2
    assert parse_nvidia_smi("") == []
