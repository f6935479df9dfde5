"""Tests for ddsp_core.decoder: shapes, vmap/jit, the hoisted GRU, causality, parameter count, gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core.decoder import (
    DDSPDecoder,
    MfccEncoder,
    _gru_over_frames,
    decoder_parameter_count,
    parameter_count,
    parameter_summary,
    scale_decoder_inputs,
)

N_FRAMES = 12
SMALL = dict(n_harmonics=7, n_noise_bands=5, hidden_size=16, n_mlp_layers=2)


def _features(n_frames: int = N_FRAMES, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    f0_hz = jnp.asarray(rng.uniform(80.0, 900.0, n_frames), dtype=jnp.float32)
    loudness_db = jnp.asarray(rng.uniform(-80.0, 0.0, n_frames), dtype=jnp.float32)
    return f0_hz, loudness_db


@pytest.fixture(scope="module")
def decoder() -> DDSPDecoder:
    return DDSPDecoder(**SMALL, key=jax.random.key(0))


def test_outputs_have_one_row_per_frame_and_one_column_per_control(decoder):
    out = decoder(*_features())
    assert out.amplitude.shape == (N_FRAMES,)
    assert out.harmonic_distribution.shape == (N_FRAMES, SMALL["n_harmonics"])
    assert out.noise_magnitudes.shape == (N_FRAMES, SMALL["n_noise_bands"])
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in out)


def test_scaled_inputs_match_magenta_f0_loudness_preprocessor():
    scaled = scale_decoder_inputs(np.array([440.0, 0.0, 880.0], np.float32), np.array([-40.0, -80.0, 0.0], np.float32))
    expected = np.array([[69.0 / 127.0, 0.5], [0.0, 0.0], [81.0 / 127.0, 1.0]])
    np.testing.assert_allclose(np.asarray(scaled), expected, atol=1e-6)


def test_vmap_over_batch_equals_per_example_calls(decoder):
    f0 = jnp.stack([_features(seed=s)[0] for s in range(3)])
    ld = jnp.stack([_features(seed=s)[1] for s in range(3)])
    batched = jax.vmap(decoder)(f0, ld)
    for i in range(3):
        single = decoder(f0[i], ld[i])
        for b, s in zip(batched, single):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(s), rtol=1e-5, atol=1e-6)


def test_jit_matches_eager(decoder):
    f0, ld = _features()
    eager = decoder(f0, ld)
    jitted = eqx.filter_jit(lambda m, a, b: m(a, b))(decoder, f0, ld)
    for e, j in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(e), np.asarray(j), rtol=1e-5, atol=1e-6)


def test_hoisted_gru_equals_stepping_equinox_grucell():
    cell = eqx.nn.GRUCell(6, 9, key=jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (N_FRAMES, 6))

    def step(h, x):
        h = cell(x, h)
        return h, h

    _, expected = jax.jit(lambda x: jax.lax.scan(step, jnp.zeros(9), x))(xs)
    got = jax.jit(lambda x: _gru_over_frames(cell, x, unroll=1))(xs)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_scan_unroll_does_not_change_outputs(decoder):
    unrolled = DDSPDecoder(**SMALL, scan_unroll=4, key=jax.random.key(0))
    f0, ld = _features()
    for a, b in zip(decoder(f0, ld), unrolled(f0, ld)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_decoder_is_causal_future_frames_do_not_change_the_past(decoder):
    f0, ld = _features()
    changed_ld = ld.at[8:].set(0.0)
    before = decoder(f0, ld)
    after = decoder(f0, changed_ld)
    np.testing.assert_allclose(np.asarray(before.harmonic_distribution[:8]), np.asarray(after.harmonic_distribution[:8]))
    assert not np.allclose(np.asarray(before.harmonic_distribution[8:]), np.asarray(after.harmonic_distribution[8:]))


@pytest.mark.parametrize("z_dims", [0, 16])
def test_parameter_count_matches_the_formula_at_paper_sizes(z_dims):
    sizes = dict(n_harmonics=100, n_noise_bands=65, hidden_size=512, n_mlp_layers=3, z_dims=z_dims)
    model = eqx.filter_eval_shape(lambda: DDSPDecoder(**sizes, key=jax.random.key(0)))
    assert parameter_count(model) == decoder_parameter_count(**sizes)
    # Independent hand count for the default decoder: 1,536 + 1,574,912 + 791,040 + 85,158.
    if z_dims == 0:
        assert parameter_count(model) == 2_452_646
    assert parameter_summary(model).splitlines()[-1].split()[-1] == f"{parameter_count(model):,}"


def test_parameter_count_of_a_real_module_equals_the_formula(decoder):
    assert parameter_count(decoder) == decoder_parameter_count(**SMALL, z_dims=0)


def test_noise_head_bias_starts_at_the_requested_value():
    model = DDSPDecoder(**SMALL, noise_bias_init=-5.0, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(model.noise_head.bias), np.full(SMALL["n_noise_bands"], -5.0))


def test_z_conditioning_changes_outputs_and_is_required():
    model = DDSPDecoder(**SMALL, z_dims=3, key=jax.random.key(0))
    f0, ld = _features()
    z0 = jnp.zeros((N_FRAMES, 3))
    z1 = jnp.ones((N_FRAMES, 3))
    assert not np.allclose(np.asarray(model(f0, ld, z0).amplitude), np.asarray(model(f0, ld, z1).amplitude))
    with pytest.raises(ValueError, match="z is required"):
        model(f0, ld)


def test_z_given_to_a_decoder_without_z_is_rejected(decoder):
    f0, ld = _features()
    with pytest.raises(ValueError, match="z_dims=0"):
        decoder(f0, ld, jnp.zeros((N_FRAMES, 3)))


def test_mismatched_frame_counts_fail_at_the_call(decoder):
    f0, ld = _features()
    with pytest.raises(Exception, match="n_frames|loudness_db|f0_hz"):
        decoder(f0, ld[:-1])


def test_negative_sizes_are_rejected_with_the_argument_name():
    with pytest.raises(ValueError, match="hidden_size"):
        DDSPDecoder(**{**SMALL, "hidden_size": 0}, key=jax.random.key(0))


def test_gradients_are_finite_for_unvoiced_frames_and_silence(decoder):
    f0 = jnp.zeros(N_FRAMES)
    ld = jnp.full((N_FRAMES,), -80.0)

    def loss(model, f0_hz):
        out = model(f0_hz, ld)
        return sum(jnp.sum(x**2) for x in out)

    grads_model, grads_f0 = eqx.filter_jit(eqx.filter_grad(loss, has_aux=False))(decoder, f0), jax.jit(
        jax.grad(lambda f: loss(decoder, f))
    )(f0)
    leaves = jax.tree.leaves(eqx.filter(grads_model, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)
    assert bool(jnp.all(jnp.isfinite(grads_f0)))


def _small_encoder() -> MfccEncoder:
    return MfccEncoder(
        z_dims=4, sample_rate=16000, hidden_size=8, n_mfccs=10, n_mels=20, n_fft=256, hop_size=64, key=jax.random.key(3)
    )


def test_encoder_gives_z_per_decoder_frame_that_depends_on_timbre():
    encoder = _small_encoder()
    t = jnp.arange(2048) / 16000.0
    sine = jnp.sin(2 * jnp.pi * 440.0 * t)
    square = jnp.sign(sine) * 0.8
    encode = eqx.filter_jit(lambda e, a: e(a, n_frames=N_FRAMES))
    z_sine, z_square = encode(encoder, sine), encode(encoder, square)
    assert z_sine.shape == (N_FRAMES, 4)
    assert bool(jnp.all(jnp.isfinite(z_sine)))
    assert float(jnp.max(jnp.abs(z_sine - z_square))) > 1e-3
    batched = eqx.filter_jit(lambda e, a: jax.vmap(lambda x: e(x, n_frames=N_FRAMES))(a))(encoder, jnp.stack([sine, square]))
    np.testing.assert_allclose(np.asarray(batched[1]), np.asarray(z_square), rtol=1e-5, atol=1e-6)
