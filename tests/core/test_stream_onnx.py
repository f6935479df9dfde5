"""The block step as ONNX (ddsp_core.stream_onnx), run by onnxruntime against the in-process stream and jax."""

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime
import pytest
from jax import lax

from ddsp_core import stream_engine, stream_export
from ddsp_core.model import build_autoencoder
from ddsp_core.noise import frame_noise
from ddsp_core.stream_onnx import export_onnx, function_to_onnx
from tests.helpers import assert_close_relative

HOP = 64
N_BLOCKS = 5
PROCESSORS = [
    {"type": "harmonic", "n_harmonics": 100, "weight": 1.0},  # as the paper: up to 72 below Nyquist at 110 Hz
    {"type": "filtered_noise", "n_bands": 9, "weight": 0.1},
    {"type": "sinusoidal", "n_sinusoids": 4, "weight": 0.3},
    {"type": "reverb", "ir_length": 300},
]


def _session(proto) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(function, *arrays):
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
    shapes = jax.eval_shape(function, *specs)
    n_outputs = len(shapes) if isinstance(shapes, tuple) else 1
    proto = function_to_onnx(function, specs, input_names=[f"in{i}" for i in range(len(arrays))],
                             output_names=[f"out{i}" for i in range(n_outputs)])
    return _session(proto).run(None, {f"in{i}": a for i, a in enumerate(arrays)})


@pytest.mark.parametrize("block_frames", [1, 4])
def test_onnx_step_reproduces_the_in_process_stream_with_the_state_fed_back(block_frames):
    model = build_autoencoder(PROCESSORS, hidden_size=16, n_mlp_layers=1, hop_size=HOP, key=jax.random.key(0))
    key = jax.random.key(3)
    session = _session(export_onnx(model, block_frames=block_frames, key=key))
    names = stream_export.state_names(model)
    onnx_state = stream_export.initial_state_arrays(model, key=key)
    state, step = stream_engine.init_state(model, key=key), jax.jit(stream_engine.process_block)
    rng = np.random.default_rng(0)
    played, expected = [], []
    for _ in range(N_BLOCKS):
        f0_hz = (110.0 * 2 ** rng.normal(0, 0.05, block_frames)).astype(np.float32)
        loudness_db = rng.uniform(-60, -10, block_frames).astype(np.float32)
        *onnx_state, audio = session.run(None, {**dict(zip(names, onnx_state)), "f0_hz": f0_hz,
                                                "loudness_db": loudness_db})
        state, reference = step(model, state, f0_hz, loudness_db)
        played.append(audio)
        expected.append(np.asarray(reference))
    assert_close_relative(np.concatenate(played), np.concatenate(expected), 1e-4)
    for name, ours, theirs in zip(names, onnx_state, jax.tree_util.tree_leaves(state), strict=True):
        assert ours.dtype == theirs.dtype, name
        if np.issubdtype(ours.dtype, np.integer):  # frame counters and the PRNG key
            np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_uniform_noise_is_jax_s_bit_for_bit():
    """threefry (fold_in, random_bits) and the bits -> float bitcast, translated: identical samples."""
    key_data = np.asarray(jax.random.key_data(jax.random.key(7)))
    frames = np.array([0, 1, 5, 123456], np.int32)
    (noise,) = _run(lambda k, i: frame_noise(jax.random.wrap_key_data(k), i, frame_size=32), key_data, frames)
    expected = frame_noise(jax.random.key(7), frames, frame_size=32)
    np.testing.assert_array_equal(noise, np.asarray(expected))


def test_bitcast_decodes_special_bit_patterns_exactly():
    bits = np.array([0, 1, 0x007FFFFF, 0x00800000, 0x3F800000, 0x3F7FFFFF, 0x7F7FFFFF, 0x7F800000, 0xFF800000,
                     0x80000000, 0x80000001, 0xBF800000, 0x12345678], np.uint32)
    (decoded,) = _run(lambda b: lax.bitcast_convert_type(b, jnp.float32), bits)
    np.testing.assert_array_equal(decoded.view(np.uint32), bits)  # sign of zero, subnormals, infinities included
    (nan,) = _run(lambda b: lax.bitcast_convert_type(b, jnp.float32), np.array([0x7FC00000], np.uint32))
    assert np.isnan(nan[0])


def test_real_ffts_padding_and_associative_scans_match_jax():
    x = np.random.default_rng(1).normal(size=(3, 40)).astype(np.float32)

    def function(x):
        spectrum = jnp.fft.rfft(x, n=64, axis=1)
        back = jnp.fft.irfft(spectrum * spectrum, n=64, axis=1)
        spread = lax.pad(x, 0.5, [(1, -2, 0), (2, 1, 3)])
        prefix = lax.associative_scan(jnp.add, x, axis=1)
        return back, spread, prefix, jnp.abs(spectrum)

    for ours, theirs in zip(_run(function, x), jax.jit(function)(x), strict=True):
        assert_close_relative(ours, theirs, 1e-5)


def test_a_step_with_an_untranslated_primitive_is_refused_naming_it():
    model = build_autoencoder([{"type": "wavetable", "n_points": 16}], hidden_size=8, n_mlp_layers=1, hop_size=HOP,
                              key=jax.random.key(0))
    with pytest.raises(NotImplementedError, match="gather at data-dependent indices"):
        export_onnx(model, block_frames=2, key=jax.random.key(1))
