"""Cluster contrastive loss against a per-item loop reference: values, gradients, none to the memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spal.losses import class_mean_logits, cluster_contrastive_loss


def _reference(x, targets, memory, labels, num_classes, tau):
    losses = []
    for b in range(x.shape[0]):
        logits = []
        for c in range(num_classes):
            members = [j for j in range(memory.shape[0]) if labels[j] == c]
            if members:
                logits.append(torch.stack([x[b] @ memory[j] / tau for j in members]).mean())
        logits = torch.stack(logits)
        present = sorted(set(labels.tolist()))
        losses.append(-torch.log_softmax(logits, dim=0)[present.index(int(targets[b]))])
    return torch.stack(losses).mean()


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    memory = F.normalize(torch.randn(30, 8, generator=g), dim=1)
    labels = torch.randint(0, 6, (30,), generator=g)
    labels[labels == 4] = 3  # class 4 has no members; class 6 (num_classes=7) neither
    x = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    targets = labels[torch.tensor([0, 3, 7, 11, 20])]
    return x, targets, memory, labels


def test_matches_loop_reference_value_and_gradient() -> None:
    x, targets, memory, labels = _data()
    x_ref = x.clone().requires_grad_()
    x_new = x.clone().requires_grad_()
    expected = _reference(x_ref, targets, memory, labels, 7, 0.05)
    loss = cluster_contrastive_loss(x_new, targets, memory, labels, num_classes=7, temperature=0.05)
    torch.testing.assert_close(loss, expected)
    expected.backward()
    loss.backward()
    torch.testing.assert_close(x_new.grad, x_ref.grad)


def test_empty_classes_are_left_out_of_the_softmax() -> None:
    x, _, memory, labels = _data(1)
    logits = class_mean_logits(x, memory, labels, num_classes=7, temperature=0.05)
    assert logits.shape == (5, 7)
    assert torch.isinf(logits[:, 4]).all() and torch.isinf(logits[:, 6]).all()
    assert torch.isfinite(logits[:, [0, 1, 2, 3, 5]]).all()


def test_gradient_does_not_reach_the_memory() -> None:
    x, targets, memory, labels = _data(2)
    memory = memory.clone().requires_grad_()
    x = x.clone().requires_grad_()
    cluster_contrastive_loss(x, targets, memory, labels, num_classes=7).backward()
    assert memory.grad is None
    assert x.grad is not None and x.grad.abs().sum() > 0
