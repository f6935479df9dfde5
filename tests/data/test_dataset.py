"""Tests for train/data/dataset.py: writing shards (atomic, reproducible, resumable), splits and batch iteration."""

import io
import itertools
import json
import zipfile

import numpy as np
import pytest

from tests.data._synthetic import folder_bytes, synthetic_split, write_synthetic_dataset
from train.data import dataset
from train.data.dataset import DataError, assign_splits, batch_iterator, load_split


def test_npz_bytes_are_reproducible_and_carry_a_fixed_timestamp():
    arrays = synthetic_split(3)
    first = dataset.npz_bytes(arrays)
    assert dataset.npz_bytes({key: arrays[key] for key in reversed(list(arrays))}) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert sorted(archive.namelist()) == sorted(f"{key}.npy" for key in arrays)


def test_save_npz_atomic_round_trips_without_pickle_and_leaves_no_temporary_file(tmp_path):
    arrays = synthetic_split(4)
    dataset.save_npz_atomic(tmp_path / "a.npz", arrays)
    loaded = dataset.load_npz(tmp_path / "a.npz")
    assert sorted(loaded) == sorted(arrays)
    for key in arrays:
        np.testing.assert_array_equal(loaded[key], arrays[key])
        assert loaded[key].dtype == arrays[key].dtype
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_object_arrays_are_refused():
    with pytest.raises(ValueError, match="dtype object"):
        dataset.npz_bytes({"id": np.asarray(["a", None], dtype=object)})


def test_interrupted_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    from ddsp_core import _io

    path = tmp_path / "audio.npy"
    dataset.save_npy_atomic(path, synthetic_split(2)["audio"])
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        dataset.save_npy_atomic(path, synthetic_split(5)["audio"])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["audio.npy"]


def test_prepared_dataset_loads_with_manifest_counts_and_is_byte_identical_when_rewritten(tmp_path):
    counts = {"train": 9, "validation": 2, "test": 1}
    write_synthetic_dataset(tmp_path / "a", counts, shard_size=4)
    write_synthetic_dataset(tmp_path / "b", counts, shard_size=4)
    files = folder_bytes(tmp_path / "a")
    assert files == folder_bytes(tmp_path / "b")
    assert sorted({name.rsplit("/", 1)[0] for name in files if "/" in name}) == [
        "test/shard-00000", "train/shard-00000", "train/shard-00001", "train/shard-00002", "validation/shard-00000"]
    manifest = dataset.load_manifest(tmp_path / "a")
    assert manifest["counts"] == counts
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [4, 4, 1]
    for split, count in counts.items():
        arrays = load_split(tmp_path / "a", split)
        assert arrays["audio"].shape == (count, 640)
        assert arrays["f0_hz"].shape == arrays["loudness_db"].shape == (count, 10)
    np.testing.assert_array_equal(load_split(tmp_path / "a", "train")["pitch"], np.arange(9))
    assert load_split(tmp_path / "a", "train", max_examples=5)["id"].tolist() == [f"note-{i:04d}" for i in range(5)]


def test_load_split_refuses_a_folder_without_manifest(tmp_path):
    write_synthetic_dataset(tmp_path, {"train": 2})
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json: no manifest"):
        load_split(tmp_path, "train")


def test_a_rebuild_with_fewer_examples_removes_the_old_build_s_extra_shards(tmp_path):
    write_synthetic_dataset(tmp_path, {"train": 9}, shard_size=2)
    write_synthetic_dataset(tmp_path, {"train": 3}, shard_size=2)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["shard-00000", "shard-00001"]
    assert len(load_split(tmp_path, "train")["audio"]) == 3


def test_completed_shards_stop_at_the_first_incomplete_or_foreign_shard(tmp_path):
    arrays = synthetic_split(6)
    for index in range(3):
        dataset.write_shard(tmp_path, "train", index, {k: v[2 * index : 2 * index + 2] for k, v in arrays.items()},
                            build="b1")
    assert [s["count"] for s in dataset.completed_shards(tmp_path, "train", build="b1")] == [2, 2, 2]
    assert dataset.completed_shards(tmp_path, "train", build="b2") == []
    (tmp_path / "train" / "shard-00001" / "shard.json").unlink()  # killed while writing shard 1
    assert dataset.completed_shards(tmp_path, "train", build="b1") == [{"name": "train/shard-00000", "count": 2}]


def test_load_split_rejects_unknown_split_name(tmp_path):
    write_synthetic_dataset(tmp_path, {"train": 2})
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(tmp_path, "valid")


def test_write_prepared_refuses_features_with_the_wrong_frame_count(tmp_path):
    splits = {name: synthetic_split(2) for name in dataset.SPLITS}
    splits["train"]["f0_hz"] = splits["train"]["f0_hz"][:, :9]
    with pytest.raises(DataError, match=r"f0_hz must be \(2, 10\) float32"):
        dataset.write_prepared(tmp_path, splits, {"hop_size": 64})
    assert not (tmp_path / "manifest.json").exists()


def test_write_prepared_refuses_nan_audio(tmp_path):
    splits = {name: synthetic_split(2) for name in dataset.SPLITS}
    splits["test"]["audio"][1, 5] = np.nan
    with pytest.raises(DataError, match="audio holds NaN"):
        dataset.write_prepared(tmp_path, splits, {"hop_size": 64})


def test_assign_splits_is_deterministic_disjoint_and_fills_every_split():
    keys = [f"040-{pitch:03d}" for pitch in range(55, 89)]
    splits = assign_splits(keys + keys)  # duplicates: one assignment per group
    assert splits == assign_splits(list(reversed(keys)))
    counts = {name: sum(value == name for value in splits.values()) for name in dataset.SPLITS}
    assert counts == {"train": 28, "validation": 3, "test": 3}
    assert set(splits) == set(keys)


def test_assign_splits_needs_three_groups_for_held_out_splits():
    three = assign_splits(["a", "b", "c"])
    assert sorted(three.values()) == ["test", "train", "validation"]
    assert set(assign_splits(["a", "b"]).values()) == {"train"}


def _pitches(batch):
    return batch["pitch"].tolist()


def test_batch_iterator_depends_only_on_seed_and_step_so_resume_is_exact():
    examples = synthetic_split(10)
    run = list(itertools.islice(batch_iterator(examples, 3, seed=7), 8))
    resumed = list(itertools.islice(batch_iterator(examples, 3, seed=7, start_step=5), 3))
    assert [_pitches(b) for b in run[5:]] == [_pitches(b) for b in resumed]
    other_seed = list(itertools.islice(batch_iterator(examples, 3, seed=8), 8))
    assert [_pitches(b) for b in run] != [_pitches(b) for b in other_seed]
    np.testing.assert_array_equal(run[0]["audio"], examples["audio"][run[0]["pitch"]])


def test_batch_iterator_visits_each_example_at_most_once_per_epoch_and_drops_the_remainder():
    examples = synthetic_split(10)
    batches = list(itertools.islice(batch_iterator(examples, 3, seed=0), 6))  # 3 steps per epoch, 2 epochs
    for epoch in range(2):
        seen = sum((_pitches(b) for b in batches[3 * epoch : 3 * epoch + 3]), [])
        assert len(seen) == len(set(seen)) == 9
    first, second = (sum((_pitches(b) for b in batches[3 * e : 3 * e + 3]), []) for e in range(2))
    assert first != second  # a new permutation each epoch


def test_batch_iterator_reads_the_same_batches_from_shards_as_from_memory(tmp_path):
    write_synthetic_dataset(tmp_path, {"train": 10}, shard_size=3)
    from_disk = batch_iterator(dataset.open_split(tmp_path, "train"), 3, seed=7, fields=("pitch", "audio"))
    in_memory = batch_iterator(load_split(tmp_path, "train"), 3, seed=7)
    for _ in range(5):
        disk, memory = next(from_disk), next(in_memory)
        assert sorted(disk) == ["audio", "pitch"]
        np.testing.assert_array_equal(disk["audio"], memory["audio"])
        np.testing.assert_array_equal(disk["pitch"], memory["pitch"])


def test_batch_iterator_shards_are_disjoint_and_form_the_global_batch():
    examples = synthetic_split(12)
    shards = [list(itertools.islice(batch_iterator(examples, 2, seed=3, shard_index=k, shard_count=3), 4))
              for k in range(3)]
    for step in range(4):
        union = sum((_pitches(shards[k][step]) for k in range(3)), [])
        assert len(set(union)) == 6
    single = list(itertools.islice(batch_iterator(examples, 6, seed=3), 4))
    for step in range(4):
        assert sum((_pitches(shards[k][step]) for k in range(3)), []) == _pitches(single[step])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"batch_size": 11}, "holds 10 examples, fewer than one global batch"),
        ({"batch_size": 4, "shard_count": 3}, r"fewer than one global batch of batch_size \* shard_count = 4 \* 3"),
        ({"batch_size": 2, "shard_index": 2, "shard_count": 2}, "shard_index < shard_count"),
        ({"batch_size": 2, "start_step": -1}, "start_step must be >= 0"),
    ],
)
def test_batch_iterator_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        next(batch_iterator(synthetic_split(10), seed=0, **kwargs))
