"""Tests for train/data/loader.py: background prefetching gives exactly the batches of the plain iterator."""

import itertools

import numpy as np
import pytest

from tests.data._synthetic import write_synthetic_dataset
from train.data.dataset import batch_iterator, load_split, open_split
from train.data.loader import prefetching_batches

FIELDS = ("audio", "f0_hz", "pitch")


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    return open_split(write_synthetic_dataset(tmp_path_factory.mktemp("loader"), {"train": 17}, shard_size=5), "train")


@pytest.mark.parametrize(("workers", "prefetch"), [(1, 1), (3, 6)])
def test_prefetched_batches_equal_the_plain_iterator_across_epochs(reader, workers, prefetch):
    expected = batch_iterator(load_split(reader.dataset_dir, "train"), 4, seed=2)
    loaded = prefetching_batches(reader, 4, seed=2, fields=FIELDS, workers=workers, prefetch=prefetch)
    for _ in range(9):  # 4 steps per epoch: crosses two epoch boundaries
        batch, reference = next(loaded), next(expected)
        assert sorted(batch) == sorted(FIELDS)
        for name in FIELDS:
            np.testing.assert_array_equal(batch[name], reference[name])


def test_resuming_at_a_step_continues_the_uninterrupted_sequence(reader):
    straight = list(itertools.islice(prefetching_batches(reader, 2, seed=5, fields=("pitch",)), 12))
    resumed = list(itertools.islice(prefetching_batches(reader, 2, seed=5, fields=("pitch",), start_step=7), 5))
    assert [b["pitch"].tolist() for b in resumed] == [b["pitch"].tolist() for b in straight[7:]]


def test_two_processes_get_disjoint_halves_of_each_global_batch(reader):
    halves = [prefetching_batches(reader, 3, seed=1, fields=("pitch",), shard_index=k, shard_count=2) for k in (0, 1)]
    whole = prefetching_batches(reader, 6, seed=1, fields=("pitch",))
    for _ in range(5):
        first, second = (next(h)["pitch"].tolist() for h in halves)
        assert not set(first) & set(second)
        assert first + second == next(whole)["pitch"].tolist()


def test_bad_loader_settings_are_refused_in_one_line(reader):
    with pytest.raises(ValueError, match="holds 17 examples, fewer than one global batch"):
        next(prefetching_batches(reader, 9, seed=0, fields=FIELDS, shard_count=2))
    with pytest.raises(ValueError, match="workers and prefetch must be >= 1"):
        next(prefetching_batches(reader, 2, seed=0, fields=FIELDS, workers=0))
