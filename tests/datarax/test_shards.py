"""Tests for ddsp_datarax/shards.py: the shard reader refuses bad shards in one line, and the batch order."""

import json
import shutil

import numpy as np
import pytest

from ddsp_datarax.shards import DataError, SplitReader, batch_rows, epoch_permutation, open_split
from tests.data._synthetic import write_synthetic_dataset


@pytest.fixture
def prepared(tmp_path):
    return write_synthetic_dataset(tmp_path / "prepared", {"train": 10, "validation": 3, "test": 0}, shard_size=4)


def test_reader_returns_the_rows_asked_for_in_order_across_shards(prepared):
    reader = open_split(prepared, "train")
    batch = reader.read(np.array([9, 0, 4, 4, 3]), ("pitch", "id", "audio"))
    assert batch["pitch"].tolist() == [9, 0, 4, 4, 3]
    assert batch["id"].tolist() == ["note-0009", "note-0000", "note-0004", "note-0004", "note-0003"]
    stored = np.load(prepared / "train" / "shard-00002" / "audio.npy", allow_pickle=False)
    np.testing.assert_array_equal(batch["audio"][0], stored[1])  # row 9 = shard 2 (rows 8, 9), second row
    assert len(reader) == 10 and reader.row_shape("f0_hz") == (10,)
    with pytest.raises(IndexError, match=r"rows must lie in \[0, 10\)"):
        reader.read([10])


def test_reader_names_a_missing_shard_file(prepared):
    (prepared / "train" / "shard-00001" / "loudness_db.npy").unlink()
    with pytest.raises(DataError, match=r"shard-00001/loudness_db\.npy: shard file missing"):
        SplitReader(prepared, "train")
    shutil.rmtree(prepared / "train" / "shard-00002")
    with pytest.raises(DataError, match=r"shard-00001/loudness_db\.npy: shard file missing"):
        SplitReader(prepared, "train")
    assert len(SplitReader(prepared, "validation")) == 3  # the other splits still read


def test_reader_names_a_truncated_shard_file(prepared):
    path = prepared / "train" / "shard-00000" / "audio.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"shard-00000/audio\.npy: truncated or padded \(\d+ bytes, the header"):
        SplitReader(prepared, "train")


def test_reader_refuses_a_shard_from_another_build(prepared, tmp_path):
    other = write_synthetic_dataset(tmp_path / "other", {"train": 11, "validation": 3}, shard_size=4)
    shutil.rmtree(prepared / "train" / "shard-00001")
    shutil.copytree(other / "train" / "shard-00001", prepared / "train" / "shard-00001")
    with pytest.raises(DataError, match=r"shard-00001: shard from another build .*run prepare again"):
        SplitReader(prepared, "train")


def test_a_dataset_prepared_by_the_single_npz_version_asks_for_prepare_again(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "counts": {"train": 4}}))
    with pytest.raises(DataError, match=r"prepared by an older version of ddsp-jax \(format 1, one \.npz per split\); "
                                        r"run `ddsp-train prepare` again"):
        open_split(tmp_path, "train")


def test_batch_rows_cover_each_epoch_once_and_split_global_batches_between_processes():
    n, per_process, processes = 23, 3, 2
    steps = n // (per_process * processes)  # 3 steps per epoch, 5 examples dropped
    for epoch in range(2):
        seen = [batch_rows(n, per_process, epoch * steps + s, seed=4, shard_index=k, shard_count=processes)
                for s in range(steps) for k in range(processes)]
        flat = np.concatenate(seen).tolist()
        assert len(flat) == len(set(flat)) == steps * per_process * processes
        order = epoch_permutation(n, seed=4, epoch=epoch)
        assert flat == order[: len(flat)].tolist()
    assert not np.array_equal(epoch_permutation(n, seed=4, epoch=0), epoch_permutation(n, seed=4, epoch=1))
    assert batch_rows(n, 3, 4, seed=4, shuffle=False).tolist() == [12, 13, 14]
    with pytest.raises(ValueError, match="holds 5 examples, fewer than one global batch"):
        batch_rows(5, 3, 0, seed=0, shard_count=2)

