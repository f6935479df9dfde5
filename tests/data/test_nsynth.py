"""Tests for train/data/nsynth.py: NSynth through tfds mock data and through raw TFRecords in NSynth's schema."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.data._synthetic import folder_bytes
from train.data import _build, features
from train.data.dataset import ARRAY_FIELDS, SPLITS, DataError, load_manifest, load_split
from train.data.nsynth import iter_tfrecords, prepare_nsynth, prepare_nsynth_tfrecords

_QUALITIES = ["bright", "dark", "distortion", "fast_decay", "long_release", "multiphonic", "nonlinear_env",
              "percussive", "reverb", "tempo-synced"]
_FAMILIES = ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead",
             "vocal"]


def _assert_prepared_format(path, expected_counts):
    """The fields, dtypes and shapes of the offline set (4 s at 16 kHz, 1000 frames), per split."""
    manifest = load_manifest(path)
    assert manifest["counts"] == expected_counts
    assert (manifest["sample_rate"], manifest["n_samples"], manifest["n_frames"]) == (16000, 64000, 1000)
    for split in SPLITS:
        arrays = load_split(path, split)
        n = expected_counts[split]
        assert sorted(arrays) == sorted(ARRAY_FIELDS)
        assert arrays["audio"].shape == (n, 64000) and arrays["audio"].dtype == np.float32
        for name in ("f0_hz", "f0_confidence", "loudness_db"):
            assert arrays[name].shape == (n, 1000) and arrays[name].dtype == np.float32
        for name in ("pitch", "velocity"):
            assert arrays[name].shape == (n,) and arrays[name].dtype == np.int32
        for name in ("instrument", "family", "id"):
            assert arrays[name].shape == (n,) and arrays[name].dtype.kind == "U"


def _mock(num_examples):
    return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


def test_tfds_f0_and_loudness_config_gives_the_offline_fields_with_tfds_f0(tmp_path):
    with _mock(3):
        out = prepare_nsynth("gansynth_subset.f0_and_loudness", tmp_path / "nsynth", crepe_model="tiny",
                             split_sizes={"train": 3, "validation": 2, "test": 1}, progress=False)
        source = next(iter(tfds.as_numpy(tfds.load("nsynth/gansynth_subset.f0_and_loudness", split="train[:1]"))))
    _assert_prepared_format(out, {"train": 3, "validation": 2, "test": 1})
    train = load_split(out, "train")
    assert train["id"][0] == source["id"].decode()
    np.testing.assert_array_equal(train["f0_hz"][0], source["f0"]["hz"])  # f0 from tfds, not recomputed
    np.testing.assert_array_equal(train["audio"][0], source["audio"])
    assert train["family"][0] == _FAMILIES[source["instrument"]["family"]]
    assert not np.allclose(train["loudness_db"][0], source["loudness"]["db"])  # loudness is always ours


def test_tfds_config_without_f0_runs_crepe(tmp_path):
    with _mock(1):
        out = prepare_nsynth("gansynth_subset", tmp_path / "nsynth", crepe_model="tiny",
                             split_sizes={"train": 1, "validation": 0, "test": 0}, progress=False)
    _assert_prepared_format(out, {"train": 1, "validation": 0, "test": 0})
    train = load_split(out, "train")
    assert np.all((train["f0_hz"] > 30) & (train["f0_hz"] < 2000))
    assert np.all((train["f0_confidence"] >= 0) & (train["f0_confidence"] <= 1))


def test_a_tfds_dataset_that_is_not_prepared_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(DataError, match=r"nodata: nsynth/full is not prepared there"):
        prepare_nsynth("full", tmp_path / "out", data_dir=tmp_path / "nodata", progress=False)
    with pytest.raises(ValueError, match="config_name must be one of"):
        prepare_nsynth("gansynth", tmp_path / "out", progress=False)


def _nsynth_example(note_id, pitch, velocity, family_index, audio, sample_rate=16000):
    """One tf.train.Example with the features of the NSynth TFRecord release (magenta.tensorflow.org/datasets/nsynth)."""
    family = _FAMILIES[family_index]
    instrument_str = f"{family}_acoustic_{pitch % 7:03d}"

    def ints(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def strings(*values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))

    features = {
        "note": ints(pitch * 1000 + velocity),
        "note_str": strings(note_id),
        "instrument": ints(pitch % 7),
        "instrument_str": strings(instrument_str),
        "pitch": ints(pitch),
        "velocity": ints(velocity),
        "sample_rate": ints(sample_rate),
        "audio": tf.train.Feature(float_list=tf.train.FloatList(value=audio.tolist())),
        "qualities": ints(*[0] * len(_QUALITIES)),
        "qualities_str": strings(),
        "instrument_family": ints(family_index),
        "instrument_family_str": strings(family),
        "instrument_source": ints(0),
        "instrument_source_str": strings("acoustic"),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _sine(pitch, n_samples=64000):
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    return (0.5 * np.sin(2 * np.pi * f0 * np.arange(n_samples) / 16000)).astype(np.float32)


def _write_tfrecord(path, notes):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for note in notes:
            writer.write(_nsynth_example(*note))
    return path


def test_raw_nsynth_tfrecords_give_the_offline_fields_and_keep_the_metadata(tmp_path, monkeypatch):
    train = _write_tfrecord(tmp_path / "nsynth-train.tfrecord", [
        ("string_acoustic_001-060-100", 60, 100, 8, _sine(60)),
        ("brass_acoustic_002-067-075", 67, 75, 1, _sine(67)),
    ])
    test = _write_tfrecord(tmp_path / "nsynth-test.tfrecord", [("flute_acoustic_003-072-050", 72, 50, 2, _sine(72))])
    notes = list(iter_tfrecords([train]))
    assert [n["id"] for n in notes] == ["string_acoustic_001-060-100", "brass_acoustic_002-067-075"]
    assert [(n["pitch"], n["velocity"], n["family"]) for n in notes] == [(60, 100, "string"), (67, 75, "brass")]
    np.testing.assert_array_equal(notes[1]["audio"], _sine(67))

    real = features.compute_features

    def loudness_and_zero_f0(audio, config, **kwargs):  # CREPE itself is tested in test_features/test_offline
        zeros = np.zeros((len(audio), 1000), np.float32)
        return real(audio, config, include_f0=False) | {"f0_hz": zeros, "f0_confidence": zeros}

    monkeypatch.setattr(features, "compute_features", loudness_and_zero_f0)
    out = prepare_nsynth_tfrecords({"train": [train], "test": [test]}, tmp_path / "raw", crepe_model="tiny",
                                   progress=False)
    _assert_prepared_format(out, {"train": 2, "validation": 0, "test": 1})
    assert load_split(out, "test")["instrument"].tolist() == ["flute_acoustic_002"]


def test_a_record_with_the_wrong_length_or_a_corrupt_file_is_an_error_naming_it(tmp_path):
    bad = _write_tfrecord(tmp_path / "short.tfrecord", [("x-060-100", 60, 100, 0, _sine(60, n_samples=16000))])
    with pytest.raises(DataError, match=r"short\.tfrecord record 0: expected 64000 samples at 16000 Hz, got 16000"):
        list(iter_tfrecords([bad]))
    good = _write_tfrecord(tmp_path / "good.tfrecord", [("x-060-100", 60, 100, 0, _sine(60))])
    (tmp_path / "cut.tfrecord").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"cut\.tfrecord: not a readable TFRecord"):
        list(iter_tfrecords([tmp_path / "cut.tfrecord"]))
    with pytest.raises(DataError, match=r"absent\.tfrecord: file not found"):
        list(iter_tfrecords([tmp_path / "absent.tfrecord"]))


def test_an_interrupted_build_resumes_from_its_last_complete_shard_and_ends_byte_identical(tmp_path, monkeypatch):
    sizes = {"train": 7, "validation": 2, "test": 1}
    with _mock(7):
        straight = prepare_nsynth("gansynth_subset.f0_and_loudness", tmp_path / "straight", split_sizes=sizes,
                                  progress=False, shard_size=2)
        real_write, written = _build.write_shard, []

        def write_then_die(out_dir, split, index, arrays, **kwargs):
            if len(written) == 2:
                raise KeyboardInterrupt  # killed while the third shard is being written
            written.append((split, index))
            return real_write(out_dir, split, index, arrays, **kwargs)

        monkeypatch.setattr(_build, "write_shard", write_then_die)
        with pytest.raises(KeyboardInterrupt):
            prepare_nsynth("gansynth_subset.f0_and_loudness", tmp_path / "resumed", split_sizes=sizes,
                           progress=False, shard_size=2)
        assert not (tmp_path / "resumed" / "manifest.json").exists()
        with pytest.raises(DataError, match="no manifest"):
            load_split(tmp_path / "resumed", "train")
        monkeypatch.setattr(_build, "write_shard", lambda *a, **k: written.append(a[1:3]) or real_write(*a, **k))
        resumed = prepare_nsynth("gansynth_subset.f0_and_loudness", tmp_path / "resumed", split_sizes=sizes,
                                 progress=False, shard_size=2)
    assert written == [("train", 0), ("train", 1), ("train", 2), ("train", 3), ("validation", 0), ("test", 0)]
    assert folder_bytes(resumed) == folder_bytes(straight)
    assert [s["count"] for s in load_manifest(resumed)["splits"]["train"]["shards"]] == [2, 2, 2, 1]


def test_the_nsynth_preset_prepares_and_trains_end_to_end_on_a_mock_with_many_shards(tmp_path):
    from train.cli import main

    dataset, run_dir = tmp_path / "nsynth", tmp_path / "run"
    budget = ["train.batch_size=2", "train.n_steps=2", "train.eval_examples=2", "train.crop_samples=8000",
              "train.checkpoint_every=2", "train.log_every=1"]
    with _mock(5):  # 5 notes per split in shards of 2: 9 shards
        prepare_nsynth("gansynth_subset.f0_and_loudness", dataset, shard_size=2, progress=False)
        arguments = ["fit", "--preset", "nsynth", "--set", f"data.dataset_dir={dataset}", "--set", f"run_dir={run_dir}"]
        assert main([*arguments, *[item for override in budget for item in ("--set", override)]]) == 0
    manifest = load_manifest(dataset)
    assert {split: [s["count"] for s in manifest["splits"][split]["shards"]] for split in SPLITS} == {
        split: [2, 2, 1] for split in SPLITS}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in records)
    processors = json.loads((run_dir / "config.json").read_text())["model"]["processors"]
    assert [p["n_harmonics"] for p in processors if p["type"] == "harmonic"] == [100]  # the paper's model
    assert (run_dir / "checkpoints" / "2").is_dir()
