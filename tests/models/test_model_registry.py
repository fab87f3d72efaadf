"""ReIDNet construction: shapes, normalisation, last stride, frozen head bias, IBN-a layout, local weights."""

from __future__ import annotations

import logging

import pytest
import torch

from spal import models
from spal.models.pretrained import load_pretrained
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


def test_pretrained_loads_prefixed_checkpoint(tmp_path, caplog) -> None:
    torch.manual_seed(1)
    source = models.create("resnet18").backbone.state_dict()
    checkpoint = {f"module.{k}": v for k, v in source.items() if "layer4.1" not in k}
    checkpoint["module.fc.weight"] = torch.randn(1000, 512)
    checkpoint["module.fc.bias"] = torch.randn(1000)
    checkpoint["module.extra.weight"] = torch.randn(3)
    path = tmp_path / "resnet18.pth.tar"
    torch.save({"state_dict": checkpoint, "epoch": 90}, path)

    torch.manual_seed(2)
    with caplog.at_level(logging.INFO, logger="spal.models.pretrained"):
        model = models.create("resnet18", pretrained=str(path))
    loaded = model.backbone.state_dict()
    for key, value in source.items():
        if "layer4.1" not in key:
            assert torch.equal(loaded[key], value), key
    # Left out of the checkpoint: keeps its own (different) random initialisation.
    assert not torch.equal(loaded["layer4.1.conv1.weight"], source["layer4.1.conv1.weight"])
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "missing" in message and "layer4.1.conv1.weight" in message
    assert "unexpected 1" in message and "extra.weight" in message and "fc.weight" not in message


def test_pretrained_plain_state_dict_and_bad_files(tmp_path) -> None:
    trunk = resnet18_trunk()
    state = trunk.state_dict()
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    load_pretrained(trunk, plain, HINT)
    wrong = tmp_path / "wrong.pth"
    torch.save({**state, "conv1.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    with pytest.raises(ValueError, match="shapes differ: conv1.weight"):
        load_pretrained(trunk, wrong, HINT)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pth"):
        load_pretrained(trunk, corrupt, HINT)
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"foo": torch.zeros(2)}, unrelated)
    with pytest.raises(ValueError, match="none of the 1 tensors"):
        load_pretrained(trunk, unrelated, HINT)
    with pytest.raises(FileNotFoundError, match=HINT):
        load_pretrained(trunk, tmp_path / "absent.pth", HINT)


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
