"""The streaming engine (ddsp_core.stream_engine) and every built-in processor's block form, against offline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core import processors, stream_engine
from ddsp_core.model import autoencode, build_autoencoder
from tests.helpers import assert_close_relative

HOP = 64
N_FRAMES = 48
REL_TOL = 1e-5
BLOCKINGS = {"1 hop": [1] * N_FRAMES, "4 hops": [4] * 12, "16 hops": [16] * 3, "uneven": [3, 1, 7, 3, 16, 1, 7, 3, 7]}
ALL_PROCESSORS = [
    {"type": "harmonic", "n_harmonics": 12, "weight": 1.0},
    {"type": "filtered_noise", "n_bands": 9, "weight": 0.1},
    {"type": "sinusoidal", "n_sinusoids": 4, "weight": 0.3},
    {"type": "wavetable", "n_points": 16, "weight": 0.2},
    {"type": "reverb", "ir_length": 300},
    {"type": "exp_decay_reverb", "ir_length": 200, "name": "room"},
    {"type": "filtered_noise_reverb", "ir_length": 250, "n_bands": 5, "n_ir_frames": 5, "name": "hall"},
]


def _model(entries, *, hop_size=HOP, hidden_size=16, seed=0):
    return build_autoencoder(entries, hidden_size=hidden_size, n_mlp_layers=1, hop_size=hop_size,
                             key=jax.random.key(seed))


def _features(n_frames=N_FRAMES, seed=1):
    rng = np.random.default_rng(seed)
    f0_hz = (220.0 * 2.0 ** np.cumsum(rng.normal(0.0, 0.03, n_frames))).astype(np.float32)
    loudness_db = np.linspace(-60.0, -10.0, n_frames).astype(np.float32) + rng.normal(0, 2, n_frames).astype(np.float32)
    return f0_hz, loudness_db


def _stream_model(model, sizes, f0_hz, loudness_db, key):
    step = jax.jit(stream_engine.process_block)
    state, outputs, start = stream_engine.init_state(model, key=key), [], 0
    for size in sizes:
        state, audio = step(model, state, f0_hz[start : start + size], loudness_db[start : start + size])
        outputs.append(np.asarray(audio))
        start += size
    return np.concatenate(outputs)


@pytest.mark.parametrize("blocking", list(BLOCKINGS))
def test_streamed_model_equals_offline_autoencode_delayed_by_latency(blocking):
    """Every built-in source and effect at once (weighted sum, three reverbs in series), any blocking."""
    model = _model(ALL_PROCESSORS)
    f0_hz, loudness_db = _features()
    key = jax.random.key(3)
    offline = np.asarray(autoencode(model, f0_hz, loudness_db, key=key).audio)
    latency = stream_engine.latency_samples(model)
    assert latency == HOP
    streamed = _stream_model(model, BLOCKINGS[blocking], f0_hz, loudness_db, key)
    assert_close_relative(streamed[latency:], offline[: N_FRAMES * HOP - latency], REL_TOL)


def test_stream_latency_follows_the_slowest_source_and_the_others_wait():
    """Hop 32: the 65-band noise filters read 62 samples ahead, more than the oscillators' one hop."""
    model = _model([{"type": "harmonic", "n_harmonics": 8}, {"type": "filtered_noise", "n_bands": 65, "weight": 0.5}],
                   hop_size=32)
    assert stream_engine.latency_samples(model) == 62
    f0_hz, loudness_db = _features()
    key = jax.random.key(4)
    offline = np.asarray(autoencode(model, f0_hz, loudness_db, key=key).audio)
    streamed = _stream_model(model, BLOCKINGS["uneven"], f0_hz, loudness_db, key)
    assert_close_relative(streamed[62:], offline[: N_FRAMES * 32 - 62], REL_TOL)


def _random_controls(processor, n_frames, f0_hz, seed):
    rng = np.random.default_rng(seed)
    raw = {name: jnp.asarray(rng.normal(0.0, 1.0, (n_frames, size)), jnp.float32)
           for name, size in processor.control_sizes().items()}
    return processor.get_controls(raw, jnp.asarray(f0_hz))


@pytest.mark.parametrize("blocking", ["4 hops", "uneven"])
@pytest.mark.parametrize("index", range(4), ids=[entry["type"] for entry in ALL_PROCESSORS[:4]])
def test_each_source_block_form_equals_its_offline_signal(index, blocking):
    source = _model(ALL_PROCESSORS).instrument.sources[index]
    f0_hz, _ = _features(seed=index)
    controls = _random_controls(source, N_FRAMES, f0_hz, seed=index)
    key = jax.random.key(5)
    offline = np.asarray(source.get_signal(controls, n_samples=N_FRAMES * HOP, key=key))
    latency = source.stream_latency(hop_size=HOP) + 10  # any latency at least the smallest
    state, outputs, start = source.init_stream(hop_size=HOP, latency_samples=latency), [], 0
    step = jax.jit(lambda s, c: source.stream_signal(s, c, hop_size=HOP, key=key))
    for size in BLOCKINGS[blocking]:
        state, audio = step(state, {name: value[start : start + size] for name, value in controls.items()})
        outputs.append(np.asarray(audio))
        start += size
    streamed = np.concatenate(outputs)
    silent = latency - source.stream_latency(hop_size=HOP) if index == 1 else latency  # noise: pre-ringing
    np.testing.assert_array_equal(streamed[:silent], 0.0)
    assert_close_relative(streamed[latency:], offline[: N_FRAMES * HOP - latency], REL_TOL)


@pytest.mark.parametrize("index", range(3), ids=[entry["type"] for entry in ALL_PROCESSORS[4:]])
def test_each_effect_block_form_equals_its_offline_apply(index):
    effect = _model(ALL_PROCESSORS).instrument.effects[index]
    audio = np.random.default_rng(6).uniform(-1.0, 1.0, N_FRAMES * HOP).astype(np.float32)
    offline = np.asarray(effect.apply({}, jnp.asarray(audio)))
    state, outputs, start = effect.init_stream(hop_size=HOP), [], 0
    step = jax.jit(lambda s, a: effect.stream_apply(s, {}, a, hop_size=HOP))
    for size in BLOCKINGS["uneven"]:
        state, out = step(state, audio[start * HOP : (start + size) * HOP])
        outputs.append(np.asarray(out))
        start += size
    assert_close_relative(np.concatenate(outputs), offline, REL_TOL)


def test_state_from_another_model_is_refused_naming_the_array():
    small, large = _model(ALL_PROCESSORS[:2], hidden_size=16), _model(ALL_PROCESSORS[:2], hidden_size=32)
    state = stream_engine.init_state(small, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"state\.hidden has shape \(16,\) float32, expected \(32,\)"):
        stream_engine.process_block(large, state, np.full(2, 220.0, np.float32), np.full(2, -30.0, np.float32))
    other = _model(ALL_PROCESSORS[:1])
    with pytest.raises(ValueError, match="another structure"):
        stream_engine.process_block(other, state, np.full(2, 220.0, np.float32), np.full(2, -30.0, np.float32))


def test_mismatched_feature_lengths_are_refused():
    """A ValueError naming both arguments (the suite's jaxtyping hook refuses it first, also naming them)."""
    model = _model(ALL_PROCESSORS[:1])
    state = stream_engine.init_state(model, key=jax.random.key(0))
    with pytest.raises((ValueError, TypeError), match="loudness_db"):
        stream_engine.process_block(model, state, np.full(2, 220.0, np.float32), np.full(3, -30.0, np.float32))


def test_processor_without_block_form_is_named():
    class Click(processors.Source):
        name: str = "click"

        def get_signal(self, controls, *, n_samples, key):
            return jnp.zeros(n_samples)

    instrument = processors.Instrument(sources=(Click(),), sample_rate=16000, hop_size=HOP)
    model = _model(ALL_PROCESSORS[:1])
    model = type(model)(instrument=instrument, decoder=_decoder_for(instrument), encoder=None)
    with pytest.raises(NotImplementedError, match="processor 'click' \\(Click\\) has no block form"):
        stream_engine.init_state(model, key=jax.random.key(0))


def _decoder_for(instrument):
    from ddsp_core.decoder import DDSPDecoder

    return DDSPDecoder(output_sizes=instrument.control_sizes() or {"unused": 1}, hidden_size=8, n_mlp_layers=1,
                       key=jax.random.key(0))


def test_state_spec_names_every_array_with_shape_and_dtype():
    model = _model(ALL_PROCESSORS[:2] + ALL_PROCESSORS[4:5])
    spec = dict((name, (shape, dtype)) for name, shape, dtype in stream_engine.state_spec(model))
    assert spec[".hidden"] == ((16,), "float32")
    assert spec[".effects[0].spectra"] == ((-(-300 // HOP) - 1, HOP + 1, 2), "float32")
    assert spec[".key_data"] == ((2,), "uint32")
