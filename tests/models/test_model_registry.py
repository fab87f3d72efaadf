"""ReIDNet construction: shapes, normalisation, last stride, frozen head bias, IBN-a layout, local weights."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch

from spal import models
from spal.models.pretrained import PretrainedError, load_pretrained
from spal.models.resnet import resnet18_trunk
from spal.models.resnet_ibn import IBN

FEATURE_DIMS = {"resnet18": 512, "resnet50": 2048, "resnet50_ibn_a": 2048}
HINT = "fetch-these-weights"


@pytest.fixture(scope="module")
def built() -> dict[str, models.ReIDNet]:
    torch.manual_seed(0)
    return {arch: models.create(arch) for arch in models.names()}


def test_names_lists_the_three_archs() -> None:
    assert set(models.names()) == set(FEATURE_DIMS)


@pytest.mark.parametrize("arch", sorted(FEATURE_DIMS))
def test_output_is_normalised_in_train_and_eval(built: dict[str, models.ReIDNet], arch: str) -> None:
    model = built[arch]
    assert model.feature_dim == FEATURE_DIMS[arch]
    maps = []
    hook = model.backbone.register_forward_hook(lambda _module, _inputs, output: maps.append(output.shape))
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    hook.remove()
    # Last stride 1: overall stride 16, so 32 x 16 -> 2 x 1 (256 x 128 -> 16 x 8).
    assert maps[0] == (2, FEATURE_DIMS[arch], 2, 1)
    for out in (train_out, eval_out):
        assert out.shape == (2, FEATURE_DIMS[arch])
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    assert not torch.allclose(train_out, eval_out, atol=1e-3)


def test_last_stride_two_halves_the_map(built: dict[str, models.ReIDNet]) -> None:
    model = models.create("resnet18", last_stride=2).eval()
    with torch.no_grad():
        assert model.backbone(torch.randn(1, 3, 64, 32)).shape == (1, 512, 2, 1)
        assert built["resnet18"].eval().backbone(torch.randn(1, 3, 64, 32)).shape == (1, 512, 4, 2)
    with pytest.raises(ValueError, match="last_stride"):
        models.create("resnet18", last_stride=3)


def test_head_bias_frozen_and_stays_zero() -> None:
    model = models.create("resnet18", bn_groups=2)
    head = model.feat_bn
    assert not head.bias.requires_grad and head.weight.requires_grad
    assert torch.equal(head.weight.detach(), torch.ones(512)) and torch.equal(head.bias, torch.zeros(512))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    model.train()
    model(torch.randn(4, 3, 32, 16)).sum().backward()
    optimizer.step()
    assert head.bias.grad is None and torch.equal(head.bias, torch.zeros(512))
    assert not torch.equal(head.weight.detach(), torch.ones(512))


def test_ibn_a_layout(built: dict[str, models.ReIDNet]) -> None:
    trunk = built["resnet50_ibn_a"].backbone
    for stage in (trunk.layer1, trunk.layer2, trunk.layer3):
        for block in stage:
            assert isinstance(block.bn1, IBN)
            planes = block.conv1.out_channels
            assert block.bn1.IN.num_features == planes // 2 and block.bn1.IN.affine
            assert block.bn1.BN.num_features == planes - planes // 2
    assert not any(isinstance(m, IBN) for m in trunk.layer4.modules())
    keys = trunk.state_dict().keys()
    # Names of the IBN-Net release checkpoint.
    assert {"layer1.0.bn1.IN.weight", "layer3.5.bn1.BN.running_var", "layer4.2.bn1.weight"} <= set(keys)


def test_ibn_normalises_first_half_per_instance() -> None:
    ibn = IBN(4).train()
    x = torch.randn(3, 4, 5, 5) * 3 + 2
    y = ibn(x)
    # InstanceNorm half: zero mean per sample and channel; BatchNorm half: zero mean per channel over the
    # batch.
    torch.testing.assert_close(y[:, :2].mean(dim=(2, 3)), torch.zeros(3, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, 2:].mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    assert y[:, 2:].mean(dim=(2, 3)).abs().max() > 1e-3


def test_pretrained_loads_a_prefixed_checkpoint_leaving_only_fc_unused(tmp_path, caplog) -> None:
    torch.manual_seed(1)
    source = models.create("resnet18").backbone.state_dict()
    # An old-style file: DataParallel prefixes, the ImageNet classifier, no BatchNorm step counters.
    checkpoint = {f"module.{k}": v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    checkpoint["module.fc.weight"] = torch.randn(1000, 512)
    checkpoint["module.fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet18.pth.tar"
    torch.save({"state_dict": checkpoint, "epoch": 90}, path)

    torch.manual_seed(2)
    with caplog.at_level(logging.INFO, logger="spal.models.pretrained"):
        model = models.create("resnet18", pretrained=str(path))
    loaded = model.backbone.state_dict()
    for key, value in source.items():
        assert torch.equal(loaded[key], value), key
    assert str(path) in caplog.text


def test_pretrained_loading_is_strict_and_names_the_keys(tmp_path) -> None:
    state = resnet18_trunk().state_dict()
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.1.")}, missing)
    with pytest.raises(PretrainedError, match=r"missing \d+: layer4\.1\.bn1\.bias"):
        load_pretrained(resnet18_trunk(), missing, HINT)
    extra = tmp_path / "extra.pth"
    torch.save({**state, "extra.weight": torch.zeros(3)}, extra)
    with pytest.raises(PretrainedError, match="unexpected 1: extra.weight"):
        load_pretrained(resnet18_trunk(), extra, HINT)
    # A ResNet-18 file given to ResNet-50: an error that names the keys, not a partial load.
    resnet18_file = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, resnet18_file)
    with pytest.raises(PretrainedError) as info:
        models.create("resnet50", pretrained=resnet18_file)
    text = str(info.value)
    assert len(text.splitlines()) == 1
    assert "missing" in text and "layer1.0.conv3.weight" in text
    assert "shapes differ" in text and "layer1.0.conv1.weight (64, 64, 3, 3) vs (64, 64, 1, 1)" in text


def test_pretrained_plain_state_dict_and_bad_files(tmp_path) -> None:
    trunk = resnet18_trunk()
    state = trunk.state_dict()
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    load_pretrained(trunk, plain, HINT)
    wrong = tmp_path / "wrong.pth"
    torch.save({**state, "conv1.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    with pytest.raises(PretrainedError, match="shapes differ 1: conv1.weight"):
        load_pretrained(trunk, wrong, HINT)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="corrupt.pth"):
        load_pretrained(trunk, corrupt, HINT)
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"foo": torch.zeros(2)}, unrelated)
    with pytest.raises(PretrainedError, match="unexpected 1: foo"):
        load_pretrained(trunk, unrelated, HINT)
    with pytest.raises(FileNotFoundError, match=HINT):
        load_pretrained(trunk, tmp_path / "absent.pth", HINT)


def _hub(monkeypatch, tmp_path) -> Path:
    """An empty torch hub cache for this test: ``$TORCH_HOME/hub/checkpoints``."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    folder = tmp_path / "torch-home" / "hub" / "checkpoints"
    assert models.hub_checkpoint_dir() == folder
    return folder


def test_resnet50_without_weights_stops_naming_file_folder_and_source(monkeypatch, tmp_path) -> None:
    folder = _hub(monkeypatch, tmp_path)
    for pretrained in (None, "imagenet"):
        with pytest.raises(models.PretrainedNotFoundError) as info:
            models.resolve_pretrained("resnet50", pretrained)
        text = str(info.value)
        assert len(text.splitlines()) == 1
        assert "resnet50-0676ba61.pth" in text and str(folder) in text
        assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in text
        assert "--pretrained none" in text
    with pytest.raises(models.PretrainedNotFoundError, match="resnet50_ibn_a-d9d0bb7b.pth or resnet50_ibn_a.pth.tar"):
        models.resolve_pretrained("resnet50_ibn_a", None)
    # Random weights only when asked for, or for the small CPU backbone when nothing is given.
    assert models.resolve_pretrained("resnet50", "none") is None
    assert models.resolve_pretrained("resnet18", None) is None
    with pytest.raises(models.PretrainedNotFoundError, match="resnet18-f37072fd.pth"):
        models.resolve_pretrained("resnet18", "imagenet")


def test_weights_come_from_the_hub_cache_or_a_path_with_name_and_sha256(monkeypatch, tmp_path) -> None:
    folder = _hub(monkeypatch, tmp_path)
    folder.mkdir(parents=True)
    (folder / "resnet50_ibn_a.pth.tar").write_bytes(b"older IBN-a file")
    weights = models.resolve_pretrained("resnet50_ibn_a", None)
    assert weights.path == folder / "resnet50_ibn_a.pth.tar" and weights.name == "resnet50_ibn_a.pth.tar"
    assert weights.sha256 == hashlib.sha256(b"older IBN-a file").hexdigest()
    (folder / "resnet50_ibn_a-d9d0bb7b.pth").write_bytes(b"IBN-Net release file")
    assert models.resolve_pretrained("resnet50_ibn_a", None).name == "resnet50_ibn_a-d9d0bb7b.pth"
    given = tmp_path / "mine.pth"
    given.write_bytes(b"x" * 3_000_000)
    weights = models.resolve_pretrained("resnet50", str(given))
    assert (weights.name, weights.sha256) == ("mine.pth", hashlib.sha256(b"x" * 3_000_000).hexdigest())
    with pytest.raises(models.PretrainedNotFoundError, match="absent.pth"):
        models.resolve_pretrained("resnet50", str(tmp_path / "absent.pth"))


def test_missing_weights_file_says_what_to_download(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "resnet50_ibn_a.pth.tar"
    with pytest.raises(FileNotFoundError) as info:
        models.create("resnet50_ibn_a", pretrained=missing)
    text = str(info.value)
    assert str(missing) in text and "resnet50_ibn_a.pth.tar" in text and "--pretrained" in text
    assert len(text.splitlines()) == 1


def test_unknown_arch_lists_choices() -> None:
    with pytest.raises(ValueError, match="resnet50_ibn_a"):
        models.create("vgg16")
