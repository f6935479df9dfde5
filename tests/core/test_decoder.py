"""Tests for ddsp_core.decoder: named outputs, vmap/jit, the hoisted GRU, causality, parameter count, gradients,
for both decoders (one input layer, and magenta's RnnFcDecoder)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core.decoder import (
    DDSPDecoder,
    MfccEncoder,
    RnnFcDecoder,
    gru_over_frames,
    keras_initialise,
    decoder_parameter_count,
    parameter_count,
    parameter_summary,
    scale_decoder_inputs,
)

N_FRAMES = 12
OUTPUTS = {"harmonic/amplitude": 1, "harmonic/harmonic_distribution": 7, "noise/magnitudes": 5}
SMALL = dict(output_sizes=OUTPUTS, hidden_size=16, n_mlp_layers=2)


def _features(n_frames: int = N_FRAMES, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    f0_hz = jnp.asarray(rng.uniform(80.0, 900.0, n_frames), dtype=jnp.float32)
    loudness_db = jnp.asarray(rng.uniform(-80.0, 0.0, n_frames), dtype=jnp.float32)
    return f0_hz, loudness_db


@pytest.fixture(scope="module", params=[DDSPDecoder, RnnFcDecoder], ids=["linear", "rnn_fc"])
def decoder(request):
    return request.param(**SMALL, key=jax.random.key(0))


def test_outputs_are_named_with_one_row_per_frame_and_the_declared_width(decoder):
    out = decoder(*_features())
    assert {name: value.shape for name, value in out.items()} == {
        name: (N_FRAMES, size) for name, size in OUTPUTS.items()
    }
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in out.values())


def test_gru_run_block_by_block_from_the_carried_state_equals_one_run():
    cell = eqx.nn.GRUCell(6, 9, key=jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (N_FRAMES, 6))
    whole = gru_over_frames(cell, xs)
    first = gru_over_frames(cell, xs[:5])
    second = gru_over_frames(cell, xs[5:], initial=first[-1])
    np.testing.assert_allclose(np.asarray(jnp.concatenate([first, second])), np.asarray(whole), rtol=1e-6, atol=1e-7)


def test_rnn_fc_decoder_skips_the_input_stacks_into_the_output_stack():
    """magenta's layout: one MLP per input, GRU over their concatenation, output MLP reads [inputs, GRU]."""
    decoder = RnnFcDecoder(**SMALL, key=jax.random.key(0))
    assert len(decoder.input_stacks) == 2 and all(len(stack) == 2 for stack in decoder.input_stacks)
    assert decoder.gru.input_size == 2 * 16
    assert decoder.output_stack[0].linear.in_features == 2 * 16 + 16
    with_z = RnnFcDecoder(**SMALL, z_dims=3, key=jax.random.key(0))
    assert len(with_z.input_stacks) == 3 and with_z.input_stacks[2][0].linear.in_features == 3


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
        for name in OUTPUTS:
            np.testing.assert_allclose(np.asarray(batched[name][i]), np.asarray(single[name]), rtol=1e-5, atol=1e-6)


def test_jit_matches_eager(decoder):
    f0, ld = _features()
    eager = decoder(f0, ld)
    jitted = eqx.filter_jit(lambda m, a, b: m(a, b))(decoder, f0, ld)
    for name in OUTPUTS:
        np.testing.assert_allclose(np.asarray(eager[name]), np.asarray(jitted[name]), rtol=1e-5, atol=1e-6)


def test_hoisted_gru_equals_stepping_equinox_grucell():
    cell = eqx.nn.GRUCell(6, 9, key=jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (N_FRAMES, 6))

    def step(h, x):
        h = cell(x, h)
        return h, h

    _, expected = jax.jit(lambda x: jax.lax.scan(step, jnp.zeros(9), x))(xs)
    got = jax.jit(lambda x: gru_over_frames(cell, x, unroll=1))(xs)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_scan_unroll_does_not_change_outputs(decoder):
    unrolled = type(decoder)(**SMALL, scan_unroll=4, key=jax.random.key(0))
    f0, ld = _features()
    a, b = decoder(f0, ld), unrolled(f0, ld)
    for name in OUTPUTS:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-5, atol=1e-6)


def test_decoder_is_causal_future_frames_do_not_change_the_past(decoder):
    f0, ld = _features()
    changed_ld = ld.at[8:].set(0.0)
    before = decoder(f0, ld)
    after = decoder(f0, changed_ld)
    name = "harmonic/harmonic_distribution"
    np.testing.assert_allclose(np.asarray(before[name][:8]), np.asarray(after[name][:8]))
    assert not np.allclose(np.asarray(before[name][8:]), np.asarray(after[name][8:]))


@pytest.mark.parametrize("z_dims", [0, 16])
def test_parameter_count_matches_the_formula_at_paper_sizes(z_dims):
    sizes = dict(hidden_size=512, n_mlp_layers=3, z_dims=z_dims)
    outputs = {"harmonic/amplitude": 1, "harmonic/harmonic_distribution": 100, "noise/magnitudes": 65}
    model = eqx.filter_eval_shape(lambda: DDSPDecoder(output_sizes=outputs, **sizes, key=jax.random.key(0)))
    assert parameter_count(model) == decoder_parameter_count(n_outputs=166, **sizes)
    # Independent hand count for the default decoder: 1,536 + 1,574,912 + 791,040 + 85,158.
    if z_dims == 0:
        assert parameter_count(model) == 2_452_646
    assert parameter_summary(model).splitlines()[-1].split()[-1] == f"{parameter_count(model):,}"


def test_parameter_count_of_a_real_module_equals_the_formula():
    decoder = DDSPDecoder(**SMALL, key=jax.random.key(0))
    assert parameter_count(decoder) == decoder_parameter_count(n_outputs=13, hidden_size=16, n_mlp_layers=2, z_dims=0)


def test_rnn_fc_parameter_count_matches_a_hand_count():
    h, layers, n_out = 16, 2, 13
    block = lambda n_in: n_in * h + h + 2 * h  # noqa: E731  Linear + LayerNorm scale/offset
    inputs = 2 * (block(1) + (layers - 1) * block(h))
    gru = 3 * h * (2 * h) + 3 * h * h + 4 * h
    output_stack = block(2 * h + h) + (layers - 1) * block(h)
    expected = inputs + gru + output_stack + h * n_out + n_out
    assert parameter_count(RnnFcDecoder(**SMALL, key=jax.random.key(0))) == expected


@pytest.mark.parametrize("cls", [DDSPDecoder, RnnFcDecoder])
def test_z_conditioning_changes_outputs_and_is_required(cls):
    model = cls(**SMALL, z_dims=3, key=jax.random.key(0))
    f0, ld = _features()
    z0 = jnp.zeros((N_FRAMES, 3))
    z1 = jnp.ones((N_FRAMES, 3))
    name = "harmonic/amplitude"
    assert not np.allclose(np.asarray(model(f0, ld, z0)[name]), np.asarray(model(f0, ld, z1)[name]))
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
    with pytest.raises(ValueError, match="noise/magnitudes"):
        RnnFcDecoder(**{**SMALL, "output_sizes": {**OUTPUTS, "noise/magnitudes": 0}}, key=jax.random.key(0))
    with pytest.raises(ValueError, match="at least one output"):
        DDSPDecoder(**{**SMALL, "output_sizes": {}}, key=jax.random.key(0))


def test_gradients_are_finite_for_unvoiced_frames_and_silence(decoder):
    f0 = jnp.zeros(N_FRAMES)
    ld = jnp.full((N_FRAMES,), -80.0)

    def loss(model, f0_hz):
        out = model(f0_hz, ld)
        return sum(jnp.sum(x**2) for x in out.values())

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


@pytest.mark.parametrize("cls", [DDSPDecoder, RnnFcDecoder], ids=["linear", "rnn_fc"])
def test_bfloat16_decoder_outputs_float32_close_to_float32_and_its_gradients_flow(cls):
    float32 = cls(**SMALL, key=jax.random.key(0))
    mixed = cls(**SMALL, decoder_dtype="bfloat16", key=jax.random.key(0))
    f0, ld = _features()
    out32, out16 = float32(f0, ld), mixed(f0, ld)
    for name, value in out16.items():
        assert value.dtype == jnp.float32
        scale = float(jnp.max(jnp.abs(out32[name])))
        error = float(jnp.max(jnp.abs(value - out32[name])))
        assert 0.0 < error < 2e-2 * scale, (name, error, scale)

    def loss(model):
        return sum(jnp.sum(jnp.sin(x)) for x in model(f0, ld).values())

    grads32 = jax.tree.leaves(eqx.filter_grad(loss)(float32))
    grads16 = jax.tree.leaves(eqx.filter_grad(loss)(mixed))
    assert len(grads16) == len(grads32)
    for g16, g32 in zip(grads16, grads32, strict=True):
        assert g16.dtype == jnp.float32  # float32 master weights get float32 gradients
        assert float(jnp.linalg.norm(g16 - g32)) < 0.1 * float(jnp.linalg.norm(g32)) + 1e-6


@pytest.mark.parametrize("cls", [DDSPDecoder, RnnFcDecoder], ids=["linear", "rnn_fc"])
def test_pallas_gru_decoder_equals_the_scan_decoder(cls):
    scan = cls(**SMALL, key=jax.random.key(0))
    pallas = cls(**SMALL, gru_impl="pallas", key=jax.random.key(0))
    f0, ld = (jnp.stack(pair) for pair in zip(_features(seed=1), _features(seed=2), strict=True))
    expected, got = jax.vmap(scan)(f0, ld), jax.vmap(pallas)(f0, ld)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5)


def test_unknown_gru_impl_or_decoder_dtype_is_rejected_with_the_argument_name():
    with pytest.raises(ValueError, match="gru_impl must be one of scan, pallas"):
        DDSPDecoder(**SMALL, gru_impl="cuda", key=jax.random.key(0))
    with pytest.raises(ValueError, match="decoder_dtype must be one of float32, bfloat16"):
        RnnFcDecoder(**SMALL, decoder_dtype="float16", key=jax.random.key(0))


@pytest.mark.parametrize("cls", [DDSPDecoder, RnnFcDecoder], ids=["linear", "rnn_fc"])
def test_loudness_reference_shifts_the_input_scaling_by_that_many_db(cls):
    """A decoder with ``loudness_ref_db=r`` reads loudness ``l`` as a reference-0 decoder reads ``l - r``."""
    f0_hz, loudness_db = _features()
    shifted = cls(**SMALL, loudness_ref_db=20.7, key=jax.random.key(0))
    plain = cls(**SMALL, key=jax.random.key(0))
    out, expected = shifted(f0_hz, loudness_db), plain(f0_hz, loudness_db - 20.7)
    for name in OUTPUTS:
        np.testing.assert_allclose(np.asarray(out[name]), np.asarray(expected[name]), rtol=1e-5, atol=1e-6)
    scaled = scale_decoder_inputs(np.array([440.0], np.float32), np.array([20.7], np.float32), loudness_ref_db=20.7)
    np.testing.assert_allclose(np.asarray(scaled)[0, 1], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="loudness_ref_db must be a finite number of dB, got nan"):
        cls(**SMALL, loudness_ref_db=float("nan"), key=jax.random.key(0))


@pytest.mark.parametrize("cls", [DDSPDecoder, RnnFcDecoder], ids=["linear", "rnn_fc"])
def test_keras_initialisation_is_glorot_orthogonal_with_zero_biases(cls):
    decoder = keras_initialise(cls(**SMALL, key=jax.random.key(0)), key=jax.random.key(1))
    linears = [leaf for leaf in jax.tree_util.tree_leaves(decoder, is_leaf=lambda x: isinstance(x, eqx.nn.Linear))
               if isinstance(leaf, eqx.nn.Linear)]
    assert len(linears) >= 4
    for layer in linears:
        fan_out, fan_in = layer.weight.shape
        assert float(jnp.abs(layer.weight).max()) <= np.sqrt(6.0 / (fan_in + fan_out)) + 1e-7
        assert float(jnp.abs(layer.bias).max()) == 0.0
    gru = decoder.gru
    hidden = gru.hidden_size
    assert float(jnp.abs(gru.bias).max()) == 0.0 and float(jnp.abs(gru.bias_n).max()) == 0.0
    # Keras's recurrent kernel (hidden, 3 hidden) has orthonormal rows: weight_hh (its transpose) orthonormal columns.
    gram = np.asarray(gru.weight_hh.T @ gru.weight_hh)
    np.testing.assert_allclose(gram, np.eye(hidden), atol=1e-5)
    assert float(jnp.abs(gru.weight_ih).max()) <= np.sqrt(6.0 / (gru.input_size + 3 * hidden)) + 1e-7
    # the same shapes and a working forward pass
    reference = cls(**SMALL, key=jax.random.key(0))
    assert jax.tree_util.tree_structure(decoder) == jax.tree_util.tree_structure(reference)
    out = decoder(*_features())
    assert {name: value.shape for name, value in out.items()} == {n: (N_FRAMES, s) for n, s in OUTPUTS.items()}


@pytest.mark.parametrize("cls", [DDSPDecoder, RnnFcDecoder], ids=["linear", "rnn_fc"])
def test_negative_and_nan_f0_frames_decode_as_unvoiced(cls):
    decoder = cls(**SMALL, key=jax.random.key(0))
    f0_hz, loudness_db = _features()
    bad = f0_hz.at[3].set(jnp.nan).at[7].set(-50.0)
    unvoiced = f0_hz.at[3].set(0.0).at[7].set(0.0)
    out, expected = decoder(bad, loudness_db), decoder(unvoiced, loudness_db)
    for name in OUTPUTS:
        assert bool(jnp.all(jnp.isfinite(out[name])))
        np.testing.assert_array_equal(np.asarray(out[name]), np.asarray(expected[name]))
