"""The synthetic ImageNet stand-in: deterministic, cached, invalidated when an input changes, loadable."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spal import models
from spal.engine.pretrain import PretrainConfig, pretrain, sha256_of, weights_digest

TINY = PretrainConfig(num_ids=8, num_cams=3, images_per_id=4, height=32, width=16, epochs=1, batch_size=8)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrain(TINY, tmp_path_factory.mktemp("a"))


def test_the_file_is_named_by_its_weights_sha256_and_described_by_its_manifest(made: Path) -> None:
    content = weights_digest(torch.load(made, weights_only=True))
    assert made.name == f"resnet18-synthetic-{content[:16]}.pth"
    manifest = json.loads((made.parent / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_of(made) and manifest["weights_sha256"] == content
    assert manifest["file"] == made.name
    assert manifest["config"]["data_seed"] == TINY.data_seed
    # Market-1501 layout: every identity with an image outside the junk and distractor sets is a class.
    assert 4 <= manifest["num_identities"] <= 8 and manifest["num_images"] > 0


def test_pretraining_is_deterministic_on_one_machine_across_processes(made: Path, tmp_path: Path) -> None:
    # Another process, as a later session or CI would run it: the same weights under the same name.
    code = (
        "import sys; from spal.engine.pretrain import PretrainConfig, pretrain; "
        f"print(pretrain(PretrainConfig(**{TINY.__dict__!r}), sys.argv[1]).name)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == made.name
    again = torch.load(next((tmp_path / "pretrained").glob("*/*.pth")), weights_only=True)
    mine = torch.load(made, weights_only=True)
    assert all(torch.equal(again[k], mine[k]) for k in mine)


def test_the_cache_is_reused_and_rebuilt_when_altered(made: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = made.parents[2]
    before = made.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="spal.engine.pretrain"):
        assert pretrain(TINY, data_dir) == made
    assert made.stat().st_mtime_ns == before
    assert "using the cached" in caplog.text
    made.write_bytes(b"not the weights")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spal.engine.pretrain"):
        rebuilt = pretrain(TINY, data_dir)
    assert "missing or altered" in caplog.text
    # Deterministic: the same bytes again, under the same name, and the manifest vouches for them.
    assert rebuilt == made
    assert sha256_of(rebuilt) == json.loads((rebuilt.parent / "manifest.json").read_text())["sha256"]


def test_another_input_gives_another_file(made: Path) -> None:
    other = PretrainConfig(**{**TINY.__dict__, "data_seed": TINY.data_seed + 1})
    assert other.key() != TINY.key()
    assert PretrainConfig(**{**TINY.__dict__, "epochs": 2}).key() != TINY.key()
    assert PretrainConfig(**TINY.__dict__).key() == TINY.key()


def test_the_file_loads_through_pretrained_and_changes_the_backbone(made: Path) -> None:
    torch.manual_seed(0)
    fresh = models.create("resnet18")
    loaded = models.create("resnet18", pretrained=made)
    saved = torch.load(made, weights_only=True)
    assert set(saved) == set(loaded.backbone.state_dict())
    assert torch.equal(loaded.backbone.conv1.weight, saved["conv1.weight"])
    assert not torch.equal(fresh.backbone.conv1.weight, saved["conv1.weight"])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="arch"):
        PretrainConfig(arch="vgg")
    with pytest.raises(ValueError, match="epochs"):
        PretrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown pretrain settings: colour"):
        PretrainConfig.from_dict({"colour": 1})


def test_a_change_of_the_recipe_code_gives_another_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from spal.engine import pretrain as module

    before = TINY.key()
    assert set(module.RECIPE_SOURCES) >= {"data/transforms.py", "datasets/synthetic.py", "engine/pretrain.py"}
    monkeypatch.setattr(module, "recipe_digest", lambda: "0" * 64)
    assert TINY.key() != before
