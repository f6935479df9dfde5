"""Tests for ddsp_core.synths: harmonic, sinusoidal and wavetable synthesis.

References are independent float64 NumPy implementations of the formulas (and magenta ddsp 3.7.0 fixtures, whose
own float32 phase error is measured and bounded here rather than copied).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ddsp_core import core, synths
from tests.helpers import load_fixture

SR = 16000


# Independent float64 references ---------------------------------------------------------------------------------------
def _np_upsample_linear(frames: np.ndarray, n_samples: int) -> np.ndarray:
    """(n_frames, C) -> (n_samples, C): frame i at sample i * hop, last frame held."""
    n_frames = frames.shape[0]
    position = np.arange(n_samples) * n_frames / n_samples
    grid = np.arange(n_frames)
    return np.stack([np.interp(position, grid, frames[:, c]) for c in range(frames.shape[1])], axis=-1)


def _np_upsample_window(frames: np.ndarray, n_samples: int) -> np.ndarray:
    """Overlap-add of periodic Hann windows of length 2 * hop centred on each frame (last frame repeated)."""
    n_frames, n_channels = frames.shape
    hop = n_samples // n_frames
    window = 0.5 - 0.5 * np.cos(np.pi * np.arange(2 * hop) / hop)
    padded = np.concatenate([frames, frames[-1:]], axis=0)
    out = np.zeros(((n_frames + 2) * hop, n_channels))
    for i in range(n_frames + 1):
        out[i * hop : i * hop + 2 * hop] += window[:, None] * padded[i][None, :]
    return out[hop:-hop]


def _np_harmonic(amplitudes, distribution, f0_hz, n_samples, amp_resample="window"):
    """y = sum_k A_k(t) [k f0(t) < sr/2] sin(k * cumsum(2 pi f0 / sr)), all in float64."""
    f0 = _np_upsample_linear(np.asarray(f0_hz, np.float64)[:, None], n_samples)[:, 0]
    upsample = _np_upsample_window if amp_resample == "window" else _np_upsample_linear
    amps = upsample(np.asarray(amplitudes, np.float64)[:, None] * np.asarray(distribution, np.float64), n_samples)
    phase = np.cumsum(2.0 * np.pi * f0 / SR)
    numbers = np.arange(1, amps.shape[1] + 1)
    audible = numbers[None, :] * f0[:, None] < SR / 2
    return np.sum(np.where(audible, amps * np.sin(numbers[None, :] * phase[:, None]), 0.0), axis=-1)


def _naive_harmonic(amplitudes, distribution, f0_hz, n_samples):
    """The straightforward JAX formulation (audio-rate envelopes for every harmonic), for gradient checks."""
    f0 = core.upsample_linear(f0_hz[:, None], n_samples)[:, 0]
    amps = core.upsample_with_windows(amplitudes[:, None] * distribution, n_samples)
    numbers = jnp.arange(1, distribution.shape[1] + 1, dtype=jnp.float32)
    amps = core.remove_above_nyquist(f0[:, None] * numbers, amps, SR)
    phase = jnp.cumsum(2.0 * jnp.pi * f0 / SR)
    return jnp.sum(amps * jnp.sin(numbers * phase[:, None]), axis=-1)


@functools.lru_cache(maxsize=None)
def _harmonic(n_samples: int, amp_resample: str = "window"):
    return jax.jit(
        functools.partial(synths.harmonic_synthesis, n_samples=n_samples, sample_rate=SR, amp_resample=amp_resample)
    )


def _full(shape, value):
    """A float32 (not weakly typed) constant array, so that every call hits the same compiled function."""
    return jnp.full(shape, value, dtype=jnp.float32)


def _small_controls(f0_low=150.0, f0_high=2500.0):
    key1, key2 = jax.random.split(jax.random.key(3))
    amps = 0.2 + jax.random.uniform(key1, (4,))
    dist = 0.1 + jax.random.uniform(key2, (4, 5))
    f0 = jnp.linspace(f0_low, f0_high, 4)  # harmonics cross Nyquist between frames at the top
    return amps, dist, f0


def _peak_hz(audio: np.ndarray, pad_factor: int = 16) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n=pad_factor * len(audio)))
    return float(np.argmax(spectrum)) * SR / (pad_factor * len(audio))


@pytest.fixture(scope="module")
def magenta():
    fin, fout = load_fixture("magenta", "harmonic_in"), load_fixture("magenta", "harmonic_out")
    assert int(fin["sample_rate"]) == SR
    return fin, fout


@pytest.fixture(scope="module")
def magenta_raw_ours_and_exact(magenta):
    """Our synthesis of the raw fixture controls, and the float64 reference of the same formula."""
    fin, _ = magenta
    n_samples = int(fin["n_samples"])
    amps, dist, f0 = fin["amplitudes"][..., 0], fin["harmonic_distribution"], fin["f0_hz"][..., 0]
    ours = np.asarray(jax.vmap(_harmonic(n_samples))(amps, dist, f0))
    exact = np.stack([_np_harmonic(amps[b], dist[b], f0[b], n_samples) for b in range(amps.shape[0])])
    return ours, exact


# Conformance ----------------------------------------------------------------------------------------------------------
def test_harmonic_synthesis_matches_float64_reference_on_magenta_inputs(magenta_raw_ours_and_exact):
    ours, exact = magenta_raw_ours_and_exact
    peak = np.abs(exact).max(axis=-1, keepdims=True)
    assert np.max(np.abs(ours - exact) / peak) < 1e-4


def test_deviation_from_magenta_angular_cumsum_is_its_own_float32_error(magenta, magenta_raw_ours_and_exact):
    _, fout = magenta
    ours, exact = magenta_raw_ours_and_exact
    angular = fout["audio_core_angular"]
    peak = np.abs(exact).max()
    # Before magenta's chunked float32 phase has accumulated error (first frames), we agree tightly ...
    assert np.max(np.abs(ours[:, :128] - angular[:, :128])) < 2e-4 * peak
    # ... and over the whole clip we are never further from it than the exact result is (+ our own 1e-4).
    reference_error = np.max(np.abs(exact - angular), axis=-1)
    assert np.all(np.max(np.abs(ours - angular), axis=-1) <= reference_error + 1e-4 * peak)
    assert reference_error[0] > 0.05 * peak  # magenta's error at 440 Hz x 18 harmonics is large: this is not a tautology


def test_drift_against_magenta_default_cumsum_is_a_fraction_of_a_cent(magenta):
    """magenta's Harmonic (plain float32 cumsum) runs flat by a fraction of a cent after 1 s; we stay in tune."""
    fin, fout = magenta
    n_samples = int(fin["n_samples"])
    f0 = float(fin["f0_hz"][0, 0, 0])  # 440 Hz, constant
    ours = np.asarray(
        _harmonic(n_samples)(fin["amplitudes"][0, :, 0], fout["harmonic_distribution_norm"][0], fin["f0_hz"][0, :, 0])
    )
    window = 800  # an integer number of periods of every harmonic of 440 Hz: no leakage between them

    def cents(audio):
        t = np.arange(1, n_samples + 1)
        phasors = (audio * np.exp(-2j * np.pi * f0 * t / SR)).reshape(-1, window).mean(axis=1)
        slope = np.polyfit(np.arange(len(phasors)) * window, np.unwrap(np.angle(phasors)), 1)[0]  # rad / sample
        return 1200.0 * np.log2(1.0 + slope * SR / (2.0 * np.pi * f0))

    assert abs(cents(ours)) < 0.01
    assert -0.5 < cents(fout["audio"][0]) < -0.05
    np.testing.assert_allclose(ours[:200], fout["audio"][0, :200], atol=2e-3)


def test_harmonic_controls_reproduce_magenta_normalized_distribution(magenta):
    fin, fout = magenta
    dist = fin["harmonic_distribution"].astype(np.float64)
    # Invert exp_sigmoid so that the raw outputs scale back to the fixture's distribution.
    raw = -np.log(((dist - 1e-7) / 2.0) ** (-1.0 / np.log(10.0)) - 1.0)
    raw_amp = np.zeros(fin["amplitudes"].shape[:2])
    amps, norm = jax.vmap(lambda a, d, f: synths.harmonic_controls(a, d, f, sample_rate=SR))(
        raw_amp, raw, fin["f0_hz"][..., 0]
    )
    np.testing.assert_allclose(norm, fout["harmonic_distribution_norm"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(amps, 2.0 * 0.5 ** np.log(10.0) + 1e-7, rtol=1e-6)


def test_linear_amplitude_resampling_matches_float64_reference():
    amps, dist, f0 = _small_controls()
    ours = np.asarray(_harmonic(64, "linear")(amps, dist, f0))
    np.testing.assert_allclose(ours, _np_harmonic(amps, dist, f0, 64, "linear"), atol=2e-5)
    assert np.max(np.abs(ours - np.asarray(_harmonic(64)(amps, dist, f0)))) > 1e-2  # the two methods do differ


# Properties -----------------------------------------------------------------------------------------------------------
def test_pure_tones_peak_at_their_harmonic_bins_with_their_amplitudes():
    n_frames, n_samples = 250, 16000  # 1 s: 1 Hz per FFT bin
    dist = jnp.zeros((n_frames, 100)).at[:, :3].set(jnp.array([0.6, 0.3, 0.1]))
    audio = np.asarray(_harmonic(n_samples)(jnp.ones(n_frames), dist, _full(n_frames, 300.0)))
    spectrum = np.abs(np.fft.rfft(audio)) * 2.0 / n_samples
    assert set(np.argsort(spectrum)[-3:]) == {300, 600, 900}
    np.testing.assert_allclose(spectrum[[300, 600, 900]], [0.6, 0.3, 0.1], atol=2e-3)
    assert spectrum[np.setdiff1d(np.arange(len(spectrum)), [300, 600, 900])].max() < 2e-3


def test_harmonics_at_or_above_nyquist_are_silent():
    n_frames, n_samples = 4, 64
    f0 = _full(n_frames, 4000.0)  # harmonic 2 is exactly at Nyquist
    audio = _harmonic(n_samples)(jnp.ones(n_frames), jnp.ones((n_frames, 5)), f0)
    fundamental_only = _harmonic(n_samples)(jnp.ones(n_frames), jnp.ones((n_frames, 5)) * jnp.eye(5)[0], f0)
    np.testing.assert_allclose(audio, fundamental_only, atol=1e-6)
    assert float(jnp.max(jnp.abs(audio))) > 0.9
    all_above = _harmonic(n_samples)(jnp.ones(n_frames), jnp.ones((n_frames, 5)), _full(n_frames, 8000.0))
    np.testing.assert_array_equal(all_above, 0.0)


def test_sixty_second_tone_stays_in_tune_and_click_free():
    n_frames, n_samples, amplitude = 15000, 960000, 0.8
    synth = jax.jit(functools.partial(synths.harmonic_synthesis, n_samples=n_samples, sample_rate=SR))
    audio = np.asarray(synth(_full(n_frames, amplitude), jnp.ones((n_frames, 1)), _full(n_frames, 440.0)))
    last_second = audio[-SR:]
    assert abs(_peak_hz(last_second) - 440.0) <= 0.5
    # Phase is still exact after a minute (a float32 cumsum would be off by radians by now).
    t = np.arange(n_samples - SR + 1, n_samples + 1)
    np.testing.assert_allclose(last_second, amplitude * np.sin(2.0 * np.pi * 440.0 * t / SR), atol=2e-5)
    max_step = 2.0 * np.pi * 440.0 / SR * amplitude
    assert np.max(np.abs(np.diff(audio))) <= max_step + 1e-4


def test_vmap_over_a_batch_equals_a_loop():
    controls = [_small_controls(f0_low=100.0 * (b + 1), f0_high=900.0 * (b + 1)) for b in range(3)]
    amps, dist, f0 = (jnp.stack(parts) for parts in zip(*controls))
    batched = jax.vmap(_harmonic(64))(amps, dist, f0)
    for b in range(3):
        np.testing.assert_allclose(batched[b], _harmonic(64)(amps[b], dist[b], f0[b]), atol=1e-6)
    assert float(jnp.max(jnp.abs(batched[0] - batched[1]))) > 0.1


# Gradients ------------------------------------------------------------------------------------------------------------
def test_custom_gradient_matches_autodiff_of_the_naive_formulation():
    amps, dist, f0 = _small_controls()
    weights = jax.random.normal(jax.random.key(4), (64,))

    def loss(synth):
        return lambda a, d, f: jnp.sum(weights * synth(a, d, f, 64))

    ours = jax.jit(jax.grad(loss(lambda a, d, f, n: _harmonic(n)(a, d, f)), argnums=(0, 1, 2)))(amps, dist, f0)
    naive = jax.jit(jax.grad(loss(_naive_harmonic), argnums=(0, 1, 2)))(amps, dist, f0)
    for got, want in zip(ours, naive):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * float(jnp.max(jnp.abs(want))))


def test_check_grads_of_harmonic_synthesis():
    amps, dist, f0 = _small_controls(f0_high=1500.0)  # keep harmonics away from the (non-differentiable) Nyquist step

    def synth(a, d, f):
        return _harmonic(64)(a, d, f)

    check_grads(synth, (amps, dist, f0), order=1, modes=["rev"], eps=1e-2, atol=5e-2, rtol=5e-2)


def test_gradients_are_finite_at_zero_f0_silence_and_the_amplitude_floor():
    @jax.jit
    @functools.partial(jax.grad, argnums=(0, 1, 2))
    def grads(raw_amp, raw_dist, f0, gain):
        amps, dist = synths.harmonic_controls(raw_amp, raw_dist, f0, sample_rate=SR)
        audio = _harmonic(64)(gain * amps, dist, f0)
        return jnp.sum(audio**2) + jnp.sum(audio)

    cases = {
        "f0 = 0": (jnp.zeros(4), jnp.zeros((4, 5)), jnp.zeros(4), 1.0),
        "amplitude floor": (_full(4, -100.0), _full((4, 5), -100.0), _full(4, 300.0), 1.0),
        "all above Nyquist": (jnp.zeros(4), jnp.zeros((4, 5)), _full(4, 9000.0), 1.0),
        "silence": (jnp.zeros(4), jnp.zeros((4, 5)), _full(4, 300.0), 0.0),
    }
    results = {name: grads(*args) for name, args in cases.items()}
    for name, result in results.items():
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in result), name
    # Silent output (zero amplitudes): the distribution gets exactly zero gradient.
    np.testing.assert_array_equal(results["silence"][1], 0.0)
    assert float(jnp.max(jnp.abs(results["f0 = 0"][2]))) > 0.0  # f0 = 0 still gets a gradient toward pitch


# Errors ---------------------------------------------------------------------------------------------------------------
def test_wrong_shape_fails_at_the_call():
    with pytest.raises(Exception, match="f0_hz") as info:
        synths.harmonic_synthesis(jnp.ones(4), jnp.ones((4, 3)), jnp.ones(5), n_samples=32, sample_rate=SR)
    assert not isinstance(info.value, ValueError)  # the annotation check, not our own validation


def test_bad_sizes_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="n_samples"):
        synths.harmonic_synthesis(jnp.ones(4), jnp.ones((4, 3)), jnp.ones(4), n_samples=30, sample_rate=SR)
    with pytest.raises((ValueError, TypeError), match="amp_resample"):  # the Literal annotation, or our check
        synths.harmonic_synthesis(
            jnp.ones(4), jnp.ones((4, 3)), jnp.ones(4), n_samples=32, sample_rate=SR, amp_resample="cubic"
        )
    with pytest.raises(ValueError, match="sample_rate"):
        synths.wavetable_synthesis(jnp.ones(4), jnp.ones((4, 8)), jnp.ones(4), n_samples=32, sample_rate=0)
    with pytest.raises(ValueError, match="n_samples"):
        synths.sinusoidal_synthesis(jnp.ones((4, 2)), jnp.ones((4, 2)), n_samples=0, sample_rate=SR)


# Sinusoidal -----------------------------------------------------------------------------------------------------------
def test_sinusoidal_bank_equals_harmonic_synth_at_harmonic_frequencies():
    amps, dist, f0 = _small_controls(f0_low=300.0, f0_high=3000.0)
    numbers = jnp.arange(1, 6, dtype=jnp.float32)
    sines = synths.sinusoidal_synthesis(amps[:, None] * dist, f0[:, None] * numbers, n_samples=64, sample_rate=SR)
    np.testing.assert_allclose(sines, _harmonic(64)(amps, dist, f0), atol=1e-4)


def test_sinusoidal_bank_peaks_at_free_frequencies_and_drops_those_above_nyquist():
    n_frames = 250
    freqs = jnp.tile(jnp.array([123.0, 4567.0, 8000.0, 9000.0]), (n_frames, 1))
    amps = jnp.tile(jnp.array([0.5, 0.25, 1.0, 1.0]), (n_frames, 1))
    audio = np.asarray(synths.sinusoidal_synthesis(amps, freqs, n_samples=SR, sample_rate=SR))
    spectrum = np.abs(np.fft.rfft(audio)) * 2.0 / SR
    np.testing.assert_allclose(spectrum[[123, 4567]], [0.5, 0.25], atol=2e-3)
    assert spectrum[np.setdiff1d(np.arange(len(spectrum)), [123, 4567])].max() < 2e-3


# Wavetable ------------------------------------------------------------------------------------------------------------
def _np_wavetable(amplitudes, wavetables, f0_hz, n_samples):
    """magenta's wavetable_synthesis in float64: exclusive phase in cycles, linear time and table interpolation."""
    amp = _np_upsample_window(np.asarray(amplitudes, np.float64)[:, None], n_samples)[:, 0]
    f0 = _np_upsample_linear(np.asarray(f0_hz, np.float64)[:, None], n_samples)[:, 0]
    tables = _np_upsample_linear(np.asarray(wavetables, np.float64), n_samples)
    phase = np.mod(np.concatenate([[0.0], np.cumsum(f0 / SR)[:-1]]), 1.0)
    tables = np.concatenate([tables, tables[:, :1]], axis=1)
    n_table = wavetables.shape[1]
    grid = np.arange(n_table + 1) / n_table
    lookup = np.array([np.interp(p, grid, row) for p, row in zip(phase, tables)])
    return amp * lookup


def test_wavetable_synthesis_matches_float64_reference_with_changing_tables():
    key1, key2 = jax.random.split(jax.random.key(5))
    tables = jax.random.normal(key1, (8, 32))
    amps = jax.random.uniform(key2, (8,))
    f0 = jnp.linspace(220.0, 1300.0, 8)
    ours = synths.wavetable_synthesis(amps, tables, f0, n_samples=512, sample_rate=SR)
    np.testing.assert_allclose(ours, _np_wavetable(amps, tables, f0, 512), atol=1e-4)


def test_sine_wavetable_plays_a_sine_at_f0_and_has_gradients():
    n_frames, n_samples = 50, 3200
    table = jnp.sin(2.0 * jnp.pi * jnp.arange(2048) / 2048)
    audio = np.asarray(
        synths.wavetable_synthesis(
            _full(n_frames, 0.5), jnp.tile(table, (n_frames, 1)), _full(n_frames, 441.0),
            n_samples=n_samples, sample_rate=SR,
        )
    )
    t = np.arange(n_samples)  # the wavetable phase starts at 0 (exclusive running sum)
    np.testing.assert_allclose(audio, 0.5 * np.sin(2.0 * np.pi * 441.0 * t / SR), atol=1e-5)

    def loss(tables, f0):
        return jnp.sum(synths.wavetable_synthesis(jnp.ones(4), tables, f0, n_samples=64, sample_rate=SR) ** 2)

    grad_tables, grad_f0 = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.tile(table[::128], (4, 1)), _full(4, 300.0))
    assert bool(jnp.all(jnp.isfinite(grad_tables))) and float(jnp.sum(jnp.abs(grad_tables))) > 0.0
    assert bool(jnp.all(jnp.isfinite(grad_f0))) and float(jnp.sum(jnp.abs(grad_f0))) > 0.0
