"""Block-by-block forms of the DSP (ddsp_core.stream) against the offline renders they stream."""

import functools

import jax
import numpy as np
import pytest

from ddsp_core import stream
from ddsp_core.effects import reverb
from ddsp_core.noise import filtered_noise
from ddsp_core.synths import harmonic_synthesis, sinusoidal_synthesis, wavetable_synthesis
from tests.helpers import assert_close_relative

SAMPLE_RATE = 16000
HOP = 64
N_FRAMES = 48
REL_TOL = 1e-5
BLOCKINGS = {"1 hop": [1] * N_FRAMES, "4 hops": [4] * 12, "16 hops": [16] * 3, "uneven": [3, 1, 7, 3, 16, 1, 7, 3, 7]}


def _blocks(sizes: list[int], *arrays: np.ndarray):
    """Cut frame-rate arrays into consecutive blocks of the given numbers of frames."""
    assert sum(sizes) == arrays[0].shape[0]
    start = 0
    for size in sizes:
        yield tuple(array[start : start + size] for array in arrays)
        start += size


def _stream(step, state, sizes: list[int], *arrays: np.ndarray) -> np.ndarray:
    """Run a jitted block step over the blocks and concatenate the outputs."""
    step = jax.jit(step)
    outputs = []
    for block in _blocks(sizes, *arrays):
        state, out = step(state, *block)
        outputs.append(np.asarray(out))
    return np.concatenate(outputs)


def _with_last_frame_repeated(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Append the last frame once more: it flushes the oscillators' last hop (the offline render holds it)."""
    return tuple(np.concatenate([a, a[-1:]]) for a in arrays)


def _gliding_f0_hz(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    return (220.0 * 2.0 ** np.cumsum(rng.normal(0.0, 0.05, n_frames))).astype(np.float32)


@pytest.fixture(scope="module")
def harmonic_controls_fixture():
    rng = np.random.default_rng(0)
    amplitudes = rng.uniform(0.1, 1.0, N_FRAMES).astype(np.float32)
    distribution = rng.uniform(0.0, 1.0, (N_FRAMES, 30)).astype(np.float32)
    distribution /= distribution.sum(axis=1, keepdims=True)
    return amplitudes, distribution, _gliding_f0_hz(rng, N_FRAMES)


@pytest.mark.parametrize("amp_resample", ["window", "linear"])
@pytest.mark.parametrize("blocking", list(BLOCKINGS))
def test_harmonic_blocks_equal_offline_render_delayed_one_hop(harmonic_controls_fixture, blocking, amp_resample):
    amplitudes, distribution, f0_hz = harmonic_controls_fixture
    offline = harmonic_synthesis(
        amplitudes, distribution, f0_hz, n_samples=N_FRAMES * HOP, sample_rate=SAMPLE_RATE, amp_resample=amp_resample
    )
    step = functools.partial(stream.harmonic_block, sample_rate=SAMPLE_RATE, hop_size=HOP, amp_resample=amp_resample)
    sizes = BLOCKINGS[blocking] + [1]
    controls = _with_last_frame_repeated(amplitudes, distribution, f0_hz)
    streamed = _stream(step, stream.harmonic_init(30), sizes, *controls)
    np.testing.assert_array_equal(streamed[:HOP], 0.0)
    assert_close_relative(streamed[HOP:], offline, REL_TOL)


def test_harmonic_phase_stays_exact_over_many_one_hop_blocks():
    """20 s of a 1234.5 Hz tone with 8 harmonics, one hop per block: the carried phase does not drift."""
    n_frames = 5000
    f0_hz = np.full(n_frames, 1234.5, np.float32)
    amplitudes = np.ones(n_frames, np.float32)
    distribution = np.full((n_frames, 8), 1 / 8, np.float32)
    offline = harmonic_synthesis(amplitudes, distribution, f0_hz, n_samples=n_frames * HOP, sample_rate=SAMPLE_RATE)

    def one_hop(state, frame):
        return stream.harmonic_block(state, *(x[None] for x in frame), sample_rate=SAMPLE_RATE, hop_size=HOP)

    _, hops = jax.jit(lambda s, xs: jax.lax.scan(one_hop, s, xs))(
        stream.harmonic_init(8), _with_last_frame_repeated(amplitudes, distribution, f0_hz)
    )
    assert_close_relative(np.asarray(hops).reshape(-1)[HOP:], offline, REL_TOL)


@pytest.mark.parametrize("blocking", list(BLOCKINGS))
def test_sinusoidal_blocks_equal_offline_render_delayed_one_hop(blocking):
    rng = np.random.default_rng(1)
    amplitudes = rng.uniform(0.0, 0.3, (N_FRAMES, 5)).astype(np.float32)
    frequencies_hz = np.stack([_gliding_f0_hz(rng, N_FRAMES) * (i + 1) for i in range(5)], axis=1)
    frequencies_hz[:, 4] = 9000.0  # above Nyquist: silent in both
    offline = sinusoidal_synthesis(amplitudes, frequencies_hz, n_samples=N_FRAMES * HOP, sample_rate=SAMPLE_RATE)
    step = functools.partial(stream.sinusoidal_block, sample_rate=SAMPLE_RATE, hop_size=HOP)
    sizes = BLOCKINGS[blocking] + [1]
    streamed = _stream(step, stream.sinusoidal_init(5), sizes, *_with_last_frame_repeated(amplitudes, frequencies_hz))
    np.testing.assert_array_equal(streamed[:HOP], 0.0)
    assert_close_relative(streamed[HOP:], offline, REL_TOL)


@pytest.mark.parametrize("blocking", list(BLOCKINGS))
def test_wavetable_blocks_equal_offline_render_delayed_one_hop(blocking):
    rng = np.random.default_rng(2)
    amplitudes = rng.uniform(0.1, 1.0, N_FRAMES).astype(np.float32)
    wavetables = rng.uniform(-1.0, 1.0, (N_FRAMES, 32)).astype(np.float32)
    f0_hz = _gliding_f0_hz(rng, N_FRAMES)
    offline = wavetable_synthesis(amplitudes, wavetables, f0_hz, n_samples=N_FRAMES * HOP, sample_rate=SAMPLE_RATE)
    step = functools.partial(stream.wavetable_block, sample_rate=SAMPLE_RATE, hop_size=HOP)
    sizes = BLOCKINGS[blocking] + [1]
    controls = _with_last_frame_repeated(amplitudes, wavetables, f0_hz)
    streamed = _stream(step, stream.wavetable_init(32), sizes, *controls)
    np.testing.assert_array_equal(streamed[:HOP], 0.0)
    assert_close_relative(streamed[HOP:], offline, REL_TOL)


def _with_bad_frequencies(frequencies_hz: np.ndarray) -> np.ndarray:
    """Frames 5-8 NaN, frames 20-22 negative: as offline, the block forms must take them as 0 Hz."""
    frequencies_hz = frequencies_hz.copy()
    frequencies_hz[5:9] = np.nan
    frequencies_hz[20:23] = -300.0
    return frequencies_hz


@pytest.mark.parametrize("oscillator", ["harmonic", "sinusoidal", "wavetable"])
def test_nan_and_negative_frequencies_stream_as_0_hz_like_offline(oscillator):
    rng = np.random.default_rng(3)
    amplitudes = rng.uniform(0.1, 1.0, N_FRAMES).astype(np.float32)
    f0_hz = _with_bad_frequencies(_gliding_f0_hz(rng, N_FRAMES))
    if oscillator == "harmonic":
        controls = (amplitudes, np.full((N_FRAMES, 8), 1 / 8, np.float32), f0_hz)
        offline, state = harmonic_synthesis, stream.harmonic_init(8)
    elif oscillator == "sinusoidal":
        controls = (np.repeat(amplitudes[:, None], 3, axis=1) / 3, f0_hz[:, None] * np.arange(1, 4, dtype=np.float32))
        offline, state = sinusoidal_synthesis, stream.sinusoidal_init(3)
    else:
        controls = (amplitudes, rng.uniform(-1.0, 1.0, (N_FRAMES, 16)).astype(np.float32), f0_hz)
        offline, state = wavetable_synthesis, stream.wavetable_init(16)
    expected = offline(*controls, n_samples=N_FRAMES * HOP, sample_rate=SAMPLE_RATE)
    step = functools.partial(getattr(stream, f"{oscillator}_block"), sample_rate=SAMPLE_RATE, hop_size=HOP)
    streamed = _stream(step, state, BLOCKINGS["uneven"] + [1], *_with_last_frame_repeated(*controls))
    assert np.all(np.isfinite(streamed)) and np.all(np.isfinite(expected))
    assert_close_relative(streamed[HOP:], expected, REL_TOL)


@pytest.mark.parametrize(
    ("blocking", "latency", "n_bands", "window_size"),
    [(blocking, "one hop", 65, 257) for blocking in BLOCKINGS]
    + [("uneven", "lookahead", 65, 257), ("uneven", "lookahead", 33, 31), ("4 hops", "one hop", 33, 0)],
)
def test_filtered_noise_blocks_equal_offline_render_delayed(blocking, latency, n_bands, window_size):
    """Same key, same noise (per-frame fold_in in both paths); filter tails carried across blocks. The first
    ``latency - lookahead`` samples are silence; the filters' pre-ringing that the offline render crops follows."""
    magnitudes = np.random.default_rng(3).uniform(0.0, 1.0, (N_FRAMES, n_bands)).astype(np.float32)
    key = jax.random.key(7)
    offline = filtered_noise(magnitudes, n_samples=N_FRAMES * HOP, window_size=window_size, key=key)
    lookahead = stream.filtered_noise_lookahead(n_bands, window_size=window_size)
    latency_samples = lookahead if latency == "lookahead" else HOP
    state = stream.filtered_noise_init(n_bands, window_size=window_size, latency_samples=latency_samples)
    step = functools.partial(stream.filtered_noise_block, hop_size=HOP, window_size=window_size, key=key)
    streamed = _stream(step, state, BLOCKINGS[blocking], magnitudes)
    np.testing.assert_array_equal(streamed[: latency_samples - lookahead], 0.0)
    assert_close_relative(streamed[latency_samples:], offline[: N_FRAMES * HOP - latency_samples], REL_TOL)


def test_filtered_noise_latency_shorter_than_lookahead_is_refused():
    with pytest.raises(ValueError, match="at least the noise filters' lookahead of 62 samples"):
        stream.filtered_noise_init(65, latency_samples=61)


@pytest.mark.parametrize(
    ("blocking", "ir_length"), [(blocking, 1000) for blocking in BLOCKINGS] + [("uneven", 40), ("uneven", 64)]
)
def test_partitioned_reverb_blocks_equal_offline_reverb(blocking, ir_length):
    rng = np.random.default_rng(4)
    audio = rng.uniform(-1.0, 1.0, N_FRAMES * HOP).astype(np.float32)
    impulse_response = (rng.normal(0.0, 1.0, ir_length) * np.exp(-np.arange(ir_length) / 200.0)).astype(np.float32)
    offline = reverb(audio, impulse_response)

    def step(state, hops):
        return stream.reverb_block(state, hops.reshape(-1), impulse_response, hop_size=HOP)

    sizes = BLOCKINGS[blocking]
    streamed = _stream(step, stream.reverb_init(ir_length, hop_size=HOP), sizes, audio.reshape(N_FRAMES, HOP))
    assert_close_relative(streamed, offline, REL_TOL)


def test_delay_line_delays_across_blocks():
    audio = np.arange(1.0, 41.0, dtype=np.float32)
    state, outputs = stream.delay_init(7), []
    for block in np.split(audio, [3, 4, 20, 33]):
        state, out = stream.delay_block(state, block)
        outputs.append(np.asarray(out))
    np.testing.assert_array_equal(np.concatenate(outputs), np.concatenate([np.zeros(7), audio[:-7]]))
