"""MultiGallerySampler (SPEC 3.7): each branch of the rule, one pass's shape, determinism, and batch cutting."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from spal.data import MultiGallerySampler, global_batches, max_repeats_in_batch


def _groups(stream: list[int], labels: np.ndarray) -> list[list[int]]:
    """Split a pass into its classes' runs (every class is visited once a pass, so runs never merge)."""
    return [list(run) for _, run in itertools.groupby(stream, key=lambda i: int(labels[i]))]


# class 0: six images over cameras 0 / 1 / 2 (cross-camera followers, plenty: no replacement)
# class 1: three images on camera 0 only (same-camera fallback, 2 others < 4: replacement)
# class 2: an anchor camera with exactly 4 others elsewhere is possible: 5 images on cameras 0, 1, 1, 1, 1
# class 3, 4, 5: singletons
LABELS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 4, 5])
CAMIDS = np.array([0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 1, 1, 1, 1, 3, 4, 5])


def _passes(seed: int = 0, epochs: int = 40) -> list[list[int]]:
    sampler = MultiGallerySampler(LABELS, CAMIDS, num_instances=4, seed=seed)
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def test_a_pass_visits_every_class_once_clusters_with_four_singletons_with_one() -> None:
    sampler = MultiGallerySampler(LABELS, CAMIDS, num_instances=4, seed=1)
    assert len(sampler) == 3 * 4 + 3
    orders = set()
    for stream in _passes(seed=1):
        assert len(stream) == len(sampler) and all(type(i) is int for i in stream)
        groups = _groups(stream, LABELS)
        classes = [int(LABELS[g[0]]) for g in groups]
        assert sorted(classes) == [0, 1, 2, 3, 4, 5]
        assert [len(g) for g in groups] == [4 if c < 3 else 1 for c in classes]
        # Singletons appear once, never repeated to fill a K-slot.
        for singleton in (14, 15, 16):
            assert stream.count(singleton) == 1
        orders.add(tuple(classes))
    assert len(orders) > 10  # the class order is a fresh permutation each epoch


def test_followers_come_from_other_cameras_than_the_anchor() -> None:
    anchors = set()
    for stream in _passes():
        for group in _groups(stream, LABELS):
            anchor, followers = group[0], group[1:]
            if LABELS[anchor] in (0, 2):
                anchors.add(anchor)
                assert all(CAMIDS[f] != CAMIDS[anchor] for f in followers), group
                assert anchor not in followers
    # Every member can be the anchor (a random member, not the first).
    assert anchors == set(range(6)) | set(range(9, 14))


def test_same_camera_fallback_takes_the_other_members() -> None:
    seen = set()
    for stream in _passes():
        (group,) = [g for g in _groups(stream, LABELS) if LABELS[g[0]] == 1]
        anchor, followers = group[0], group[1:]
        assert len(followers) == 3 and anchor not in followers
        assert set(followers) <= {6, 7, 8} - {anchor}
        seen.update(followers)
    assert seen == {6, 7, 8}


def test_replacement_only_when_fewer_others_than_num_instances() -> None:
    repeats = {0: 0, 1: 0, 2: 0}
    for stream in _passes(epochs=60):
        for group in _groups(stream, LABELS):
            c = int(LABELS[group[0]])
            if c in repeats:
                repeats[c] += len(set(group[1:])) < 3
    # Class 0: an anchor has 4 others on other cameras -> without replacement, never a repeat.
    assert repeats[0] == 0
    # Class 1: 2 others < 4 -> drawn with replacement (3 draws of 2 always repeat).
    assert repeats[1] == 60
    # Class 2: anchor on camera 0 has 4 others (without replacement); anchor on camera 1 has 1 other (camera 0)
    # -> that one image three times. Both happen over 60 epochs.
    assert 0 < repeats[2] < 60
    for stream in _passes(epochs=60):
        (group,) = [g for g in _groups(stream, LABELS) if LABELS[g[0]] == 2]
        if CAMIDS[group[0]] == 1:
            assert group[1:] == [9, 9, 9]
        else:
            assert len(set(group[1:])) == 3


def test_num_instances_two_and_one() -> None:
    two = MultiGallerySampler(LABELS, CAMIDS, num_instances=2, seed=0)
    assert len(two) == 3 * 2 + 3 and two.max_repeats == 1
    assert all(len(g) in (1, 2) for g in _groups(list(two), LABELS))
    one = MultiGallerySampler(LABELS, CAMIDS, num_instances=1, seed=0)
    stream = list(one)
    assert len(stream) == 6 and sorted(int(LABELS[i]) for i in stream) == [0, 1, 2, 3, 4, 5]


def test_the_stream_is_a_function_of_seed_and_epoch() -> None:
    a = MultiGallerySampler(LABELS, CAMIDS, seed=3)
    b = MultiGallerySampler(LABELS.copy(), CAMIDS.copy(), seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    first = list(a)
    assert list(a) == first == list(b)
    b.set_epoch(6)
    assert list(b) != first
    c = MultiGallerySampler(LABELS, CAMIDS, seed=4)
    c.set_epoch(5)
    assert list(c) != first
    # passes() starts with iter()'s pass and continues with new permutations.
    passes = a.passes()
    assert next(passes).tolist() == first
    assert next(passes).tolist() != first


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="outlier"):
        MultiGallerySampler(np.array([0, -1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="camids"):
        MultiGallerySampler(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="num_instances"):
        MultiGallerySampler(np.array([0, 1]), np.array([0, 1]), num_instances=0)


def test_batches_are_consecutive_slices_of_each_pass_the_partial_one_dropped() -> None:
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.repeat(np.arange(10), 5), 10 + np.arange(7)])  # pass: 10 * 4 + 7 = 47
    camids = rng.integers(0, 3, size=labels.size)
    sampler = MultiGallerySampler(labels, camids, seed=2)
    sampler.set_epoch(1)
    batches = list(global_batches(sampler, batch_size=16, num_batches=7))
    assert len(batches) == 7 and all(b.shape == (16,) and b.dtype == np.int64 for b in batches)
    passes = sampler.passes()
    expected = []
    for _ in range(3):
        stream = next(passes)
        expected += [stream[i * 16 : (i + 1) * 16] for i in range(2)]  # 47 -> 2 batches, 15 dropped
    for got, want in zip(batches, expected + [next(passes)[:16]], strict=True):
        assert np.array_equal(got, want)
    assert max_repeats_in_batch(sampler, 16) == 3
    assert max(np.unique(b, return_counts=True)[1].max() for b in batches) <= 3


def test_a_pass_shorter_than_a_batch_is_joined_with_the_next(caplog) -> None:
    labels = np.array([0, 0, 0, 0, 1, 2])  # pass: 4 + 1 + 1 = 6 < 16
    camids = np.array([0, 1, 0, 1, 2, 2])
    sampler = MultiGallerySampler(labels, camids, seed=0)
    with caplog.at_level(logging.WARNING, logger="spal.data.samplers"):
        batches = list(global_batches(sampler, batch_size=16, num_batches=3))
    assert "fewer than a batch of 16" in caplog.text
    stream = np.concatenate(list(itertools.islice(sampler.passes(), 8)))
    assert np.array_equal(np.concatenate(batches), stream[:48])
    bound = max_repeats_in_batch(sampler, 16)
    assert max(np.unique(b, return_counts=True)[1].max() for b in batches) <= bound
