"""Tests for ddsp_core/effects.py: FFT convolution, reverb, reverb impulse responses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ddsp_core.effects import exp_decay_impulse_response, fft_convolve, learned_ir_init, reverb
from tests.helpers import assert_close_relative, load_fixture

REL_TOL = 1e-5
"""Max |ours - magenta| relative to max |magenta|: both are float32 FFT convolutions (measured ~2e-7)."""


# Jitted once per static configuration: eager dispatch compiles every primitive separately and is slow on CI.
_fft_convolve = jax.jit(fft_convolve, static_argnames=("padding", "delay_compensation"))
_reverb = jax.jit(reverb, static_argnames=("add_dry",))
_exp_decay_impulse_response = jax.jit(exp_decay_impulse_response, static_argnames=("ir_length",))


@pytest.fixture(scope="module")
def magenta_reverb() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return load_fixture("magenta", "reverb_in"), load_fixture("magenta", "reverb_out")


def _time_varying_convolution(audio: np.ndarray, irs: np.ndarray) -> np.ndarray:
    """Reference: frame i of the audio (ceil(n / n_frames) samples) convolved directly with irs[i], summed."""
    n_frames, ir_size = irs.shape
    frame_size = -(-audio.size // n_frames)
    out = np.zeros(n_frames * frame_size + ir_size - 1)
    for i in range(n_frames):
        frame = audio[i * frame_size : (i + 1) * frame_size]
        out[i * frame_size : i * frame_size + frame.size + ir_size - 1] += np.convolve(frame, irs[i])
    return out


@pytest.mark.parametrize(
    ("key", "kwargs"),
    [
        ("fft_convolve_same", {"padding": "same", "delay_compensation": 0}),
        ("fft_convolve_valid", {"padding": "valid", "delay_compensation": 0}),
        ("fft_convolve_default", {}),
    ],
)
def test_fft_convolve_matches_magenta(magenta_reverb, key, kwargs):
    inputs, outputs = magenta_reverb
    ours = jax.vmap(lambda a, h: _fft_convolve(a, h, **kwargs))(inputs["audio"], inputs["ir"])
    assert_close_relative(ours, outputs[key], REL_TOL)


def test_fft_convolve_default_delay_crops_ir_half_minus_one_samples():
    audio = np.random.default_rng(0).standard_normal(40).astype(np.float32)
    ir = np.random.default_rng(1).standard_normal(9).astype(np.float32)  # (9 - 1) // 2 - 1 = 3
    expected = np.convolve(audio, ir)[3 : 3 + 40]
    np.testing.assert_allclose(_fft_convolve(audio, ir), expected, atol=1e-5)


def test_fft_convolve_with_frames_equals_direct_time_varying_convolution():
    rng = np.random.default_rng(2)
    audio = rng.standard_normal(46).astype(np.float32)  # 4 frames of ceil(46 / 4) = 12, the last zero-padded
    irs = rng.standard_normal((4, 5)).astype(np.float32)
    expected = _time_varying_convolution(audio, irs)[: 46 + 5 - 1]
    ours = _fft_convolve(audio, irs, padding="valid", delay_compensation=0)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_fft_convolve_with_identical_frames_equals_single_impulse_response():
    rng = np.random.default_rng(3)
    audio = rng.standard_normal(64).astype(np.float32)
    ir = rng.standard_normal(20).astype(np.float32)  # longer than a frame: tails overlap 2 frames ahead
    framewise = _fft_convolve(audio, np.tile(ir, (8, 1)), padding="valid", delay_compensation=0)
    np.testing.assert_allclose(framewise, np.convolve(audio, ir), atol=1e-5)


def test_fft_convolve_pads_with_zeros_past_the_end_of_the_convolution():
    audio = np.arange(1.0, 9.0, dtype=np.float32)
    ir = np.array([1.0, -1.0, 0.5], dtype=np.float32)
    ours = _fft_convolve(audio, ir, padding="valid", delay_compensation=4)
    full = np.convolve(audio, ir)  # 10 samples; the output wants samples 4..13
    np.testing.assert_allclose(ours, np.concatenate([full[4:], np.zeros(4)]), atol=1e-5)


def test_fft_convolve_rejects_frame_count_that_does_not_split_audio():
    with pytest.raises(ValueError, match="frames"):
        fft_convolve(np.zeros(9, np.float32), np.zeros((4, 3), np.float32))  # ceil(9/4)=3 -> only 3 frames


def test_fft_convolve_rejects_unknown_padding():
    # The Literal annotation rejects it under the type-checking hook (TypeError); without the hook, ValueError.
    with pytest.raises((TypeError, ValueError), match="padding"):
        fft_convolve(np.zeros(8, np.float32), np.zeros(3, np.float32), padding="full")


def test_fft_convolve_rejects_wrongly_shaped_audio():
    with pytest.raises(TypeError, match="audio"):
        fft_convolve(np.zeros((2, 8), np.float32), np.zeros(3, np.float32))


def test_reverb_matches_magenta_with_and_without_dry(magenta_reverb):
    inputs, outputs = magenta_reverb
    assert_close_relative(jax.vmap(reverb)(inputs["audio"], inputs["ir"]), outputs["reverb"], REL_TOL)
    wet = jax.vmap(lambda a, h: _reverb(a, h, add_dry=False))(inputs["audio"], inputs["ir"])
    assert_close_relative(wet, outputs["reverb_wet"], REL_TOL)


def test_reverb_ignores_first_tap_as_magenta_masks_it(magenta_reverb):
    inputs, outputs = magenta_reverb
    audio, ir = inputs["audio"][0], inputs["ir"][0]
    assert outputs["ir_masked"][0, 0] == 0.0 and ir[0] != 0.0
    np.testing.assert_array_equal(_reverb(audio, ir), _reverb(audio, outputs["ir_masked"][0]))
    ir_loud_first_tap = ir.copy()
    ir_loud_first_tap[0] = 100.0
    np.testing.assert_array_equal(_reverb(audio, ir), _reverb(audio, ir_loud_first_tap))


@pytest.mark.parametrize("delay", [0, 1, 5])
def test_reverb_with_unit_impulse_at_tap_d_adds_copy_delayed_by_d(delay):
    """Tap 0 is masked: a unit impulse there gives the dry audio alone; at tap d >= 1, dry + audio delayed by d."""
    audio = np.random.default_rng(4).uniform(-1, 1, 50).astype(np.float32)
    ir = np.zeros(8, np.float32)
    ir[delay] = 1.0
    delayed = np.concatenate([np.zeros(delay), audio[: 50 - delay]]) if delay > 0 else np.zeros(50)
    np.testing.assert_allclose(_reverb(audio, ir), audio + delayed, atol=1e-6)
    np.testing.assert_allclose(_reverb(audio, ir, add_dry=False), delayed, atol=1e-6)


def test_reverb_gradients_match_finite_differences_in_audio_and_ir():
    rng = np.random.default_rng(5)
    audio = jnp.asarray(rng.uniform(-1, 1, 32), jnp.float32)
    ir = jnp.asarray(rng.standard_normal(8) * 0.3, jnp.float32)
    check_grads(jax.jit(reverb), (audio, ir), order=1, modes=("fwd", "rev"), eps=1e-2, atol=1e-2, rtol=1e-2)
    grad_ir = jax.grad(lambda h: jnp.sum(_reverb(audio, h) ** 2))(ir)
    assert grad_ir[0] == 0.0 and np.all(np.isfinite(grad_ir)) and np.any(grad_ir[1:] != 0.0)


def test_reverb_vmap_equals_loop():
    rng = np.random.default_rng(6)
    audio = rng.uniform(-1, 1, (3, 40)).astype(np.float32)
    irs = rng.standard_normal((3, 12)).astype(np.float32)
    batched = jax.jit(jax.vmap(reverb))(audio, irs)
    looped = np.stack([_reverb(a, h) for a, h in zip(audio, irs)])
    np.testing.assert_allclose(batched, looped, atol=1e-6)


def _exp_sigmoid_reference(x: float) -> float:
    """magenta's exp_sigmoid(x) = 2 * sigmoid(x) ** ln(10) + 1e-7, in float64."""
    return 2.0 / (1.0 + math.exp(-x)) ** math.log(10.0) + 1e-7


def test_exp_decay_impulse_response_is_noise_under_gain_times_exponential_envelope():
    ir_length, gain, decay = 4000, 1.0, 1.5
    ir = np.asarray(_exp_decay_impulse_response(gain, decay, ir_length=ir_length, key=jax.random.key(0)))
    envelope = _exp_sigmoid_reference(gain) * np.exp(-(2.0 + math.exp(decay)) * np.linspace(0.0, 1.0, ir_length))
    ratio = ir / envelope  # the uniform noise in [-1, 1)
    assert ir.shape == (ir_length,)
    assert np.all(np.abs(ratio) <= 1.0 + 1e-5)
    assert np.max(np.abs(ratio)) > 0.99 and abs(np.mean(ratio**2) - 1.0 / 3.0) < 0.03


def test_exp_decay_impulse_response_same_key_same_ir_other_key_other_ir():
    first = _exp_decay_impulse_response(2.0, 4.0, ir_length=1000, key=jax.random.key(1))
    again = _exp_decay_impulse_response(2.0, 4.0, ir_length=1000, key=jax.random.key(1))
    other = _exp_decay_impulse_response(2.0, 4.0, ir_length=1000, key=jax.random.key(2))
    np.testing.assert_array_equal(first, again)
    assert abs(np.corrcoef(first, other)[0, 1]) < 0.2


def test_exp_decay_impulse_response_gradients_are_finite_and_signed():
    key = jax.random.key(3)

    def energy(gain, decay):
        return jnp.sum(_exp_decay_impulse_response(gain, decay, ir_length=500, key=key) ** 2)

    d_gain, d_decay = jax.grad(energy, argnums=(0, 1))(jnp.float32(2.0), jnp.float32(4.0))
    assert np.isfinite(d_gain) and d_gain > 0.0  # louder with more gain
    assert np.isfinite(d_decay) and d_decay < 0.0  # quieter with faster decay


def test_exp_decay_impulse_response_rejects_non_positive_length():
    with pytest.raises(ValueError, match="ir_length"):
        exp_decay_impulse_response(2.0, 4.0, ir_length=0, key=jax.random.key(0))


def test_learned_ir_init_is_quiet_decaying_and_starts_at_zero():
    ir = np.asarray(learned_ir_init(16000, key=jax.random.key(0)))
    assert ir.shape == (16000,) and ir[0] == 0.0
    np.testing.assert_allclose(np.linalg.norm(ir), 0.01, rtol=1e-4)
    energy = ir**2
    assert energy[:2000].sum() > 0.99 * energy.sum()  # envelope down 60 dB within the first 12%
    white = np.asarray(jax.random.uniform(jax.random.key(1), (32000,), minval=-1.0, maxval=1.0))
    wet = np.asarray(_reverb(white, ir, add_dry=False))
    wet_to_dry_db = 10.0 * np.log10(np.sum(wet[16000:] ** 2) / np.sum(white[16000:] ** 2))
    assert -42.0 < wet_to_dry_db < -38.0


def test_learned_ir_init_differs_between_keys():
    first = learned_ir_init(1000, key=jax.random.key(0))
    other = learned_ir_init(1000, key=jax.random.key(1))
    assert abs(np.corrcoef(first, other)[0, 1]) < 0.2
