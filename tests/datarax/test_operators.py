"""Tests for ddsp_datarax.operators: each operator equals the ddsp_core function it wraps, per element and batched."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ddsp_core.crepe import estimate_f0, init_crepe_params
from ddsp_core.decoder import DDSPDecoder
from ddsp_core.effects import learned_ir_init, reverb
from ddsp_core.model import controls_from_decoder
from ddsp_core.noise import filtered_noise
from ddsp_core.spectral import compute_loudness
from ddsp_core.synths import harmonic_synthesis
from ddsp_datarax.operators import (
    AMPLITUDE,
    AUDIO,
    F0_CONFIDENCE,
    F0_HZ,
    HARMONIC_DISTRIBUTION,
    LOUDNESS_DB,
    NOISE_MAGNITUDES,
    SYNTH_AUDIO,
    CrepeF0,
    DecoderControls,
    FilteredNoise,
    HarmonicSynth,
    Loudness,
    Reverb,
)
from tests.datarax._controls import HOP, N_FRAMES, N_SAMPLES, random_controls


def _audio(seed: int = 0, n_samples: int = N_SAMPLES) -> jax.Array:
    t = jnp.arange(n_samples) / 16000.0
    return 0.5 * jnp.sin(2 * jnp.pi * (220.0 + 110.0 * seed) * t)


def test_harmonic_synth_returns_only_the_signal_and_equals_harmonic_synthesis():
    element = random_controls()
    out, state, _ = jax.jit(lambda d: HarmonicSynth(hop_size=HOP).apply(d, {}, None))(element)
    expected = harmonic_synthesis(
        element[AMPLITUDE], element[HARMONIC_DISTRIBUTION], element[F0_HZ], n_samples=N_SAMPLES, sample_rate=16000
    )
    assert set(out) == {SYNTH_AUDIO} and state == {}
    np.testing.assert_allclose(np.asarray(out[SYNTH_AUDIO]), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_filtered_noise_uses_the_given_key_and_falls_back_to_its_base_key_when_none_is_given():
    noise_op = FilteredNoise(hop_size=HOP, rngs=nnx.Rngs(noise=7))
    element = random_controls()
    key = jax.random.key(3)
    with_key, _, _ = noise_op.apply(element, {}, None, key)
    without_a, _, _ = noise_op.apply(element, {}, None)  # what datarax does outside a pipeline
    without_b, _, _ = noise_op.apply(element, {}, None, None)
    expected = filtered_noise(element[NOISE_MAGNITUDES], n_samples=N_SAMPLES, key=key)
    np.testing.assert_allclose(np.asarray(with_key[SYNTH_AUDIO]), np.asarray(expected), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(without_a[SYNTH_AUDIO]), np.asarray(without_b[SYNTH_AUDIO]))
    from_base = filtered_noise(element[NOISE_MAGNITUDES], n_samples=N_SAMPLES, key=noise_op._base_key[...])
    np.testing.assert_allclose(np.asarray(without_a[SYNTH_AUDIO]), np.asarray(from_base), rtol=1e-6, atol=1e-7)


def test_filtered_noise_in_a_batch_draws_different_noise_per_record():
    noise_op = FilteredNoise(hop_size=HOP, rngs=nnx.Rngs(noise=7))
    element = random_controls()
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), element)
    out, _ = nnx.jit(lambda op, d: op._vmap_apply(d, {}))(noise_op, batch)
    assert out[SYNTH_AUDIO].shape == (2, N_SAMPLES)
    assert float(jnp.max(jnp.abs(out[SYNTH_AUDIO][0] - out[SYNTH_AUDIO][1]))) > 0.0


def test_reverb_holds_its_ir_as_an_nnx_param_and_passes_other_fields_through():
    ir = learned_ir_init(128, key=jax.random.key(0)) * 50.0
    op = Reverb(ir)
    params = nnx.state(op, nnx.Param)
    assert [p.shape for p in jax.tree.leaves(params)] == [(128,)]
    element = {SYNTH_AUDIO: _audio(), F0_HZ: jnp.ones(N_FRAMES)}
    out, _, _ = op.apply(element, {}, None)
    np.testing.assert_allclose(np.asarray(out[SYNTH_AUDIO]), np.asarray(reverb(element[SYNTH_AUDIO], ir)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out[F0_HZ]), np.ones(N_FRAMES))


def test_decoder_controls_equal_the_pure_decoder_and_controls_step():
    decoder = DDSPDecoder(n_harmonics=6, n_noise_bands=5, hidden_size=8, n_mlp_layers=1, key=jax.random.key(0))
    op = DecoderControls(decoder, sample_rate=16000)
    element = {F0_HZ: random_controls()[F0_HZ], LOUDNESS_DB: jnp.linspace(-50.0, -10.0, N_FRAMES)}
    out, _, _ = nnx.jit(lambda o, d: o.apply(d, {}, None))(op, element)
    expected = eqx.filter_jit(lambda m, f, l: controls_from_decoder(m(f, l), f, sample_rate=16000))(
        decoder, element[F0_HZ], element[LOUDNESS_DB]
    )
    for name, value in expected._asdict().items():
        np.testing.assert_allclose(np.asarray(out[name]), np.asarray(value), rtol=1e-5, atol=1e-6)
    assert len(jax.tree.leaves(nnx.state(op, nnx.Param))) == len(jax.tree.leaves(eqx.filter(decoder, eqx.is_array)))


def test_loudness_operator_equals_compute_loudness_with_one_frame_per_hop():
    audio = _audio(n_samples=4096)
    out, _, _ = jax.jit(lambda d: Loudness(hop_size=HOP).apply(d, {}, None))({AUDIO: audio})
    expected = compute_loudness(audio, sample_rate=16000, frame_rate=250, n_fft=2048, padding="same")
    assert out[LOUDNESS_DB].shape == (4096 // HOP,)
    np.testing.assert_allclose(np.asarray(out[LOUDNESS_DB]), np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_crepe_operator_equals_estimate_f0_and_runs_inside_jit_and_scan():
    params = init_crepe_params(jax.random.key(0), model="tiny")
    op = CrepeF0(params, hop_size=256, decoder="local_average")
    audios = jnp.stack([_audio(0, 2048), _audio(1, 2048)])

    def scan_over_elements(o, batch):
        return jax.lax.scan(lambda c, a: (c, o.apply({AUDIO: a}, {}, None)[0]), None, batch)[1]

    out = nnx.jit(scan_over_elements)(op, audios)
    f0_expected, confidence_expected = jax.jit(
        lambda a: estimate_f0(params, a, hop_size=256, padding="same", decoder="local_average")
    )(audios[1])
    assert out[F0_HZ].shape == out[F0_CONFIDENCE].shape == (2, 2048 // 256)
    np.testing.assert_allclose(np.asarray(out[F0_HZ][1]), np.asarray(f0_expected), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out[F0_CONFIDENCE][1]), np.asarray(confidence_expected), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: HarmonicSynth(hop_size=0), "hop_size"),
        (lambda: Loudness(sample_rate=16000, hop_size=96), "hop_size"),
        (lambda: FilteredNoise(hop_size=64, window_size=-1, rngs=nnx.Rngs(0)), "window_size"),
        (lambda: Reverb(jnp.zeros((2, 3))), "impulse_response"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_argument(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def test_importing_the_library_layers_does_not_import_the_training_app():
    import subprocess
    import sys

    code = "import sys, ddsp_core, ddsp_datarax; print(sorted(m for m in sys.modules if m.split('.')[0] == 'train'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert result.stdout.strip() == "[]", result.stdout
