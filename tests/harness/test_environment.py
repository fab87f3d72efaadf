"""env.json: the contract keys, and an honest git commit and dirty flag (checked on throw-away repos)."""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import pytest

from harness.environment import ENV_KEYS, collect_environment, git_state, parse_nvidia_smi

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


def test_results_outputs_make_the_tree_dirty(repo: Path) -> None:
    (repo / "a.txt").write_text("a")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "results" / "runs").mkdir(parents=True)
    (repo / "results" / "runs" / "final.json").write_text("{}")
    assert git_state(repo)[1] is True
    assert collect_environment(repo)["git_dirty"] is True


def test_outside_a_repository_nothing_is_claimed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "plain"
    folder.mkdir()
    assert git_state(folder) == (None, None)


def test_parse_nvidia_smi() -> None:
    text = "NVIDIA H100 80GB HBM3, 550.54.15\n\nNVIDIA H100 80GB HBM3, 550.54.15\n"
    assert parse_nvidia_smi(text) == [("NVIDIA H100 80GB HBM3", "550.54.15")] * 2
    assert parse_nvidia_smi("") == []
