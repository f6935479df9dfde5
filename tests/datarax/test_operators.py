"""Tests for ddsp_datarax.operators: each operator equals the ddsp_core function it wraps, per element and batched."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ddsp_core.crepe import estimate_f0, init_crepe_params
from ddsp_core.effects import reverb
from ddsp_core.model import build_autoencoder
from ddsp_core.noise import filtered_noise
from ddsp_core.processors import FilteredNoise, Harmonic, Reverb
from ddsp_core.spectral import compute_loudness
from ddsp_core.synths import harmonic_synthesis
from ddsp_datarax.operators import (
    AUDIO,
    F0_CONFIDENCE,
    F0_HZ,
    LOUDNESS_DB,
    SYNTH_AUDIO,
    CrepeF0,
    DecoderControls,
    EffectOperator,
    Loudness,
    SourceOperator,
    controls_element,
)
from tests.datarax._controls import HOP, N_BANDS, N_FRAMES, N_HARMONICS, N_SAMPLES, random_controls


def _audio(seed: int = 0, n_samples: int = N_SAMPLES) -> jax.Array:
    t = jnp.arange(n_samples) / 16000.0
    return 0.5 * jnp.sin(2 * jnp.pi * (220.0 + 110.0 * seed) * t)


def test_harmonic_operator_returns_only_the_signal_and_equals_harmonic_synthesis():
    element = random_controls()
    op = SourceOperator(Harmonic(n_harmonics=N_HARMONICS), hop_size=HOP, rngs=nnx.Rngs(0))
    out, state, _ = nnx.jit(lambda o, d: o.apply(d, {}, None))(op, element)
    expected = harmonic_synthesis(
        element["harmonic/amplitude"], element["harmonic/harmonic_distribution"], element["harmonic/f0_hz"],
        n_samples=N_SAMPLES, sample_rate=16000,
    )
    assert set(out) == {SYNTH_AUDIO} and state == {}
    np.testing.assert_allclose(np.asarray(out[SYNTH_AUDIO]), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_noise_operator_uses_the_given_key_and_refuses_to_run_without_one():
    op = SourceOperator(FilteredNoise(n_bands=N_BANDS), hop_size=HOP, rngs=nnx.Rngs(noise=7))
    element = random_controls()
    key = jax.random.key(3)
    with_key, _, _ = op.apply(element, {}, None, key)
    expected = filtered_noise(element["noise/magnitudes"], n_samples=N_SAMPLES, key=key)
    np.testing.assert_allclose(np.asarray(with_key[SYNTH_AUDIO]), np.asarray(expected), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        op.apply(element, {}, None)  # no silent fixed key
    data_struct, _ = op.get_output_structure(element, {})  # datarax's shape discovery still works without a key
    assert set(data_struct) == {SYNTH_AUDIO}


def test_noise_operator_in_a_batch_draws_different_noise_per_record():
    op = SourceOperator(FilteredNoise(n_bands=N_BANDS), hop_size=HOP, rngs=nnx.Rngs(noise=7))
    element = random_controls()
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), element)
    out, _ = nnx.jit(lambda o, d: o._vmap_apply(d, {}))(op, batch)
    assert out[SYNTH_AUDIO].shape == (2, N_SAMPLES)
    assert float(jnp.max(jnp.abs(out[SYNTH_AUDIO][0] - out[SYNTH_AUDIO][1]))) > 0.0


def test_reverb_operator_holds_the_processor_ir_as_an_nnx_param_and_passes_other_fields_through():
    room = Reverb(ir_length=128, key=jax.random.key(0))
    op = EffectOperator(room)
    params = nnx.state(op, nnx.Param)
    assert [p.shape for p in jax.tree.leaves(params)] == [(128,)]
    element = {SYNTH_AUDIO: _audio(), F0_HZ: jnp.ones(N_FRAMES)}
    out, _, _ = op.apply(element, {}, None)
    expected = reverb(element[SYNTH_AUDIO], room.impulse_response)
    np.testing.assert_allclose(np.asarray(out[SYNTH_AUDIO]), np.asarray(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out[F0_HZ]), np.ones(N_FRAMES))


def test_decoder_controls_equal_the_pure_decoder_and_the_instrument_controls_step():
    model = build_autoencoder(
        [{"type": "harmonic", "n_harmonics": N_HARMONICS}, {"type": "filtered_noise", "n_bands": N_BANDS}],
        hidden_size=8, n_mlp_layers=1, hop_size=HOP, key=jax.random.key(0),
    )
    op = DecoderControls(model.decoder, model.instrument)
    element = {F0_HZ: random_controls()["harmonic/f0_hz"], LOUDNESS_DB: jnp.linspace(-50.0, -10.0, N_FRAMES)}
    out, _, _ = nnx.jit(lambda o, d: o.apply(d, {}, None))(op, element)
    expected = eqx.filter_jit(lambda m, f, l: controls_element(m.instrument.get_controls(m.decoder(f, l), f)))(
        model, element[F0_HZ], element[LOUDNESS_DB]
    )
    assert set(expected) == {"harmonic/amplitude", "harmonic/harmonic_distribution", "harmonic/f0_hz",
                             "noise/magnitudes"}
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(out[name]), np.asarray(value), rtol=1e-5, atol=1e-6)
    decoder_leaves = jax.tree.leaves(eqx.filter(model.decoder, eqx.is_array))
    assert len(jax.tree.leaves(nnx.state(op, nnx.Param))) == len(decoder_leaves)


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
        (lambda: SourceOperator(Harmonic(), hop_size=0, rngs=nnx.Rngs(0)), "hop_size"),
        (lambda: Loudness(sample_rate=16000, hop_size=96), "hop_size"),
        (lambda: SourceOperator(Reverb(ir_length=4, key=jax.random.key(0)), hop_size=64, rngs=nnx.Rngs(0)), "Source"),
        (lambda: EffectOperator(Harmonic()), "Effect"),
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
