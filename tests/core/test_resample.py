"""Tests for ddsp_core/resample.py: the jit-able polyphase resampler agrees with soxr between common rates."""

import functools

import jax
import numpy as np
import pytest
import soxr

from ddsp_core import resample


def _two_tones(sample_rate: int, seconds: float = 0.25) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t + 1)).astype(np.float32)


@pytest.mark.parametrize(
    ("sample_rate", "target_sample_rate"),
    [(44100, 16000), (22050, 16000), (48000, 16000), (8000, 16000), (48000, 44100), (16000, 22050)],
)
def test_resampled_tones_match_soxr_inside_jit(sample_rate, target_sample_rate):
    x = _two_tones(sample_rate)
    run = jax.jit(
        functools.partial(resample.resample, sample_rate=sample_rate, target_sample_rate=target_sample_rate)
    )
    ours = np.asarray(run(x))
    reference = soxr.resample(x, sample_rate, target_sample_rate, "VHQ")
    n_out = resample.resampled_length(x.shape[0], sample_rate=sample_rate, target_sample_rate=target_sample_rate)
    assert ours.shape == reference.shape == (n_out,)
    inner = slice(200, -200)
    assert np.abs(ours[inner] - reference[inner]).max() < 1e-4


def test_equal_rates_return_the_audio_unchanged_and_bad_rates_are_named():
    x = _two_tones(16000)
    np.testing.assert_array_equal(np.asarray(resample.resample(x, sample_rate=16000, target_sample_rate=16000)), x)
    assert resample.resampled_length(11025, sample_rate=44100, target_sample_rate=16000) == 4000
    with pytest.raises(ValueError, match="target_sample_rate must be a positive integer"):
        resample.resampled_length(100, sample_rate=16000, target_sample_rate=0)
    with pytest.raises((TypeError, ValueError), match="sample_rate"):
        resample.resample(x, sample_rate=16000.0, target_sample_rate=22050)
