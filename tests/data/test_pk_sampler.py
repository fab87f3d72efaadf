"""PKSampler: P identities x K images, determinism, rank split, singletons and small label sets."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from spal.data import PKSampler


def _labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    sizes = [1, 1, 1, 2, 3, 4, 5, 9, 12, 1, 6, 7, 20, 1, 3, 8, 4, 4, 2, 10]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return rng.permutation(labels)


def test_batches_are_p_identities_by_k_images() -> None:
    labels = _labels()
    sampler = PKSampler(labels, num_instances=4, batch_size=32, num_iterations=30, seed=1)
    batches = list(sampler.batches())
    assert len(batches) == 30 == len(sampler)
    for batch in batches:
        assert batch.shape == (32,) and batch.dtype == np.int64
        groups = labels[batch].reshape(8, 4)
        assert (groups == groups[:, :1]).all()  # K consecutive images share the identity
        assert len(set(groups[:, 0])) == 8  # P distinct identities
        assert np.unique(batch, return_counts=True)[1].max() <= sampler.max_repeats == 4
        for row in batch.reshape(8, 4):
            size = int((labels == labels[row[0]]).sum())
            # Without replacement when the identity has >= K images (else with replacement).
            assert len(set(row)) == 4 if size >= 4 else len(set(row)) <= size


def test_singletons_repeat_their_image_and_every_class_is_drawn() -> None:
    labels = _labels()
    sampler = PKSampler(labels, num_instances=4, batch_size=32, num_iterations=200, seed=3)
    seen = set()
    for batch in sampler.batches():
        seen |= set(labels[batch].tolist())
        for row in batch.reshape(8, 4):
            if (labels == labels[row[0]]).sum() == 1:
                assert len(set(row)) == 1
    assert seen == set(labels.tolist())


def test_deterministic_in_seed_and_epoch() -> None:
    labels = _labels()

    def run(seed: int, epoch: int) -> np.ndarray:
        sampler = PKSampler(labels, num_instances=4, batch_size=16, num_iterations=5, seed=seed)
        sampler.set_epoch(epoch)
        return np.stack(list(sampler.batches()))

    assert np.array_equal(run(1, 0), run(1, 0))
    assert np.array_equal(run(1, 4), run(1, 4))
    assert not np.array_equal(run(1, 0), run(1, 1))
    assert not np.array_equal(run(1, 0), run(2, 0))


def test_ranks_split_the_global_batch() -> None:
    labels = _labels()
    whole = list(PKSampler(labels, 4, 32, num_iterations=6, seed=7).batches())
    shares = [
        list(PKSampler(labels, 4, 32, num_iterations=6, seed=7, rank=r, world_size=4)) for r in range(4)
    ]
    for step, batch in enumerate(whole):
        parts = [np.asarray(shares[r][step]) for r in range(4)]
        assert all(p.shape == (8,) for p in parts)
        assert np.array_equal(np.concatenate(parts), batch)


def test_too_few_identities_draws_with_replacement_and_warns_once(caplog) -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    with caplog.at_level(logging.WARNING, logger="spal.data.samplers"):
        sampler = PKSampler(labels, num_instances=2, batch_size=16, num_iterations=3, seed=0)
        batches = list(sampler.batches())
    assert sum("with replacement" in r.getMessage() for r in caplog.records) == 1
    assert sampler.max_repeats == 16
    for batch in batches:
        assert batch.shape == (16,)
        assert (labels[batch].reshape(8, 2)[:, 0] == labels[batch].reshape(8, 2)[:, 1]).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.array([0, -1, 1])}, "outlier its own class"),
        ({"batch_size": 30}, "multiple of num_instances"),
        ({"world_size": 3}, "world_size 3"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs: dict, message: str) -> None:
    args = {"labels": _labels(), "num_instances": 4, "batch_size": 32, "num_iterations": 1, "seed": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PKSampler(**args)
