"""Tests for ddsp_core.processors: each processor's controls and signal, the instrument's mix and effects, the
per-source keys, and building processors from a description."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core.core import exp_sigmoid, midi_to_hz
from ddsp_core.effects import exp_decay_impulse_response, reverb
from ddsp_core.noise import filtered_noise, filtered_noise_controls
from ddsp_core.processors import (
    ExpDecayReverb,
    FilteredNoise,
    FilteredNoiseReverb,
    Harmonic,
    Instrument,
    Reverb,
    Sinusoidal,
    Wavetable,
    build_processor,
    processor_settings,
    processor_types,
    render,
)
from ddsp_core.synths import harmonic_synthesis, sinusoidal_synthesis, wavetable_synthesis

N_FRAMES, HOP = 12, 64
N_SAMPLES = N_FRAMES * HOP


def _raw(sizes: dict[str, int], seed: int = 0) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.key(seed), len(sizes))
    return {name: jax.random.normal(k, (N_FRAMES, size)) for (name, size), k in zip(sizes.items(), keys)}


F0 = jnp.linspace(200.0, 400.0, N_FRAMES)


def test_harmonic_controls_follow_magenta_and_the_signal_is_harmonic_synthesis():
    synth = Harmonic(n_harmonics=20, sample_rate=16000)
    raw = _raw(synth.control_sizes())
    controls = synth.get_controls(raw, F0)
    np.testing.assert_allclose(np.asarray(controls["amplitude"]), np.asarray(exp_sigmoid(raw["amplitude"][:, 0])))
    np.testing.assert_allclose(np.asarray(controls["harmonic_distribution"].sum(-1)), 1.0, rtol=1e-5)
    above_nyquist = np.arange(1, 21)[None, :] * np.asarray(F0)[:, None] >= 8000.0
    assert np.all(np.asarray(controls["harmonic_distribution"])[above_nyquist] == 0.0)
    signal = synth.get_signal(controls, n_samples=N_SAMPLES, key=jax.random.key(0))
    expected = harmonic_synthesis(controls["amplitude"], controls["harmonic_distribution"], F0,
                                  n_samples=N_SAMPLES, sample_rate=16000)
    np.testing.assert_array_equal(np.asarray(signal), np.asarray(expected))


def test_filtered_noise_controls_start_quiet_and_the_signal_uses_the_key():
    noise = FilteredNoise(n_bands=7, window_size=33)
    raw = _raw(noise.control_sizes())
    controls = noise.get_controls(raw, F0)
    np.testing.assert_allclose(np.asarray(controls["magnitudes"]),
                               np.asarray(filtered_noise_controls(raw["magnitudes"], initial_bias=-5.0)))
    a = noise.get_signal(controls, n_samples=N_SAMPLES, key=jax.random.key(1))
    b = noise.get_signal(controls, n_samples=N_SAMPLES, key=jax.random.key(2))
    expected = filtered_noise(controls["magnitudes"], n_samples=N_SAMPLES, window_size=33, key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(expected))
    assert float(jnp.max(jnp.abs(a - b))) > 0.0
    assert FilteredNoise.stochastic and not Harmonic.stochastic


def test_sinusoidal_frequencies_are_on_a_midi_scale_and_the_signal_is_the_sinusoidal_bank():
    bank = Sinusoidal(n_sinusoids=3)
    raw = _raw(bank.control_sizes())
    controls = bank.get_controls(raw, F0)
    expected_hz = midi_to_hz(127.0 * jax.nn.sigmoid(raw["frequencies"]))
    np.testing.assert_allclose(np.asarray(controls["frequencies_hz"]), np.asarray(expected_hz), rtol=1e-6)
    assert float(controls["frequencies_hz"].min()) > 8.0 and float(controls["frequencies_hz"].max()) < 12600.0
    signal = bank.get_signal(controls, n_samples=N_SAMPLES, key=jax.random.key(0))
    expected = sinusoidal_synthesis(controls["amplitudes"], controls["frequencies_hz"], n_samples=N_SAMPLES,
                                    sample_rate=16000)
    np.testing.assert_array_equal(np.asarray(signal), np.asarray(expected))


def test_wavetable_draws_a_bipolar_table_per_frame_and_plays_it_at_f0():
    table = Wavetable(n_points=16)
    raw = _raw(table.control_sizes())
    controls = table.get_controls(raw, F0)
    assert float(jnp.max(jnp.abs(controls["wavetable"]))) < 1.0
    signal = table.get_signal(controls, n_samples=N_SAMPLES, key=jax.random.key(0))
    expected = wavetable_synthesis(controls["amplitude"], controls["wavetable"], F0, n_samples=N_SAMPLES,
                                   sample_rate=16000)
    np.testing.assert_array_equal(np.asarray(signal), np.asarray(expected))


def test_the_three_reverbs_apply_their_impulse_response_and_keep_the_dry_signal():
    audio = jax.random.uniform(jax.random.key(3), (N_SAMPLES,), minval=-1.0)
    learned = Reverb(ir_length=100, key=jax.random.key(0))
    decaying = ExpDecayReverb(ir_length=100, gain=1.0, decay=3.0, seed=5)
    shaped = FilteredNoiseReverb(ir_length=100, n_bands=6, n_ir_frames=10, key=jax.random.key(1))
    np.testing.assert_allclose(np.asarray(learned.apply({}, audio)),
                               np.asarray(reverb(audio, learned.impulse_response)), rtol=1e-6, atol=1e-7)
    expected_ir = exp_decay_impulse_response(1.0, 3.0, ir_length=100, key=jax.random.key(5))
    np.testing.assert_array_equal(np.asarray(decaying.get_impulse_response()), np.asarray(expected_ir))
    for effect in (learned, decaying, shaped):
        ir = effect.get_impulse_response()
        assert ir.shape == (100,) and bool(jnp.all(jnp.isfinite(ir)))
        np.testing.assert_allclose(np.asarray(effect.apply({}, audio)), np.asarray(reverb(audio, ir)),
                                   rtol=1e-5, atol=1e-6)
    learnable = [leaf.shape for leaf in jax.tree.leaves(eqx.filter(shaped, eqx.is_inexact_array))]
    assert learnable == [(10, 6)]


@pytest.fixture(scope="module")
def instrument() -> Instrument:
    return Instrument(
        sources=(Harmonic(n_harmonics=8), FilteredNoise(n_bands=5), Harmonic(n_harmonics=4, name="octave")),
        weights=(1.0, 0.1, 0.5),
        effects=(Reverb(ir_length=64, key=jax.random.key(0)),),
        hop_size=HOP,
    )


def test_instrument_heads_are_namespaced_by_processor_in_signal_order(instrument):
    assert instrument.control_sizes() == {
        "harmonic/amplitude": 1, "harmonic/harmonic_distribution": 8, "noise/magnitudes": 5,
        "octave/amplitude": 1, "octave/harmonic_distribution": 4,
    }


def test_render_is_the_weighted_sum_of_the_sources_through_the_effects(instrument):
    raw = _raw(instrument.control_sizes(), seed=4)
    key = jax.random.key(9)
    rendered = jax.jit(lambda r, f, k: render(instrument, r, f, key=k))(raw, F0, key)
    controls = instrument.get_controls(raw, F0)
    signals = {
        source.name: source.get_signal(controls[source.name], n_samples=N_SAMPLES, key=jax.random.fold_in(key, i))
        for i, source in enumerate(instrument.sources)
    }
    mix = signals["harmonic"] + 0.1 * signals["noise"] + 0.5 * signals["octave"]
    expected = reverb(mix, instrument.effects[0].impulse_response)
    np.testing.assert_allclose(np.asarray(rendered.audio), np.asarray(expected), rtol=1e-5, atol=1e-6)
    for name, signal in signals.items():
        np.testing.assert_allclose(np.asarray(rendered.signals[name]), np.asarray(signal), rtol=1e-5, atol=1e-6)
    assert set(rendered.controls) == {"harmonic", "noise", "octave", "reverb"}


def test_render_under_vmap_and_grad_reaches_the_learnable_reverb(instrument):
    raw = jax.tree.map(lambda x: jnp.stack([x, -x]), _raw(instrument.control_sizes()))
    f0 = jnp.stack([F0, F0 * 1.5])

    def loss(inst):
        keys = jax.random.split(jax.random.key(0), 2)
        audio = jax.vmap(lambda r, f, k: render(inst, r, f, key=k).audio)(raw, f0, keys)
        return jnp.sum(audio**2)

    grads = eqx.filter_grad(loss)(instrument)
    assert float(jnp.max(jnp.abs(grads.effects[0].impulse_response))) > 0.0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Instrument(sources=()), "at least one source"),
        (lambda: Instrument(sources=(Harmonic(),), weights=(1.0, 2.0)), "one entry per source"),
        (lambda: Instrument(sources=(Harmonic(), Harmonic())), "repeated: harmonic"),
        (lambda: Instrument(sources=(Reverb(ir_length=8, key=jax.random.key(0)),)), "must be Source"),
        (lambda: Instrument(sources=(Harmonic(),), weights=(float("nan"),)), "finite"),
        (lambda: Harmonic(n_harmonics=0), "n_harmonics"),
        (lambda: Harmonic(name="a/b"), "name"),
        (lambda: FilteredNoiseReverb(ir_length=100, n_ir_frames=7, key=jax.random.key(0)), "multiple of"),
    ],
)
def test_bad_processors_and_instruments_are_refused_naming_what_is_wrong(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_build_processor_from_a_description_refuses_unknown_types_and_settings():
    synth = build_processor("harmonic", {"n_harmonics": 5}, sample_rate=22050, key=jax.random.key(0))
    assert isinstance(synth, Harmonic) and (synth.n_harmonics, synth.sample_rate) == (5, 22050)
    room = build_processor("reverb", {"ir_length": 10}, sample_rate=16000, key=jax.random.key(0))
    assert room.impulse_response.shape == (10,)
    assert "sinusoidal" in processor_types() and "exp_decay_reverb" in processor_types()
    assert "key" not in processor_settings("reverb") and "sample_rate" not in processor_settings("harmonic")
    with pytest.raises(ValueError, match="unknown processor type 'theremin'; expected one of"):
        build_processor("theremin", {}, sample_rate=16000, key=jax.random.key(0))
    with pytest.raises(ValueError, match="has no setting n_bandz; valid settings: n_bands"):
        build_processor("filtered_noise", {"n_bandz": 3}, sample_rate=16000, key=jax.random.key(0))
    with pytest.raises(ValueError, match="cannot be imported"):
        build_processor("no_such_module:Voice", {}, sample_rate=16000, key=jax.random.key(0))
    by_path = build_processor("ddsp_core.processors:Sinusoidal", {"n_sinusoids": 2}, sample_rate=16000,
                              key=jax.random.key(0))
    assert isinstance(by_path, Sinusoidal) and by_path.n_sinusoids == 2
