"""GroupedBatchNorm: K groups behave as K separate plain BatchNorms; state dicts interchange with plain BN."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spal import models
from spal.models import GroupedBatchNorm, convert_to_grouped_batchnorm


def _plain_bn(shape: tuple[int, ...], channels: int) -> nn.Module:
    bn = nn.BatchNorm2d(channels) if len(shape) == 4 else nn.BatchNorm1d(channels)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return bn


@pytest.mark.parametrize("shape", [(12, 5), (12, 5, 3, 4), (8, 3, 4, 2)])
@pytest.mark.parametrize("groups", [2, 4])
def test_groups_equal_separate_plain_batchnorms(shape: tuple[int, ...], groups: int) -> None:
    torch.manual_seed(0)
    if shape[0] // groups < 2 and len(shape) == 2:
        pytest.skip("a 1-d BatchNorm needs two samples per group")
    channels = shape[1]
    plain = _plain_bn(shape, channels).train()
    grouped = GroupedBatchNorm.from_batchnorm(copy.deepcopy(plain), groups).train()
    x = (torch.randn(shape) * 2 + 1).requires_grad_()
    upstream = torch.randn(shape)

    out_grouped = grouped(x)
    (out_grouped * upstream).sum().backward()

    x_parts = x.detach().chunk(groups)
    outs, means, variances, grad_xs, grad_ws, grad_bs = [], [], [], [], [], []
    for part, up in zip(x_parts, upstream.chunk(groups)):
        bn = copy.deepcopy(plain)
        part = part.clone().requires_grad_()
        out = bn(part)
        (out * up).sum().backward()
        outs.append(out.detach())
        means.append(bn.running_mean)
        variances.append(bn.running_var)
        grad_xs.append(part.grad)
        grad_ws.append(bn.weight.grad)
        grad_bs.append(bn.bias.grad)

    torch.testing.assert_close(out_grouped.detach(), torch.cat(outs))
    torch.testing.assert_close(grouped.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(grouped.running_var, torch.stack(variances).mean(0))
    assert int(grouped.num_batches_tracked) == 1
    torch.testing.assert_close(x.grad, torch.cat(grad_xs))
    torch.testing.assert_close(grouped.weight.grad, torch.stack(grad_ws).sum(0))
    torch.testing.assert_close(grouped.bias.grad, torch.stack(grad_bs).sum(0))


def test_eval_mode_and_channels_last_match_plain() -> None:
    torch.manual_seed(1)
    plain = _plain_bn((8, 3, 4, 4), 3)
    grouped = GroupedBatchNorm.from_batchnorm(copy.deepcopy(plain), 4)
    x = torch.randn(8, 3, 4, 4)
    plain.eval()
    grouped.eval()
    torch.testing.assert_close(grouped(x), plain(x))
    grouped.train()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = grouped(x_cl)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, grouped(x.contiguous()))


def test_batch_not_divisible_is_a_clear_error() -> None:
    grouped = GroupedBatchNorm(3, groups=4).train()
    with pytest.raises(ValueError, match="divisible by bn_groups=4"):
        grouped(torch.randn(6, 3, 2, 2))


def test_model_state_dicts_interchange_and_groups_split_the_batch() -> None:
    torch.manual_seed(2)
    plain = models.create("resnet18", bn_groups=1)
    grouped = models.create("resnet18", bn_groups=2)
    assert list(plain.state_dict()) == list(grouped.state_dict())
    grouped.load_state_dict(plain.state_dict())
    assert (
        sum(isinstance(m, GroupedBatchNorm) for m in grouped.modules())
        == sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) + 1
    )
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in grouped.modules())
    x = torch.randn(4, 3, 32, 16)
    plain.train()
    grouped.train()
    with torch.no_grad():
        expected = torch.cat([copy.deepcopy(plain)(half) for half in x.chunk(2)])
        torch.testing.assert_close(grouped(x), expected, rtol=1e-4, atol=1e-5)


def test_convert_shares_parameters() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    net[1].bias.requires_grad_(False)
    weight = net[1].weight
    converted = convert_to_grouped_batchnorm(net, 2)
    assert isinstance(converted[1], GroupedBatchNorm)
    assert converted[1].weight is weight and not converted[1].bias.requires_grad
    assert convert_to_grouped_batchnorm(net, 1) is net
