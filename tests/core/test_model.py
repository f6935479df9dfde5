"""Tests for ddsp_core.model: the autoencoder's composition, its starting point, gradients, loss and a short overfit."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ddsp_core.effects import reverb
from ddsp_core.model import DDSPAutoencoder, autoencode, build_autoencoder, reconstruction_loss
from ddsp_core.spectral import multiscale_spectral_loss

N_FRAMES = 16
HOP = 64
N_SAMPLES = N_FRAMES * HOP
N_HARMONICS, N_BANDS = 12, 9


def _entries(*, reverb_entry=True, noise_weight=0.1, n_harmonics=N_HARMONICS, n_bands=N_BANDS, ir_length=256):
    entries = [
        {"type": "harmonic", "n_harmonics": n_harmonics, "weight": 1.0},
        {"type": "filtered_noise", "n_bands": n_bands, "weight": noise_weight},
    ]
    return entries + ([{"type": "reverb", "ir_length": ir_length}] if reverb_entry else [])


def _small(**kwargs) -> DDSPAutoencoder:
    entries = _entries(**{k: kwargs.pop(k) for k in ("reverb_entry", "noise_weight") if k in kwargs})
    settings = {"hidden_size": 16, "n_mlp_layers": 1, "hop_size": HOP, **kwargs}
    return build_autoencoder(entries, key=jax.random.key(0), **settings)
FFT_SIZES = (256, 128, 64)


def _features(seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    f0_hz = jnp.asarray(rng.uniform(100.0, 600.0, N_FRAMES), dtype=jnp.float32)
    loudness_db = jnp.asarray(rng.uniform(-60.0, -10.0, N_FRAMES), dtype=jnp.float32)
    return f0_hz, loudness_db


def _small_other_decoder():
    return build_autoencoder(_entries(n_harmonics=5), hidden_size=16, n_mlp_layers=1, key=jax.random.key(0)).decoder


@eqx.filter_jit
def _run(model, f0_hz, loudness_db, key, audio=None):
    return autoencode(model, f0_hz, loudness_db, key=key, audio=audio)


@pytest.fixture(scope="module")
def model() -> DDSPAutoencoder:
    return _small()


@pytest.fixture(scope="module")
def outputs(model):
    return _run(model, *_features(), jax.random.key(1))


def test_outputs_have_audio_length_n_frames_times_hop_and_frame_rate_controls(outputs):
    assert outputs.audio.shape == outputs.signals["harmonic"].shape == outputs.signals["noise"].shape == (N_SAMPLES,)
    assert outputs.controls["harmonic"]["harmonic_distribution"].shape == (N_FRAMES, N_HARMONICS)
    assert outputs.controls["harmonic"]["amplitude"].shape == (N_FRAMES,)
    assert outputs.controls["noise"]["magnitudes"].shape == (N_FRAMES, N_BANDS)
    assert outputs.controls["harmonic"]["f0_hz"].shape == (N_FRAMES,)
    assert outputs.controls["reverb"] == {}
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(outputs))


def test_audio_is_the_reverb_of_the_weighted_mix(model, outputs):
    dry = 1.0 * outputs.signals["harmonic"] + 0.1 * outputs.signals["noise"]
    expected = reverb(dry, model.instrument.effects[0].impulse_response)
    np.testing.assert_allclose(np.asarray(outputs.audio), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_without_reverb_the_audio_is_the_dry_mix():
    dry_model = _small(reverb_entry=False, noise_weight=0.5)
    out = _run(dry_model, *_features(), jax.random.key(1))
    assert dry_model.instrument.effects == ()
    expected = out.signals["harmonic"] + 0.5 * out.signals["noise"]
    np.testing.assert_allclose(np.asarray(out.audio), np.asarray(expected), rtol=1e-6, atol=1e-7)


def test_harmonic_distribution_sums_to_one_and_amplitudes_are_positive(outputs):
    controls = outputs.controls["harmonic"]
    np.testing.assert_allclose(np.asarray(controls["harmonic_distribution"].sum(axis=-1)), 1.0, rtol=1e-5)
    assert bool(jnp.all(controls["amplitude"] > 0.0))


def test_the_noise_key_decides_the_noise_and_nothing_else(model):
    f0, ld = _features()
    a = _run(model, f0, ld, jax.random.key(1))
    b = _run(model, f0, ld, jax.random.key(1))
    c = _run(model, f0, ld, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a.audio), np.asarray(b.audio))
    np.testing.assert_array_equal(np.asarray(a.signals["harmonic"]), np.asarray(c.signals["harmonic"]))
    assert float(jnp.max(jnp.abs(a.signals["noise"] - c.signals["noise"]))) > 0.0


def test_untrained_model_starts_almost_dry_and_with_quiet_noise(outputs):
    harmonic, noise = outputs.signals["harmonic"], outputs.signals["noise"]
    dry = harmonic + 0.1 * noise
    wet_to_dry = float(jnp.linalg.norm(outputs.audio - dry) / jnp.linalg.norm(dry))
    assert wet_to_dry < 0.05  # the reverb tail starts more than 26 dB below the dry signal
    assert float(jnp.max(outputs.controls["noise"]["magnitudes"])) < 1e-3  # exp_sigmoid(raw - 5) at a small raw output
    assert float(jnp.std(noise)) < 0.01 * float(jnp.std(harmonic))


def test_batched_loss_equals_the_multiscale_loss_of_per_example_runs_and_has_finite_gradients(model):
    """One vmapped value-and-grad: example 0 is ordinary, example 1 is unvoiced (f0 = 0) and silent (-80 dB)."""
    f0 = jnp.stack([_features(0)[0], jnp.zeros(N_FRAMES)])
    ld = jnp.stack([_features(0)[1], jnp.full((N_FRAMES,), -80.0)])
    target = jax.random.uniform(jax.random.key(4), (2, N_SAMPLES), minval=-0.5, maxval=0.5)
    key = jax.random.key(5)
    value_and_grad = eqx.filter_jit(
        eqx.filter_value_and_grad(lambda m, *data: reconstruction_loss(m, *data, key=key, fft_sizes=FFT_SIZES))
    )
    loss, grads = value_and_grad(model, target, f0, ld)
    keys = jax.random.split(key, 2)
    predicted = jnp.stack([_run(model, f0[i], ld[i], keys[i]).audio for i in range(2)])
    expected = jax.jit(lambda a, b: multiscale_spectral_loss(a, b, fft_sizes=FFT_SIZES))(target, predicted)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-4)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.max(jnp.abs(grads.instrument.effects[0].impulse_response))) > 0.0
    assert float(jnp.max(jnp.abs(grads.decoder.input_layer.weight))) > 0.0


def test_model_with_z_encoder_needs_the_audio_and_uses_it():
    z_model = _small(z_dims=3)
    f0, ld = _features()
    t = jnp.arange(N_SAMPLES) / 16000.0
    a = _run(z_model, f0, ld, jax.random.key(1), jnp.sin(2 * jnp.pi * 330.0 * t))
    b = _run(z_model, f0, ld, jax.random.key(1), jax.random.uniform(jax.random.key(2), (N_SAMPLES,), minval=-1.0))
    assert a.audio.shape == (N_SAMPLES,)
    assert float(jnp.max(jnp.abs(a.signals["harmonic"] - b.signals["harmonic"]))) > 0.0
    with pytest.raises(ValueError, match="audio is required"):
        autoencode(z_model, f0, ld, key=jax.random.key(1))


def test_bad_sizes_and_lengths_raise_value_errors_naming_the_argument(model):
    with pytest.raises(ValueError, match="hop_size"):
        _small(hop_size=0)
    with pytest.raises(ValueError, match="n_harmonics"):
        build_autoencoder(_entries(n_harmonics=0), hidden_size=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="only sources take a weight"):
        build_autoencoder(_entries()[:2] + [{"type": "reverb", "weight": 0.5}], hidden_size=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="decoder's outputs do not match"):
        DDSPAutoencoder(instrument=_small(n_mlp_layers=1).instrument, decoder=_small_other_decoder())
    f0, ld = _features()
    with pytest.raises(ValueError, match="audio must have"):
        reconstruction_loss(model, jnp.zeros((1, N_SAMPLES + 1)), f0[None], ld[None], key=jax.random.key(0))


def test_short_overfit_of_one_second_halves_the_spectral_loss():
    """25 Adam steps on one 1-second harmonic tone drop the spectral loss by at least 50 % (26.2 -> ~9 measured)."""
    sample_rate, hop, n_frames = 16000, 64, 250
    t = jnp.arange(n_frames * hop) / sample_rate
    f0_hz = jnp.full((1, n_frames), 261.63)
    envelope = jnp.minimum(1.0, 10.0 * t) * jnp.exp(-1.5 * t)
    target = (0.4 * jnp.sin(2 * jnp.pi * 261.63 * t) + 0.2 * jnp.sin(2 * jnp.pi * 523.26 * t)) * envelope
    loudness_db = jnp.linspace(-20.0, -30.0, n_frames)[None]
    model = build_autoencoder(
        _entries(n_harmonics=16, n_bands=8, ir_length=512), hidden_size=32, n_mlp_layers=1, key=jax.random.key(0)
    )
    optimizer = optax.adam(1e-2)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)

    # The data are jit arguments, not closed-over constants (XLA would constant-fold the synthesis otherwise).
    def loss_of(p, data):
        return reconstruction_loss(eqx.combine(p, static), *data, key=jax.random.key(1))

    @jax.jit
    def steps(p, state, data):
        def body(carry, _):
            p, state = carry
            loss, grads = jax.value_and_grad(loss_of)(p, data)
            updates, state = optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), loss

        (p, state), losses = jax.lax.scan(body, (p, state), None, length=25)
        return p, state, losses, loss_of(p, data)

    _, _, losses, final = steps(params, opt_state, (target[None], f0_hz, loudness_db))
    assert np.all(np.isfinite(np.asarray(losses)))
    assert float(final) <= 0.5 * float(losses[0]), (float(losses[0]), float(final))


def test_decoder_initialisation_is_chosen_by_name_and_keeps_the_instrument():
    keras = _small(init="keras")
    plain = _small()
    assert float(jnp.abs(keras.decoder.head.bias).max()) == 0.0
    assert float(jnp.abs(plain.decoder.head.bias).max()) > 0.0
    # only the decoder changes: the instrument (learned IR included) is the same
    np.testing.assert_array_equal(np.asarray(keras.instrument.effects[0].impulse_response),
                                  np.asarray(plain.instrument.effects[0].impulse_response))
    with pytest.raises(ValueError, match="init='glorot'; expected one of equinox, keras"):
        _small(init="glorot")
