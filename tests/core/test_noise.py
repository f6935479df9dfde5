"""Tests for ddsp_core/noise.py: frequency-sampled FIR design, frame-wise filtering, filtered noise."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import signal

from ddsp_core.noise import filtered_noise, filtered_noise_controls, frequency_filter, frequency_impulse_response
from tests.helpers import assert_close_relative, load_fixture

REL_TOL = 1e-5
"""Max |ours - magenta| relative to max |magenta|: float32 FFTs on both sides (measured <= 2e-7)."""

SAMPLE_RATE = 16000


# Jitted once per static configuration: eager dispatch compiles every primitive separately and is slow on CI.
_filtered_noise = jax.jit(filtered_noise, static_argnames=("n_samples", "window_size"))
_frequency_filter = jax.jit(frequency_filter, static_argnames=("window_size",))
_frequency_impulse_response = jax.jit(frequency_impulse_response, static_argnames=("window_size",))


@pytest.fixture(scope="module")
def magenta_noise() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return load_fixture("magenta", "noise_in"), load_fixture("magenta", "noise_out")


def _welch_psd(audio: np.ndarray, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided power spectral density (per Hz) at SAMPLE_RATE, Hann segments, no detrending."""
    return signal.welch(audio, fs=SAMPLE_RATE, nperseg=nperseg, detrend=False)


@pytest.mark.parametrize(("key", "window_size"), [("impulse_response", None), ("impulse_response_ws0", 0)])
def test_frequency_impulse_response_matches_magenta(magenta_noise, key, window_size):
    inputs, outputs = magenta_noise
    window_size = int(inputs["window_size"]) if window_size is None else window_size
    ours = jax.vmap(lambda m: _frequency_impulse_response(m, window_size=window_size))(inputs["magnitudes"])
    assert_close_relative(ours, outputs[key], REL_TOL)


@pytest.mark.parametrize(("key", "window_size"), [("filtered", None), ("filtered_ws0", 0)])
def test_frequency_filter_matches_magenta(magenta_noise, key, window_size):
    inputs, outputs = magenta_noise
    window_size = int(inputs["window_size"]) if window_size is None else window_size
    ours = jax.vmap(lambda a, m: _frequency_filter(a, m, window_size=window_size))(
        outputs["audio"], inputs["magnitudes"]
    )
    assert_close_relative(ours, outputs[key], REL_TOL)


def test_magenta_noise_input_through_frequency_filter_reproduces_filtered_noise(magenta_noise):
    inputs, outputs = magenta_noise
    assert outputs["noise_input"].min() >= -1.0 and outputs["noise_input"].max() < 1.0
    ours = jax.vmap(lambda a, m: _frequency_filter(a, m, window_size=int(inputs["window_size"])))(
        outputs["noise_input"], inputs["magnitudes"]
    )
    assert_close_relative(ours, outputs["noise_audio"], REL_TOL)


def test_impulse_response_with_full_window_is_linear_phase():
    magnitudes = np.random.default_rng(0).uniform(0.0, 1.0, (3, 33)).astype(np.float32)
    ir = np.asarray(_frequency_impulse_response(magnitudes, window_size=0))
    assert ir.shape == (3, 64)
    centre = 32  # fftshift puts time 0 at n_fft // 2; taps 1..63 mirror around it
    np.testing.assert_allclose(ir[:, centre + 1 :], ir[:, centre - 1 : 0 : -1], atol=1e-6)


def test_odd_short_window_matches_magenta_whose_hann_window_is_symmetric_for_odd_sizes():
    """tf.signal.hann_window(N, periodic=True) is symmetric for odd N; the fixture has N = 65 < 128 filter taps."""
    inputs, outputs = load_fixture("magenta", "noise_odd_window_in"), load_fixture("magenta", "noise_odd_window_out")
    assert int(inputs["window_size"]) == 65
    ours = jax.vmap(lambda m: _frequency_impulse_response(m, window_size=65))(inputs["magnitudes"])
    assert_close_relative(ours, outputs["impulse_response"], REL_TOL)
    filtered = jax.vmap(lambda a, m: _frequency_filter(a, m, window_size=65))(outputs["audio"], inputs["magnitudes"])
    assert_close_relative(filtered, outputs["filtered"], REL_TOL)


@pytest.mark.parametrize(("window_size", "ir_size"), [(65, 65), (64, 63), (31, 31)])
def test_short_window_crops_impulse_response_and_flat_response_passes_audio_unchanged(window_size, ir_size):
    """A flat response is a delta at time 0; the Hann window scales it by its value there, hann[(ws + 1) // 2]
    (tf.signal's window: periodic for even sizes, symmetric for odd ones)."""
    magnitudes = np.ones((4, 65), np.float32)
    assert _frequency_impulse_response(magnitudes, window_size=window_size).shape == (4, ir_size)
    audio = np.random.default_rng(1).uniform(-1, 1, 64).astype(np.float32)
    half_idx = (window_size + 1) // 2
    period = window_size if window_size % 2 == 0 else window_size - 1
    window_at_time_zero = 0.5 - 0.5 * math.cos(2.0 * math.pi * half_idx / period)
    ours = _frequency_filter(audio, magnitudes, window_size=window_size)
    np.testing.assert_allclose(ours, window_at_time_zero * audio, atol=1e-5)


def test_flat_response_with_full_window_delays_audio_two_samples_like_magenta():
    """Magenta crops (ir_size - 1) // 2 - 1 = 62 samples but the 128-tap filter's centre is at 64."""
    audio = np.random.default_rng(2).uniform(-1, 1, 64).astype(np.float32)
    ours = _frequency_filter(audio, np.ones((4, 65), np.float32), window_size=0)
    np.testing.assert_allclose(ours, np.concatenate([np.zeros(2), audio[:-2]]), atol=1e-5)


def test_low_pass_leaves_no_energy_above_cutoff_beyond_hann_leakage():
    """Bands 0..16 (0-2 kHz) pass, the rest stop. The 128-tap Hann window's main lobe is 2 bins (250 Hz) wide on
    each side, so the response may only roll off between 2000 and 2250 Hz; above that only the window's side lobes
    leak, all below its first side lobe (-31.5 dB). Measured: -39.7 dB for the filter, -54 dB of noise power."""
    magnitudes = np.zeros((512, 65), np.float32)
    magnitudes[:, :17] = 1.0
    ir = np.asarray(_frequency_impulse_response(magnitudes[:1]))[0]
    response = np.abs(np.fft.rfft(ir, 8192))
    freqs = np.fft.rfftfreq(8192, 1.0 / SAMPLE_RATE)
    passband = response[freqs < 1500].mean()
    assert abs(20.0 * np.log10(passband)) < 0.1
    assert 20.0 * np.log10(response[freqs >= 2250].max() / passband) < -31.5

    audio = np.asarray(_filtered_noise(magnitudes, n_samples=32768, key=jax.random.key(0)))
    freqs, psd = _welch_psd(audio, nperseg=1024)
    assert 10.0 * np.log10(psd[freqs >= 2250].max() / psd[freqs < 1500].mean()) < -31.5
    assert psd[freqs >= 2250].sum() / psd.sum() < 1e-3


def test_filtered_noise_with_flat_filter_is_white_with_variance_of_scaled_uniform_noise():
    """Flat magnitude 0.5 on U[-1, 1) noise: variance 0.25 / 3, one-sided PSD 2 * variance / sample_rate at every
    frequency. Checked over 7 groups of 9 Welch bins (512 segments: ~2% standard error per group), DC and Nyquist
    left out (a one-sided PSD does not double them, so they read half)."""
    audio = np.asarray(_filtered_noise(np.full((512, 65), 0.5, np.float32), n_samples=32768, key=jax.random.key(3)))
    assert abs(audio.var() / (0.25 / 3.0) - 1.0) < 0.03
    _, psd = _welch_psd(audio, nperseg=128)
    grouped = psd[1:64].reshape(7, 9).mean(axis=1)
    np.testing.assert_allclose(grouped, 2.0 * (0.25 / 3.0) / SAMPLE_RATE, rtol=0.07)


def test_filtered_noise_long_term_spectrum_follows_squared_magnitudes():
    """Magnitudes 0.55 + 0.45 cos(pi k / 64) (1.0 at DC down to 0.1 at Nyquist, 20 dB): a 3-tap filter that the
    window leaves intact, so the PSD must be 2 / 3 / sample_rate * magnitude^2 (grouped over 8 bins)."""
    bands = np.arange(65)
    magnitudes = (0.55 + 0.45 * np.cos(np.pi * bands / 64)).astype(np.float32)
    audio = np.asarray(_filtered_noise(np.tile(magnitudes, (512, 1)), n_samples=32768, key=jax.random.key(4)))
    _, psd = _welch_psd(audio, nperseg=128)  # bins k * 125 Hz = the band centres
    expected = 2.0 / 3.0 / SAMPLE_RATE * magnitudes**2
    ratio = (psd[1:65] / expected[1:65]).reshape(8, 8).mean(axis=1)
    np.testing.assert_allclose(ratio, 1.0, rtol=0.07)


def test_time_varying_filter_switches_band_between_frames():
    """First half of the frames low-pass (< 2 kHz), second half high-pass (> 6 kHz)."""
    magnitudes = np.zeros((256, 65), np.float32)
    magnitudes[:128, :17] = 1.0
    magnitudes[128:, 48:] = 1.0
    audio = np.asarray(_filtered_noise(magnitudes, n_samples=16384, key=jax.random.key(5)))
    for half, low_band in ((audio[256:7936], True), (audio[8448:], False)):  # skip transitions at the edges
        freqs, psd = _welch_psd(half, nperseg=256)
        low, high = psd[freqs < 2000].sum(), psd[freqs > 6000].sum()
        assert (low / high if low_band else high / low) > 1e3


def test_filtered_noise_same_key_same_noise_other_key_other_noise():
    magnitudes = np.ones((16, 65), np.float32)
    first = _filtered_noise(magnitudes, n_samples=1024, key=jax.random.key(7))
    again = _filtered_noise(magnitudes, n_samples=1024, key=jax.random.key(7))
    other = _filtered_noise(magnitudes, n_samples=1024, key=jax.random.key(8))
    np.testing.assert_array_equal(first, again)
    assert abs(np.corrcoef(first, other)[0, 1]) < 0.15


def test_filtered_noise_vmap_over_keys_and_magnitudes_equals_loop():
    keys = jax.random.split(jax.random.key(9), 3)
    magnitudes = np.random.default_rng(3).uniform(0, 1, (3, 8, 17)).astype(np.float32)

    def synth(m, k):
        return _filtered_noise(m, n_samples=256, window_size=0, key=k)

    batched = jax.jit(jax.vmap(synth))(magnitudes, keys)
    looped = np.stack([synth(m, k) for m, k in zip(magnitudes, keys)])
    np.testing.assert_allclose(batched, looped, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])


@pytest.mark.parametrize("window_size", [0, 5])  # full 8-tap filters, and the cropped 5-tap path
def test_frequency_filter_gradients_match_finite_differences_in_magnitudes(window_size):
    rng = np.random.default_rng(4)
    audio = jnp.asarray(rng.uniform(-1, 1, 32), jnp.float32)
    magnitudes = jnp.asarray(rng.uniform(0.1, 1.0, (4, 5)), jnp.float32)
    check_grads(
        jax.jit(lambda m: frequency_filter(audio, m, window_size=window_size)),
        (magnitudes,),
        order=1,
        modes=("fwd", "rev"),
        eps=1e-2,
        atol=1e-2,
        rtol=1e-2,
    )


def test_filtered_noise_gradients_finite_and_match_finite_differences_from_the_floor():
    """At the exp_sigmoid floor (1e-7) the gradient of the noise energy must still be finite and positive."""
    key = jax.random.key(10)

    @jax.jit
    def energy(magnitudes):
        return jnp.sum(_filtered_noise(magnitudes, n_samples=64, window_size=0, key=key) ** 2)

    floor = filtered_noise_controls(jnp.full((4, 5), -40.0))
    grad = jax.grad(energy)(floor)
    assert np.all(np.isfinite(grad)) and np.sum(grad) > 0.0
    magnitudes = jnp.asarray(np.random.default_rng(5).uniform(0.1, 1.0, (4, 5)), jnp.float32)
    check_grads(energy, (magnitudes,), order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)


def test_filtered_noise_controls_start_quiet_and_stay_in_exp_sigmoid_range():
    raw = jnp.asarray([[-50.0, 0.0, 5.0, 50.0]])
    magnitudes = np.asarray(filtered_noise_controls(raw))
    expected = [2.0 / (1.0 + math.exp(5.0 - x)) ** math.log(10.0) + 1e-7 for x in (-50.0, 0.0, 5.0, 50.0)]
    np.testing.assert_allclose(magnitudes[0], expected, rtol=1e-5)
    assert magnitudes[0, 1] < 2.5e-5  # zero network output: noise starts ~94 dB down
    assert magnitudes[0, 0] >= 1e-7 and magnitudes[0, 3] <= 2.0 + 1e-6
    assert np.all(np.diff(magnitudes[0]) > 0.0)


def test_invalid_sizes_raise_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="bands"):
        frequency_impulse_response(np.ones((4, 1), np.float32))
    for window_size in (-1, 1, 2):  # a 1- or 2-tap periodic Hann window is (0) or (0, 1): no filter left
        with pytest.raises(ValueError, match="window_size"):
            frequency_impulse_response(np.ones((4, 65), np.float32), window_size=window_size)
    with pytest.raises(ValueError, match="n_samples"):
        filtered_noise(np.ones((4, 65), np.float32), n_samples=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="magnitudes has 4 frames"):
        filtered_noise(np.ones((4, 65), np.float32), n_samples=9, key=jax.random.key(0))
