"""Tests for train/data/features.py: frame counts, agreement with ddsp_core, the atomic feature cache."""

import jax
import numpy as np
import pytest

from ddsp_core import _io, crepe, spectral
from train.data import dataset, features
from train.data.dataset import DataError
from train.data.features import FeatureConfig, cached_features, compute_features

CONFIG = FeatureConfig(crepe_model="tiny", batch_size=2)


@pytest.fixture(scope="module")
def clips():
    """Three 0.5 s clips: 220 Hz and 330 Hz harmonic tones and silence, at 16 kHz."""
    t = np.arange(8000) / 16000
    tone = lambda f0: sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6))  # noqa: E731
    return np.stack([tone(220.0), tone(330.0), np.zeros_like(t)]).astype(np.float32)


@pytest.fixture(scope="module")
def clip_features(clips):
    return compute_features(clips, CONFIG)


def test_every_feature_has_n_samples_over_hop_frames(clips, clip_features):
    assert sorted(clip_features) == ["f0_confidence", "f0_hz", "loudness_db"]
    for value in clip_features.values():
        assert value.shape == (3, 8000 // 64) and value.dtype == np.float32


def test_features_equal_the_ddsp_core_functions_on_centred_frames(clips, clip_features):
    params = crepe.load_crepe_params("tiny")
    f0_hz, confidence = jax.jit(lambda a: crepe.estimate_f0(params, a, hop_size=64))(clips[1])
    loudness = spectral.compute_loudness(clips[1], sample_rate=16000, frame_rate=250, n_fft=2048)
    np.testing.assert_allclose(clip_features["f0_hz"][1], np.asarray(f0_hz)[:125], rtol=1e-4)
    np.testing.assert_allclose(clip_features["f0_confidence"][1], np.asarray(confidence)[:125], atol=1e-5)
    np.testing.assert_allclose(clip_features["loudness_db"][1], np.asarray(loudness)[:125], atol=1e-3)


def test_tones_get_their_pitch_and_silence_gets_low_confidence_and_floor_loudness(clip_features):
    middle = slice(20, 105)
    for row, f0 in ((0, 220.0), (1, 330.0)):
        cents = 1200 * np.log2(np.median(clip_features["f0_hz"][row, middle]) / f0)
        assert abs(cents) < 20
        assert np.median(clip_features["f0_confidence"][row, middle]) > 0.7
    assert np.max(clip_features["f0_confidence"][2]) < 0.2
    np.testing.assert_allclose(clip_features["loudness_db"][2], -80.0)


def test_batching_does_not_change_the_features(clips, clip_features):
    one_at_a_time = compute_features(clips, FeatureConfig(crepe_model="tiny", batch_size=1))
    for name, value in clip_features.items():  # float32 rounding only: a batch of 1 changes the matmul shapes
        np.testing.assert_allclose(one_at_a_time[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


def test_loudness_only_skips_crepe(clips, clip_features):
    only = compute_features(clips, CONFIG, include_f0=False)
    assert sorted(only) == ["loudness_db"]
    np.testing.assert_array_equal(only["loudness_db"], clip_features["loudness_db"])


def test_nan_audio_is_refused_naming_the_rows(clips):
    bad = clips.copy()
    bad[1, 10] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1\] hold NaN"):
        compute_features(bad, CONFIG)


def test_cache_is_written_once_then_read_back(clips, clip_features, tmp_path, monkeypatch):
    first = cached_features(clips, CONFIG, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("features-") and files[0].suffix == ".npz"

    def no_compute(*args, **kwargs):
        raise AssertionError("features were recomputed despite a cache entry")

    monkeypatch.setattr(features, "compute_features", no_compute)
    second = cached_features(clips, CONFIG, cache_dir=tmp_path)
    for name in first:
        np.testing.assert_array_equal(second[name], first[name])
        np.testing.assert_array_equal(second[name], clip_features[name])


def test_cache_key_changes_with_audio_and_extractor_config_but_not_batching(clips):
    key = features.cache_key(clips, CONFIG)
    assert features.cache_key(clips, FeatureConfig(crepe_model="tiny", batch_size=7, chunk_frames=32)) == key
    assert features.cache_key(clips, FeatureConfig(crepe_model="full")) != key
    assert features.cache_key(clips, FeatureConfig(crepe_model="tiny", loudness_n_fft=512)) != key
    assert features.cache_key(clips[:2], CONFIG) != key
    assert features.cache_key(clips, CONFIG, include_f0=False) != key


def test_an_unreadable_cache_file_is_an_error_naming_it(clips, tmp_path):
    path = tmp_path / f"features-{features.cache_key(clips, CONFIG)}.npz"
    path.write_bytes(b"PK\x03\x04 this is not a complete zip archive")
    with pytest.raises(DataError, match=rf"{path.name}: not a readable \.npz archive"):
        cached_features(clips, CONFIG, cache_dir=tmp_path)


def test_a_cache_file_with_wrong_shapes_is_an_error_naming_it(clips, tmp_path):
    path = tmp_path / f"features-{features.cache_key(clips, CONFIG)}.npz"
    dataset.save_npz_atomic(path, {"f0_hz": np.zeros((3, 7), np.float32)})
    with pytest.raises(DataError, match=rf"{path.name}: feature cache does not hold f0_hz as \(3, 125\) float32"):
        cached_features(clips, CONFIG, cache_dir=tmp_path)


def test_an_interrupted_cache_write_leaves_no_entry_and_the_next_run_recomputes(
    clips, clip_features, tmp_path, monkeypatch
):
    monkeypatch.setattr(features, "compute_features", lambda *args, **kwargs: clip_features)
    real_replace = _io.os.replace

    def killed_before_rename(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(_io.os, "replace", killed_before_rename)
    with pytest.raises(KeyboardInterrupt):
        cached_features(clips, CONFIG, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no entry, no temporary file
    monkeypatch.setattr(_io.os, "replace", real_replace)
    recomputed = cached_features(clips, CONFIG, cache_dir=tmp_path)
    assert recomputed["f0_hz"].shape == (3, 125)
    assert len(list(tmp_path.glob("features-*.npz"))) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crepe_model": "medium"}, "crepe_model must be 'tiny' or 'full'"),
        ({"sample_rate": 22050}, "sample_rate must be 16000"),
        ({"hop_size": 0}, "hop_size must be a positive integer"),
        ({"hop_size": 60}, "hop_size must divide sample_rate"),
    ],
)
def test_feature_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**kwargs)
