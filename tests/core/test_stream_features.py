"""Block-by-block loudness and CREPE f0 (ddsp_core.stream_features) against the offline, centred analyses."""

import functools

import jax
import numpy as np
import pytest

from ddsp_core import stream_features
from ddsp_core.crepe import estimate_f0, load_crepe_params
from ddsp_core.spectral import compute_loudness
from tests.helpers import assert_close_relative

SAMPLE_RATE = 16000
HOP = 64
N_FRAMES = 48
BLOCKINGS = {"1 hop": [1] * N_FRAMES, "4 hops": [4] * 12, "16 hops": [16] * 3, "uneven": [3, 1, 7, 3, 16, 1, 7, 3, 7]}


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    """A gliding tone that swells, with a little noise: 48 hops."""
    rng = np.random.default_rng(0)
    t = np.arange(N_FRAMES * HOP) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * (300.0 * t + 400.0 * t**2)) * np.linspace(0.05, 0.8, t.size)
    return (tone + 0.01 * rng.normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def crepe_params():
    return load_crepe_params("tiny")


def _stream_features(audio, sizes, *, lookahead_samples, crepe_params):
    state = stream_features.features_init(
        hop_size=HOP, lookahead_samples=lookahead_samples, with_f0=crepe_params is not None
    )
    step = jax.jit(
        functools.partial(stream_features.features_block, sample_rate=SAMPLE_RATE, hop_size=HOP),
        static_argnames=(),
    )
    frames, start = [], 0
    for size in sizes:
        state, features = step(state, audio[start : start + size * HOP], crepe_params=crepe_params)
        frames.append({name: np.asarray(value) for name, value in features.items()})
        start += size * HOP
    return {name: np.concatenate([f[name] for f in frames]) for name in frames[0]}


@pytest.mark.parametrize("blocking", list(BLOCKINGS))
def test_exact_streamed_loudness_equals_offline_centred_loudness_delayed(audio, blocking):
    streamed = _stream_features(audio, BLOCKINGS[blocking], lookahead_samples=1024, crepe_params=None)
    offline = compute_loudness(audio, sample_rate=SAMPLE_RATE, frame_rate=SAMPLE_RATE // HOP)  # centred
    delay = stream_features.features_delay_frames(1024, HOP)
    assert delay == 15
    np.testing.assert_allclose(streamed["loudness_db"][delay:], offline[: N_FRAMES - delay], rtol=0, atol=1e-3)


@pytest.mark.parametrize("blocking", ["4 hops", "uneven"])
def test_exact_streamed_crepe_equals_offline_local_average_f0_aligned_with_loudness(audio, crepe_params, blocking):
    streamed = _stream_features(audio, BLOCKINGS[blocking], lookahead_samples=1024, crepe_params=crepe_params)
    f0_hz, confidence = estimate_f0(crepe_params, audio, hop_size=HOP, padding="center", decoder="local_average")
    delay = 15
    assert_close_relative(streamed["f0_hz"][delay:], f0_hz[: N_FRAMES - delay], 1e-5)
    assert_close_relative(streamed["f0_confidence"][delay:], confidence[: N_FRAMES - delay], 1e-4)


def test_lowest_latency_features_are_centred_analyses_of_earlier_points(audio, crepe_params):
    """Lookahead one hop: no delay; frame j holds the windows ending with hop j, i.e. the offline loudness of
    frame j - 15 and the offline f0 of frame j - 7 (each window centred half a window earlier)."""
    streamed = _stream_features(audio, BLOCKINGS["4 hops"], lookahead_samples=HOP, crepe_params=crepe_params)
    assert stream_features.features_delay_frames(HOP, HOP) == 0
    loudness = compute_loudness(audio, sample_rate=SAMPLE_RATE, frame_rate=SAMPLE_RATE // HOP)
    f0_hz, _ = estimate_f0(crepe_params, audio, hop_size=HOP, padding="center", decoder="local_average")
    np.testing.assert_allclose(streamed["loudness_db"][15:], loudness[: N_FRAMES - 15], rtol=0, atol=1e-3)
    assert_close_relative(streamed["f0_hz"][7:], f0_hz[: N_FRAMES - 7], 1e-5)


@pytest.mark.parametrize("lookahead_samples", [0, 100, 1088])
def test_lookahead_must_be_whole_hops_up_to_exact(lookahead_samples):
    with pytest.raises(ValueError, match=r"lookahead_samples must be a whole number of hops \(64 samples\) from 64"):
        stream_features.features_init(hop_size=HOP, lookahead_samples=lookahead_samples)


def test_streaming_f0_refuses_other_sample_rates(crepe_params):
    state = stream_features.features_init(hop_size=HOP, lookahead_samples=1024)
    with pytest.raises(ValueError, match="streaming f0 needs 16000 Hz audio"):
        stream_features.features_block(
            state, np.zeros(HOP, np.float32), crepe_params=crepe_params, sample_rate=22050, hop_size=HOP
        )
