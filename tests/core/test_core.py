"""Tests for ddsp_core.core: scaling, unit conversions, Nyquist masking, upsampling (vs magenta ddsp 3.7.0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core import core
from tests.helpers import load_fixture


@pytest.fixture(scope="module")
def harmonic_fixture():
    return load_fixture("magenta", "harmonic_in"), load_fixture("magenta", "harmonic_out")


# exp_sigmoid ---------------------------------------------------------------------------------------------------------
def test_exp_sigmoid_matches_formula_in_float64():
    x = np.linspace(-12.0, 12.0, 97).reshape(1, 97)
    expected = 2.0 * (1.0 / (1.0 + np.exp(-x))) ** np.log(10.0) + 1e-7
    np.testing.assert_allclose(core.exp_sigmoid(x), expected, rtol=2e-6, atol=1e-12)


def test_exp_sigmoid_is_bounded_and_grows_tenfold_per_unit_far_below_zero():
    y = core.exp_sigmoid(jnp.array([-200.0, -8.0, -7.0, 200.0]))
    assert float(y[0]) == pytest.approx(1e-7, rel=1e-6)
    assert float(y[-1]) == pytest.approx(2.0 + 1e-7, rel=1e-6)
    assert float((y[2] - 1e-7) / (y[1] - 1e-7)) == pytest.approx(10.0, rel=2e-3)


def test_exp_sigmoid_custom_parameters():
    y = core.exp_sigmoid(jnp.array([0.0]), exponent=2.0, max_value=1.0, threshold=0.0)
    assert float(y[0]) == pytest.approx(0.5 ** np.log(2.0), rel=1e-6)


# unit conversions ----------------------------------------------------------------------------------------------------
def test_midi_and_hz_are_inverse_and_anchored_at_a4():
    midi = jnp.array([21.0, 60.0, 69.0, 81.5, 108.0])
    hz = core.midi_to_hz(midi)
    assert float(hz[2]) == pytest.approx(440.0)
    assert float(hz[1]) == pytest.approx(261.6256, rel=1e-6)
    np.testing.assert_allclose(core.hz_to_midi(hz), midi, atol=2e-5)


def test_hz_to_midi_maps_non_positive_to_zero_with_finite_gradient():
    hz = jnp.array([0.0, -5.0, 1e-9])
    np.testing.assert_array_equal(np.asarray(core.hz_to_midi(hz))[:2], [0.0, 0.0])
    grad = jax.grad(lambda f: jnp.sum(core.hz_to_midi(f)))(hz)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_array_equal(np.asarray(grad)[:2], [0.0, 0.0])


def test_safe_log_replaces_only_non_positive_values():
    y = core.safe_log(jnp.array([0.0, -1.0, 1e-7, 2.0]))
    np.testing.assert_allclose(y, np.log([1e-5, 1e-5, 1e-7, 2.0]), rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(core.safe_log(x)))(jnp.array([0.0, 2.0]))
    np.testing.assert_allclose(grad, [0.0, 0.5])


def test_power_to_db_floors_power_then_subtracts_ref_then_floors_output():
    power = np.array([1.0, 1e-2, 1e-7, 1e-9, 0.0, 10.0], dtype=np.float32)
    for ref_db, range_db in [(0.0, 80.0), (20.0, 80.0), (-10.0, 60.0)]:
        floor = 10.0 ** (-range_db / 10.0)
        expected = np.maximum(10.0 * np.log10(np.maximum(power.astype(np.float64), floor)) - ref_db, -range_db)
        np.testing.assert_allclose(core.power_to_db(power, ref_db=ref_db, range_db=range_db), expected, atol=2e-5)
    # ref_db > 0: the power floor (-80 dB) minus 20 would be -100, the output floor lifts it back to -80.
    assert float(core.power_to_db(jnp.array([0.0]), ref_db=20.0)[0]) == -80.0


def test_amplitude_to_db_is_twenty_log10_above_floor_and_inverts_db_to_amplitude():
    amplitude = jnp.array([[1.0, 0.5], [1e-3, 2.0]])
    np.testing.assert_allclose(core.amplitude_to_db(amplitude), 20.0 * np.log10(np.asarray(amplitude)), atol=1e-5)
    assert float(core.amplitude_to_db(jnp.array([1e-6]))[0]) == pytest.approx(-80.0, abs=1e-4)
    db = jnp.array([-60.0, -6.0, 0.0, 12.0])
    np.testing.assert_allclose(core.amplitude_to_db(core.db_to_amplitude(db)), db, atol=1e-4)
    np.testing.assert_allclose(core.power_to_db(core.db_to_power(db)), db, atol=1e-4)
    np.testing.assert_allclose(core.db_to_power(db), core.db_to_amplitude(db) ** 2, rtol=1e-5)


# Nyquist and normalisation -------------------------------------------------------------------------------------------
def test_remove_above_nyquist_removes_at_and_above_half_the_sample_rate():
    freqs = jnp.array([[7999.0, 8000.0, 8001.0]])
    out = core.remove_above_nyquist(freqs, jnp.full((1, 3), 0.7), 16000)
    np.testing.assert_allclose(out, [[0.7, 0.0, 0.0]])


def test_remove_above_nyquist_rejects_bad_sample_rate():
    with pytest.raises(ValueError, match="sample_rate"):
        core.remove_above_nyquist(jnp.ones(2), jnp.ones(2), 0)


def test_harmonic_frequencies_are_integer_multiples():
    np.testing.assert_allclose(core.harmonic_frequencies(jnp.array([100.0, 30.0]), 3), [[100, 200, 300], [30, 60, 90]])
    with pytest.raises(ValueError, match="n_harmonics"):
        core.harmonic_frequencies(jnp.array([100.0]), 0)


def test_normalize_harmonics_matches_magenta(harmonic_fixture):
    fin, fout = harmonic_fixture
    norm = jax.vmap(lambda d, f: core.normalize_harmonics(d, f, int(fin["sample_rate"])))(
        fin["harmonic_distribution"], fin["f0_hz"][..., 0]
    )
    np.testing.assert_allclose(norm, fout["harmonic_distribution_norm"], rtol=1e-5, atol=1e-7)


def test_normalized_distribution_sums_to_one_and_is_zero_above_nyquist():
    key = jax.random.key(0)
    dist = jax.random.uniform(key, (6, 40))
    f0 = jnp.array([50.0, 200.0, 399.0, 400.0, 1000.0, 7000.0])
    norm = core.normalize_harmonics(dist, f0, 16000)
    np.testing.assert_allclose(jnp.sum(norm, axis=-1), 1.0, rtol=1e-6)
    above = core.harmonic_frequencies(f0, 40) >= 8000.0
    assert np.all(np.asarray(norm)[np.asarray(above)] == 0.0)
    assert int(jnp.sum(norm[3] > 0)) == 19  # 400 Hz: harmonics 1..19 are below 8 kHz, 20 is exactly at it


def test_normalize_harmonics_all_above_nyquist_gives_zeros_with_finite_gradient():
    def total(dist):
        return jnp.sum(core.normalize_harmonics(dist, jnp.array([9000.0, 0.0]), 16000) ** 2)

    dist = jnp.stack([jnp.ones(4), jnp.zeros(4)])
    np.testing.assert_array_equal(core.normalize_harmonics(dist, jnp.array([9000.0, 0.0]), 16000), 0.0)
    assert np.all(np.isfinite(np.asarray(jax.grad(total)(dist))))


# upsampling ----------------------------------------------------------------------------------------------------------
def test_upsample_linear_matches_magenta_resample(harmonic_fixture):
    fin, fout = harmonic_fixture
    n_samples = int(fin["n_samples"])
    up = jax.vmap(lambda x: core.upsample_linear(x, n_samples))
    np.testing.assert_allclose(up(fin["f0_hz"]), fout["f0_envelope"], atol=1e-6)
    np.testing.assert_allclose(up(fin["amplitudes"]), fout["amp_envelope_linear"], atol=1e-6)


def test_upsample_linear_handles_sizes_that_are_not_multiples():
    frames = np.array([[0.0, 1.0], [3.0, -1.0], [6.0, 5.0]], dtype=np.float32)
    out = np.asarray(core.upsample_linear(frames, 7))
    position = np.arange(7) * 3.0 / 7.0
    expected = np.stack([np.interp(position, np.arange(3), frames[:, c]) for c in range(2)], axis=-1)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_upsample_with_windows_matches_magenta_resample(harmonic_fixture):
    fin, fout = harmonic_fixture
    n_samples = int(fin["n_samples"])
    up = jax.vmap(lambda x: core.upsample_with_windows(x, n_samples))(fin["amplitudes"])
    np.testing.assert_allclose(up, fout["amp_envelope_window"], atol=1e-6)


def test_upsample_with_windows_preserves_constants_and_hits_frame_values():
    frames = jnp.array([[2.0, 1.0], [2.0, 3.0], [2.0, -1.0]])
    out = core.upsample_with_windows(frames, 12)
    np.testing.assert_allclose(out[:, 0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(out[::4, 1], [1.0, 3.0, -1.0], rtol=1e-6)  # hop starts carry the frame values
    np.testing.assert_allclose(out[8:, 1], -1.0, rtol=1e-6)  # last hop holds the last frame


def test_upsample_with_windows_rejects_non_multiple_n_samples():
    with pytest.raises(ValueError, match="n_samples"):
        core.upsample_with_windows(jnp.ones((3, 1)), 10)
    with pytest.raises(ValueError, match="n_samples"):
        core.upsample_linear(jnp.ones((3, 1)), 0)
