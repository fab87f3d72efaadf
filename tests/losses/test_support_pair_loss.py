"""Support-pair loss against a per-item loop reference: values, gradients, partners, the zero case."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spal.losses import SupportPairIndex, support_pair_loss, support_pair_loss_indexed


def _reference(x, indices, memory, comp, edges, margin):
    cl_pairs = {(int(a), int(b)) for a, b in edges.tolist()} | {(int(b), int(a)) for a, b in edges.tolist()}
    terms = []
    for b, i in enumerate(indices.tolist()):
        ml = [j for j in range(memory.shape[0]) if comp[j] == comp[i] and j != i]
        cl = [j for j in range(memory.shape[0]) if (int(comp[i]), int(comp[j])) in cl_pairs]
        if not ml or not cl:
            continue
        d_ap = torch.stack([((x[b] - memory[j]) ** 2).sum() for j in ml]).max()
        d_an = torch.stack([((x[b] - memory[j]) ** 2).sum() for j in cl]).min()
        terms.append(torch.relu(d_ap - d_an + margin))
    return torch.stack(terms).mean() if terms else None


def _graph(seed: int):
    """Memory of 24 rows; components named by their smallest member; a few cannot-links between them."""
    g = torch.Generator().manual_seed(seed)
    memory = F.normalize(torch.randn(24, 6, generator=g), dim=1)
    groups = torch.randint(0, 9, (24,), generator=g)
    comp = torch.tensor([int((groups == groups[j]).nonzero()[0]) for j in range(24)])
    roots = comp.unique()
    pairs = torch.combinations(roots, 2)
    edges = pairs[torch.randperm(len(pairs), generator=g)[:7]]
    return memory, comp, edges


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_loop_reference_value_and_gradient(seed: int) -> None:
    memory, comp, edges = _graph(seed)
    g = torch.Generator().manual_seed(100 + seed)
    indices = torch.randperm(24, generator=g)[:10]
    x = F.normalize(memory[indices] + 0.3 * torch.randn(10, 6, generator=g), dim=1)
    x_ref = x.clone().requires_grad_()
    x_new = x.clone().requires_grad_()
    expected = _reference(x_ref, indices, memory, comp, edges, margin=1.0)
    assert expected is not None, "the random graph should give some image both kinds of partner"
    loss = support_pair_loss(x_new, indices, memory, comp, edges, margin=1.0)
    torch.testing.assert_close(loss, expected)
    expected.backward()
    loss.backward()
    torch.testing.assert_close(x_new.grad, x_ref.grad)


def test_indexed_form_and_edge_orientation_agree() -> None:
    memory, comp, edges = _graph(5)
    indices = torch.arange(0, 24, 2)
    x = F.normalize(torch.randn(12, 6), dim=1)
    index = SupportPairIndex.build(comp, edges)
    flipped = SupportPairIndex.build(comp, edges.flip(1))
    value = support_pair_loss_indexed(x, indices, memory, index, margin=0.5)
    torch.testing.assert_close(value, support_pair_loss_indexed(x, indices, memory, flipped, margin=0.5))
    torch.testing.assert_close(value, support_pair_loss(x, indices, memory, comp, edges, margin=0.5))


def test_hand_made_case() -> None:
    # Rows 0, 1, 2 form component 0; row 3 is component 3; rows 4, 5 component 4. Component 0 cannot-links 4.
    memory = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 9.0], [0.0, 1.0], [0.0, 2.0]])
    comp = torch.tensor([0, 0, 0, 3, 4, 4])
    edges = torch.tensor([[4, 0]])
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    loss = support_pair_loss(x, torch.tensor([0, 3]), memory, comp, edges, margin=1.0)
    # Image 0: d_ap = max(1, 9) = 9 (not itself), d_an = min(1, 4) = 1 -> 9 - 1 + 1 = 9. Image 3 has no
    # partner.
    assert loss.item() == pytest.approx(9.0)


def test_zero_when_no_image_has_both_partners() -> None:
    memory, comp, _ = _graph(0)
    x = torch.randn(4, 6, requires_grad=True)
    indices = torch.tensor([0, 1, 2, 3])
    loss = support_pair_loss(x, indices, memory, comp, torch.zeros((0, 2), dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    singleton_comp = torch.arange(24)  # no must-links at all
    loss = support_pair_loss(x, indices, memory, singleton_comp, torch.tensor([[0, 5], [1, 7]]))
    assert loss.item() == 0.0


def test_gradient_does_not_reach_the_memory() -> None:
    memory, comp, edges = _graph(1)
    memory = memory.clone().requires_grad_()
    x = torch.randn(24, 6, requires_grad=True)
    loss = support_pair_loss(x, torch.arange(24), memory, comp, edges)
    assert loss.item() > 0
    loss.backward()
    assert memory.grad is None and x.grad.abs().sum() > 0


def test_index_validation() -> None:
    with pytest.raises(ValueError, match="cannot-links itself"):
        SupportPairIndex.build(torch.tensor([0, 0, 2]), torch.tensor([[2, 2]]))
    with pytest.raises(ValueError, match="renumber"):
        SupportPairIndex.build(torch.tensor([0, -1]), torch.zeros((0, 2), dtype=torch.long))
