"""The same parameters through the pure path (ddsp_core.model) and the datarax composite: same audio, same gradients,
and one optax step over (Equinox decoder, nnx.Param state) that lowers the loss."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ddsp_core.model import DDSPAutoencoder, autoencode, build_autoencoder, reconstruction_loss
from ddsp_datarax.pipeline import (
    composite_from_instrument,
    datarax_autoencode,
    datarax_params_to_model,
    make_datarax_loss,
)

N_FRAMES = 16
HOP = 64
N_SAMPLES = N_FRAMES * HOP
BATCH = 2
FFT_SIZES = (256, 128, 64)


@pytest.fixture(scope="module")
def fresh_model() -> DDSPAutoencoder:
    entries = [
        {"type": "harmonic", "n_harmonics": 10, "weight": 1.0},
        {"type": "filtered_noise", "n_bands": 7, "weight": 0.1},
        {"type": "reverb", "ir_length": 300},
    ]
    return build_autoencoder(entries, hidden_size=16, n_mlp_layers=1, hop_size=HOP, key=jax.random.key(0))


def _ir(model: DDSPAutoencoder) -> jax.Array:
    return model.instrument.effects[0].impulse_response


def _state_ir(state) -> jax.Array:
    """The reverb's impulse response inside the composite's nnx state (sequential stage 1 holds the processor)."""
    return state["operators"][1]["processor"].get_value().impulse_response


@pytest.fixture(scope="module")
def model(fresh_model) -> DDSPAutoencoder:
    # A louder room than the quiet initial one, so the reverb's contribution is well above float32 noise.
    return eqx.tree_at(lambda m: m.instrument.effects[0].impulse_response, fresh_model, _ir(fresh_model) * 30.0)


@pytest.fixture(scope="module")
def batch() -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    f0 = jnp.asarray(rng.uniform(100.0, 600.0, (BATCH, N_FRAMES)), jnp.float32)
    ld = jnp.asarray(rng.uniform(-60.0, -10.0, (BATCH, N_FRAMES)), jnp.float32)
    t = jnp.arange(N_SAMPLES) / 16000.0
    tones = jnp.stack([0.3 * jnp.sin(2 * jnp.pi * 200.0 * t), 0.2 * jnp.sin(2 * jnp.pi * 350.0 * t)])
    return tones + 0.05 * jax.random.uniform(jax.random.key(9), (BATCH, N_SAMPLES), minval=-1.0), f0, ld


def test_same_parameters_give_the_same_audio_through_both_paths_jitted(model, batch):
    _, f0, ld = batch
    keys = jax.random.split(jax.random.key(7), BATCH)
    pure = eqx.filter_jit(lambda m, f0, ld, keys: jax.vmap(lambda f, l, k: autoencode(m, f, l, key=k).audio)(f0, ld, keys))(
        model, f0, ld, keys
    )
    composite = composite_from_instrument(model.instrument, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(composite)

    @eqx.filter_jit
    def via_datarax(model, state, f0, ld, keys):
        merged = nnx.merge(graphdef, state)
        return jax.vmap(lambda f, l, k: datarax_autoencode(model, merged, f, l, key=k))(f0, ld, keys)

    through_composite = via_datarax(model, state, f0, ld, keys)
    assert float(jnp.max(jnp.abs(pure))) > 0.01
    np.testing.assert_allclose(np.asarray(through_composite), np.asarray(pure), rtol=0, atol=1e-6)


def test_same_parameters_give_the_same_loss_and_gradients_for_decoder_and_ir(model, batch):
    audio, f0, ld = batch
    key = jax.random.key(11)
    loss_fn, params = make_datarax_loss(model, rngs=nnx.Rngs(0), fft_sizes=FFT_SIZES)
    pure_loss, pure_grads = eqx.filter_jit(
        eqx.filter_value_and_grad(lambda m, *data: reconstruction_loss(m, *data, key=key, fft_sizes=FFT_SIZES))
    )(model, audio, f0, ld)
    dr_loss, (dr_decoder_grads, dr_state_grads) = eqx.filter_jit(
        eqx.filter_value_and_grad(lambda p, *data: loss_fn(p, *data, key=key))
    )(params, audio, f0, ld)
    np.testing.assert_allclose(float(dr_loss), float(pure_loss), rtol=1e-6)
    pure_leaves = jax.tree.leaves(eqx.filter(pure_grads.decoder, eqx.is_inexact_array))
    dr_leaves = jax.tree.leaves(eqx.filter(dr_decoder_grads, eqx.is_inexact_array))
    assert len(pure_leaves) == len(dr_leaves) > 0
    for p, d in zip(pure_leaves, dr_leaves):
        np.testing.assert_allclose(np.asarray(d), np.asarray(p), rtol=0, atol=1e-5)
    dr_ir_grad = _state_ir(dr_state_grads)
    assert float(jnp.max(jnp.abs(_ir(pure_grads)))) > 1e-4
    np.testing.assert_allclose(np.asarray(dr_ir_grad), np.asarray(_ir(pure_grads)), rtol=0, atol=1e-5)


def test_one_optax_step_on_equinox_and_nnx_params_together_lowers_the_loss(fresh_model, batch):
    """Adam(1e-3), from the model's own initialisation: measured 10.77 -> 9.95 on this batch."""
    model = fresh_model
    audio, f0, ld = batch
    key = jax.random.key(3)
    loss_fn, params = make_datarax_loss(model, rngs=nnx.Rngs(0), fft_sizes=FFT_SIZES)
    trainable, static = eqx.partition(params, eqx.is_inexact_array)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(trainable)

    def loss_of(t, data):
        return loss_fn(eqx.combine(t, static), *data, key=key)

    @jax.jit
    def step(trainable, opt_state, data):
        loss, grads = jax.value_and_grad(loss_of)(trainable, data)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        new_trainable = optax.apply_updates(trainable, updates)
        return new_trainable, loss, loss_of(new_trainable, data)

    new_trainable, before, after = step(trainable, opt_state, (audio, f0, ld))
    assert float(after) < float(before)
    old_ir = _state_ir(params[1])
    new_ir = _state_ir(eqx.combine(new_trainable, static)[1])
    assert float(jnp.max(jnp.abs(new_ir - old_ir))) > 0.0  # the nnx.Param moved too
    back = datarax_params_to_model(eqx.combine(new_trainable, static), model)
    np.testing.assert_array_equal(np.asarray(_ir(back)), np.asarray(new_ir))
    new_decoder = eqx.combine(new_trainable, static)[0]
    np.testing.assert_array_equal(np.asarray(back.decoder.gru.weight_hh), np.asarray(new_decoder.gru.weight_hh))
