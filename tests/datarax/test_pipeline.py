"""Tests for ddsp_datarax.pipeline: the composite's shape, datarax 0.1.4's traps, and a real datarax pipeline."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from datarax.core.config import OperatorConfig
from datarax.core.operator import OperatorModule
from datarax.operators.composite_operator import CompositeOperatorConfig, CompositeOperatorModule, CompositionStrategy
from datarax.sources.memory_source import MemorySource, MemorySourceConfig
from flax import nnx

from ddsp_core.crepe import init_crepe_params
from ddsp_core.decoder import DDSPDecoder
from ddsp_core.effects import reverb
from ddsp_core.model import DDSPAutoencoder
from ddsp_core.noise import filtered_noise
from ddsp_core.processors import FilteredNoise, Harmonic, Instrument, Reverb
from ddsp_core.synths import harmonic_synthesis
from ddsp_datarax.operators import (
    AUDIO,
    F0_CONFIDENCE,
    F0_HZ,
    LOUDNESS_DB,
    SYNTH_AUDIO,
    EffectOperator,
    SourceOperator,
)
from ddsp_datarax.pipeline import build_resynthesis_pipeline, composite_from_instrument, composite_random_params
from tests.datarax._controls import HOP, N_BANDS, N_HARMONICS, N_SAMPLES, random_controls, small_instrument


@pytest.fixture(scope="module")
def instrument() -> Instrument:
    return small_instrument()


@pytest.fixture(scope="module")
def composite(instrument) -> CompositeOperatorModule:
    return composite_from_instrument(instrument, rngs=nnx.Rngs(0))


def test_composite_is_sequential_of_weighted_parallel_harmonic_noise_then_reverb(composite):
    assert composite.config.strategy is CompositionStrategy.SEQUENTIAL
    mix, room = composite.operators
    assert mix.config.strategy is CompositionStrategy.WEIGHTED_PARALLEL
    assert mix.config.weights == [1.0, 0.1]
    assert [type(op.processor.get_value()) for op in mix.operators] == [Harmonic, FilteredNoise]
    assert isinstance(room, EffectOperator) and isinstance(room.processor.get_value(), Reverb)
    assert composite.config.stochastic  # inherited from the noise operator


def test_composite_output_is_reverb_of_harmonic_plus_tenth_of_noise(composite, instrument):
    element = random_controls()
    key = jax.random.key(4)
    out, _, _ = jax.jit(lambda d, k: composite.apply(d, {}, None, composite_random_params(instrument, k)))(element, key)
    harmonic = harmonic_synthesis(
        element["harmonic/amplitude"], element["harmonic/harmonic_distribution"], element["harmonic/f0_hz"],
        n_samples=N_SAMPLES, sample_rate=16000,
    )
    noise = filtered_noise(element["noise/magnitudes"], n_samples=N_SAMPLES, key=jax.random.fold_in(key, 1))
    expected = reverb(harmonic + 0.1 * noise, instrument.effects[0].impulse_response)
    assert set(out) == {SYNTH_AUDIO}
    np.testing.assert_allclose(np.asarray(out[SYNTH_AUDIO]), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_a_composite_follows_the_description_three_sources_no_effect():
    """Another description gives another composite: sources and weights in order, no reverb stage."""
    trio = Instrument(
        sources=(Harmonic(n_harmonics=3), FilteredNoise(n_bands=4), Harmonic(n_harmonics=2, name="octave")),
        weights=(1.0, 0.2, 0.5),
        hop_size=HOP,
    )
    composite = composite_from_instrument(trio, rngs=nnx.Rngs(0))
    (mix,) = composite.operators
    assert mix.config.weights == [1.0, 0.2, 0.5]
    assert [op.processor.get_value().name for op in mix.operators] == ["harmonic", "noise", "octave"]
    params = composite_random_params(trio, jax.random.key(0))
    assert params["operator_0"]["operator_0"] is None and params["operator_0"]["operator_2"] is None
    np.testing.assert_array_equal(
        jax.random.key_data(params["operator_0"]["operator_1"]), jax.random.key_data(jax.random.fold_in(jax.random.key(0), 1))
    )


class _PassThroughSignal(OperatorModule):
    """Returns its input dict plus a constant signal: what a naive synth operator would do."""

    def __init__(self, level: float):
        super().__init__(OperatorConfig())
        self.level = level

    def apply(self, data: dict, state: Any, metadata: Any, random_params: Any = None, stats: Any = None):
        return {**data, SYNTH_AUDIO: jnp.full((4,), self.level)}, state, metadata


def test_trap_weighted_parallel_scales_pass_through_fields_so_our_synths_return_only_the_signal(composite):
    naive = CompositeOperatorModule(
        CompositeOperatorConfig(
            strategy=CompositionStrategy.WEIGHTED_PARALLEL,
            operators=[_PassThroughSignal(1.0), _PassThroughSignal(2.0)],
            weights=[1.0, 0.1],
        )
    )
    out, _, _ = naive.apply({F0_HZ: jnp.full((3,), 440.0)}, {}, None)
    # datarax 0.1.4: the untouched f0 comes out multiplied by 1.0 + 0.1.
    np.testing.assert_allclose(np.asarray(out[F0_HZ]), np.full(3, 484.0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out[SYNTH_AUDIO]), np.full(4, 1.2), rtol=1e-6)
    mixed, _, _ = composite.operators[0].apply(random_controls(), {}, None, {"operator_1": jax.random.key(0)})
    assert set(mixed) == {SYNTH_AUDIO}


def test_trap_shape_discovery_without_random_params_works_but_a_keyless_apply_is_refused(composite):
    element = random_controls()
    data_struct, _ = composite.get_output_structure(element, {})  # datarax's eval_shape path, no random params
    assert set(data_struct) == {SYNTH_AUDIO}
    with pytest.raises(ValueError, match="needs a PRNG key"):
        composite.apply(element, {}, None)  # a stochastic composite never falls back to a fixed key


def test_trap_graphdef_is_unhashable_so_it_is_closed_over_not_static(composite, instrument):
    graphdef, state = nnx.split(composite)
    with pytest.raises(TypeError):
        hash(graphdef)
    element = random_controls()

    def run(g, s, d):
        keys = composite_random_params(instrument, jax.random.key(1))
        return nnx.merge(g, s).apply(d, {}, None, keys)[0][SYNTH_AUDIO]

    with pytest.raises((TypeError, ValueError)):
        jax.jit(run, static_argnums=0)(graphdef, state, element)
    closed = jax.jit(lambda s, d: run(graphdef, s, d))(state, element)
    eager = run(graphdef, state, element)
    np.testing.assert_allclose(np.asarray(closed), np.asarray(eager), rtol=1e-5, atol=1e-6)


def test_real_datarax_pipeline_runs_jitted_with_finite_features_at_every_stage(composite, instrument):
    """source -> batch -> CrepeF0 -> Loudness -> DecoderControls -> composite, through Pipeline.step (nnx.jit)."""
    n_samples, batch_size, n_frames = 1024, 2, 1024 // HOP
    t = np.arange(n_samples) / 16000.0
    audio = np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in (220.0, 330.0, 440.0, 550.0)]).astype(np.float32)
    source = MemorySource(MemorySourceConfig(), {AUDIO: audio}, rngs=nnx.Rngs(0))
    decoder = DDSPDecoder(output_sizes=instrument.control_sizes(), hidden_size=8, n_mlp_layers=1, key=jax.random.key(0))
    pipeline = build_resynthesis_pipeline(
        source=source,
        crepe_params=init_crepe_params(jax.random.key(1), model="tiny"),
        model=DDSPAutoencoder(instrument=instrument, decoder=decoder),
        composite=composite,
        batch_size=batch_size,
        rngs=nnx.Rngs(2),
    )
    first = pipeline.step()
    second = pipeline.step()
    expected_shapes = {
        AUDIO: (batch_size, n_samples),
        F0_HZ: (batch_size, n_frames),  # CrepeF0
        F0_CONFIDENCE: (batch_size, n_frames),
        LOUDNESS_DB: (batch_size, n_frames),  # Loudness
        "harmonic/amplitude": (batch_size, n_frames),  # DecoderControls
        "harmonic/f0_hz": (batch_size, n_frames),
        "harmonic/harmonic_distribution": (batch_size, n_frames, N_HARMONICS),
        "noise/magnitudes": (batch_size, n_frames, N_BANDS),
        SYNTH_AUDIO: (batch_size, n_samples),  # composite
    }
    for batch in (first, second):
        assert {k: tuple(v.shape) for k, v in batch.items()} == expected_shapes
        for name, value in batch.items():
            assert bool(jnp.all(jnp.isfinite(value))), name
    np.testing.assert_allclose(np.asarray(second[AUDIO]), audio[2:4])  # the source advanced by one batch
    assert float(jnp.max(jnp.abs(first[SYNTH_AUDIO]))) > 0.0
    assert float(jnp.max(jnp.abs(first[F0_CONFIDENCE]))) <= 1.0
