"""Each ablation switch changes exactly the one thing it names."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import DBSCAN

from spal import models
from spal.active import ConstraintGraph
from spal.data import TrainAugment
from spal.distributed import DistContext
from spal.engine.config import TrainConfig
from spal.engine.runner import cluster, pseudo_labels_from_clusters
from spal.engine.trainer import EpochTargets, StepSettings, TrainImages, support_pair_eligible, train_epoch
from spal.losses import InstanceMemory


def _two_blobs() -> tuple[sp.csr_matrix, np.ndarray]:
    # Two tight groups of 4 at distance 0.1 inside, 0.5 between: with eps 0.6 DBSCAN joins all 8.
    dense = np.full((8, 8), 0.5, dtype=np.float32)
    for group in (range(0, 4), range(4, 8)):
        for i in group:
            for j in group:
                dense[i, j] = 0.1
    np.fill_diagonal(dense, 0.0)
    return sp.csr_matrix(dense), dense


def test_plain_clustering_ignores_constraints_and_matches_sklearn() -> None:
    distances, dense = _two_blobs()
    graph = ConstraintGraph(8)
    assert graph.add_cannot_link(0, 4)
    plain = cluster(distances, graph, clustering="plain", eps=0.6, min_samples=2)
    reference = DBSCAN(eps=0.6, min_samples=2, metric="precomputed").fit_predict(dense)
    assert np.array_equal(plain, reference)
    assert len(set(plain.tolist())) == 1
    constrained = cluster(distances, graph, clustering="constrained", eps=0.6, min_samples=2)
    # The cannot-link keeps 0 and 4 apart: the constrained run finds two clusters.
    assert constrained[0] != constrained[4]


def test_propagation_off_changes_only_what_counts_as_known() -> None:
    # What --help and the protocols' ablation say: the selection sees only answered pairs as known, the
    # clustering and the support-pair loss read the same propagated constraints as with propagation on.
    distances, _ = _two_blobs()
    on, off = ConstraintGraph(8), ConstraintGraph(8, propagation=False)
    for graph in (on, off):
        graph.add_must_link(0, 1)
        graph.add_must_link(1, 2)
        graph.add_cannot_link(2, 4)
    assert on.known(0, 2) and on.known(0, 4) and not off.known(0, 2) and not off.known(0, 4)
    assert off.known(1, 2) and off.known(2, 4)
    labels_on = cluster(distances, on, clustering="constrained", eps=0.6, min_samples=4)
    labels_off = cluster(distances, off, clustering="constrained", eps=0.6, min_samples=4)
    assert np.array_equal(labels_on, labels_off) and labels_on[0] != labels_on[4]  # the implied CL still splits
    assert np.array_equal(on.component_ids(), off.component_ids())
    assert np.array_equal(on.cannot_link_edges(), off.cannot_link_edges())


def test_outliers_become_singleton_classes() -> None:
    pseudo, num_classes = pseudo_labels_from_clusters(np.array([1, -1, 0, 1, -1]))
    assert num_classes == 4
    assert pseudo.tolist() == [1, 2, 0, 1, 3]


def test_support_pair_eligibility() -> None:
    components = np.array([0, 0, 2, 3, 3, 5])
    edges = np.array([[0, 2], [3, 5]])
    # 0,1: component of 2 with a CL; 2: alone; 3,4: component of 2 with a CL; 5: alone.
    assert support_pair_eligible(components, edges).tolist() == [True, True, False, True, True, False]


@pytest.mark.parametrize("lambda_sp", [0.0, 1.0])
def test_lambda_switches_the_support_pair_loss(lambda_sp: float) -> None:
    torch.manual_seed(0)
    n = 32
    model = models.create("resnet18")
    images = torch.randint(0, 255, (n, 3, 32, 16), dtype=torch.uint8)
    with torch.no_grad():
        model.eval()
        memory = InstanceMemory(model(torch.randn(n, 3, 32, 16)))
    labels = np.arange(n) // 4
    components = labels * 4  # must-link components = the pseudo classes, named by their smallest member
    edges = np.array([[0, 4], [8, 12], [16, 20], [24, 28]])
    targets = EpochTargets(labels, int(labels.max()) + 1, components, edges)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    settings = StepSettings(
        iters=2,
        batch_size=16,
        num_instances=4,
        seed=1,
        temperature=0.05,
        momentum=0.2,
        margin=1.0,
        lambda_sp=lambda_sp,
    )
    train = TrainImages(images, np.arange(n) % 3, TrainAugment(32, 16, pad=2))
    losses = train_epoch(model, optimizer, memory, train, targets, epoch=0, settings=settings, ctx=DistContext())
    if lambda_sp == 0:
        assert losses["loss_support"] == 0.0
        assert losses["loss"] == pytest.approx(losses["loss_contrastive"])
    else:
        assert losses["loss_support"] > 0.0
        assert losses["loss"] == pytest.approx(losses["loss_contrastive"] + losses["loss_support"], rel=1e-5)


def test_config_rejects_unknown_switch_values() -> None:
    with pytest.raises(ValueError, match="selection"):
        TrainConfig(selection="greedy")
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"lamda_sp": 0})
