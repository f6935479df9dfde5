"""Tests for ddsp_datarax/sources.py: the datarax source over a prepared split gives the numpy iterator's batches."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_datarax.sources import NUMERIC_FIELDS, PreparedSource, PreparedSourceConfig, build_pipeline
from tests.data._synthetic import synthetic_split, write_synthetic_dataset
from train.data.dataset import batch_iterator, load_split


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("prepared"), {"train": 10, "validation": 3, "test": 2})


def test_pipeline_steps_equal_the_numpy_iterator_across_epochs(prepared):
    pipeline = build_pipeline(prepared, "train", batch_size=3, seed=5, shard_index=0, shard_count=1)
    numpy_batches = batch_iterator(load_split(prepared, "train"), 3, seed=5)
    for _ in range(7):  # 3 steps per epoch: crosses two epoch boundaries
        batch = pipeline.step()
        expected = next(numpy_batches)
        assert sorted(batch) == sorted(NUMERIC_FIELDS)
        for name in NUMERIC_FIELDS:
            np.testing.assert_array_equal(np.asarray(batch[name]), expected[name], err_msg=name)


def test_shards_of_a_step_are_disjoint_and_match_the_numpy_shards(prepared):
    train = load_split(prepared, "train")
    for shard in range(2):
        pipeline = build_pipeline(prepared, "train", batch_size=2, seed=1, shard_index=shard, shard_count=2)
        expected = batch_iterator(train, 2, seed=1, shard_index=shard, shard_count=2)
        for _ in range(4):
            np.testing.assert_array_equal(np.asarray(pipeline.step()["pitch"]), next(expected)["pitch"])
    sources = [PreparedSource(PreparedSourceConfig(seed=1, shard_index=k, shard_count=2), train) for k in range(2)]
    pitches = [np.asarray(s.get_batch_at(0, 2)["pitch"]).tolist() for s in sources]
    assert not set(pitches[0]) & set(pitches[1])


def test_get_batch_at_is_jittable_with_a_traced_start_and_ignores_the_key():
    source = PreparedSource(PreparedSourceConfig(seed=3), synthetic_split(9))
    eager = source.get_batch_at(6, 3)
    traced = jax.jit(lambda start: source.get_batch_at(start, 3, jax.random.key(99)))(jnp.int32(6))
    for name in NUMERIC_FIELDS:
        np.testing.assert_array_equal(np.asarray(traced[name]), np.asarray(eager[name]))
    assert source.element_spec()["audio"].shape == (640,)


def test_unshuffled_source_serves_the_stored_order():
    source = PreparedSource(PreparedSourceConfig(shuffle=False), synthetic_split(6))
    assert [np.asarray(source.get_batch_at(s * 2, 2)["pitch"]).tolist() for s in range(4)] == [
        [0, 1], [2, 3], [4, 5], [0, 1]]
    assert [int(e["pitch"]) for e in itertools.islice(iter(source), 6)] == [0, 1, 2, 3, 4, 5]


def test_bad_batch_and_shard_settings_are_rejected(prepared):
    with pytest.raises(ValueError, match=r"holds 10 examples, fewer than one global batch of .* = 6 \* 2 = 12"):
        build_pipeline(prepared, "train", batch_size=6, seed=0, shard_index=0, shard_count=2)
    with pytest.raises(ValueError, match="shard_index < shard_count"):
        PreparedSourceConfig(shard_index=2, shard_count=2)
