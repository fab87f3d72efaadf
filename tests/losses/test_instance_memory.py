"""InstanceMemory: the momentum update formula, duplicates in batch order, no gradient, occurrence ranks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spal.losses import InstanceMemory, occurrence_rank


def _reference_update(memory: torch.Tensor, indices: torch.Tensor, x: torch.Tensor, m: float) -> torch.Tensor:
    out = memory.clone()
    for i, feature in zip(indices.tolist(), x):
        mixed = m * out[i] + (1 - m) * feature
        out[i] = mixed / mixed.norm()
    return out


def test_update_formula_on_distinct_rows() -> None:
    torch.manual_seed(0)
    start = F.normalize(torch.randn(10, 6), dim=1)
    memory = InstanceMemory(start)
    x = F.normalize(torch.randn(3, 6), dim=1)
    memory.update(torch.tensor([7, 2, 4]), x, momentum=0.2)
    expected = start.clone()
    for row, i in enumerate([7, 2, 4]):
        expected[i] = F.normalize(0.2 * start[i] + 0.8 * x[row], dim=0)
    torch.testing.assert_close(memory.features, expected)
    untouched = [0, 1, 3, 5, 6, 8, 9]
    assert torch.equal(memory.features[untouched], start[untouched])
    torch.testing.assert_close(memory.features.norm(dim=1), torch.ones(10))


@pytest.mark.parametrize("max_repeats", [None, 3, 5])
def test_duplicates_apply_in_batch_order(max_repeats: int | None) -> None:
    torch.manual_seed(1)
    start = F.normalize(torch.randn(8, 5), dim=1)
    indices = torch.tensor([3, 1, 3, 3, 6, 1, 0])
    x = torch.randn(7, 5)
    memory = InstanceMemory(start)
    memory.update(indices, x, momentum=0.3, max_repeats=max_repeats)
    torch.testing.assert_close(memory.features, _reference_update(start, indices, x, 0.3))


def test_update_takes_no_gradient_and_copies_the_input() -> None:
    start = F.normalize(torch.randn(4, 3), dim=1)
    memory = InstanceMemory(start)
    assert list(memory.parameters()) == [] and "features" in memory.state_dict()
    x = torch.randn(2, 3, requires_grad=True)
    memory.update(torch.tensor([0, 1]), x)
    assert not memory.features.requires_grad
    assert not torch.equal(memory.features, start)  # the constructor copied: start is unchanged
    torch.testing.assert_close(start.norm(dim=1), torch.ones(4))


def test_occurrence_rank() -> None:
    assert occurrence_rank(torch.tensor([5, 2, 5, 5, 2, 9])).tolist() == [0, 0, 1, 2, 1, 0]
    assert occurrence_rank(torch.tensor([4])).tolist() == [0]
