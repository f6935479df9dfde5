"""A processor written outside the library (an FM voice, defined in this file) trains without editing any library
file: through the pure path and through the datarax composite, with the same audio and the same gradients."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float

from ddsp_core.core import exp_sigmoid, upsample_linear
from ddsp_core.decoder import DDSPDecoder
from ddsp_core.model import DDSPAutoencoder, autoencode, reconstruction_loss
from ddsp_core.processors import FilteredNoise, Instrument, Reverb, Source
from ddsp_datarax.pipeline import composite_from_instrument, datarax_autoencode, datarax_params_to_model, make_datarax_loss

HOP, N_FRAMES = 64, 24
N_SAMPLES = HOP * N_FRAMES
FFT_SIZES = (256, 128, 64)


class FMVoice(Source):
    """Two-operator FM: ``a(t) sin(phi(t) + I(t) sin(r phi(t)))``, ``phi`` the carrier phase at f0.

    Controls: amplitude ``exp_sigmoid``, modulation index ``4 sigmoid``; the frequency ratio ``r`` is a learnable
    scalar (stored as its log), so the processor has a parameter of its own.
    """

    log_ratio: Float[Array, ""]
    sample_rate: int = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, *, ratio: float = 2.0, sample_rate: int = 16000, name: str = "fm"):
        self.log_ratio = jnp.asarray(math.log(ratio), jnp.float32)
        self.sample_rate, self.name = sample_rate, name

    def control_sizes(self):
        return {"amplitude": 1, "index": 1}

    def get_controls(self, raw, f0_hz):
        return {
            "amplitude": exp_sigmoid(raw["amplitude"][:, 0]),
            "index": 4.0 * jax.nn.sigmoid(raw["index"][:, 0]),
            "f0_hz": f0_hz,
        }

    def get_signal(self, controls, *, n_samples, key):
        del key
        envelopes = upsample_linear(
            jnp.stack([controls["f0_hz"], controls["amplitude"], controls["index"]], axis=-1), n_samples
        )  # [n_samples, 3]
        f0_hz, amplitude, index = envelopes[:, 0], envelopes[:, 1], envelopes[:, 2]
        phase = 2.0 * jnp.pi * jnp.cumsum(f0_hz) / self.sample_rate
        return amplitude * jnp.sin(phase + index * jnp.sin(jnp.exp(self.log_ratio) * phase))


def _model() -> DDSPAutoencoder:
    instrument = Instrument(
        sources=(FMVoice(ratio=1.5), FilteredNoise(n_bands=5)),
        weights=(1.0, 0.1),
        effects=(Reverb(ir_length=128, key=jax.random.key(1)),),
        hop_size=HOP,
    )
    decoder = DDSPDecoder(output_sizes=instrument.control_sizes(), hidden_size=16, n_mlp_layers=1,
                          key=jax.random.key(2))
    return DDSPAutoencoder(instrument=instrument, decoder=decoder)


def _batch():
    t = jnp.arange(N_SAMPLES) / 16000.0
    audio = jnp.stack([0.3 * jnp.sin(2 * jnp.pi * 220.0 * t + 2.0 * jnp.sin(2 * jnp.pi * 440.0 * t)),
                       0.2 * jnp.sin(2 * jnp.pi * 330.0 * t)])
    f0 = jnp.stack([jnp.full((N_FRAMES,), 220.0), jnp.full((N_FRAMES,), 330.0)])
    ld = jnp.stack([jnp.full((N_FRAMES,), -20.0), jnp.full((N_FRAMES,), -25.0)])
    return audio, f0, ld


def test_a_user_processor_renders_the_same_audio_through_both_paths():
    model = _model()
    _, f0, ld = _batch()
    key = jax.random.key(5)
    pure = autoencode(model, f0[0], ld[0], key=key).audio  # both eager: the same ops in the same order
    composite = composite_from_instrument(model.instrument, rngs=nnx.Rngs(0))
    via_datarax = datarax_autoencode(model, composite, f0[0], ld[0], key=key)
    assert float(jnp.max(jnp.abs(pure))) > 1e-3
    np.testing.assert_allclose(np.asarray(via_datarax), np.asarray(pure), rtol=0, atol=1e-6)


def test_a_user_processor_trains_with_the_same_gradients_through_both_paths():
    model = _model()
    audio, f0, ld = _batch()
    key = jax.random.key(7)
    pure_loss, pure_grads = eqx.filter_jit(
        eqx.filter_value_and_grad(lambda m: reconstruction_loss(m, audio, f0, ld, key=key, fft_sizes=FFT_SIZES))
    )(model)
    loss_fn, params = make_datarax_loss(model, rngs=nnx.Rngs(0), fft_sizes=FFT_SIZES)
    dr_loss, dr_grads = eqx.filter_jit(eqx.filter_value_and_grad(lambda p: loss_fn(p, audio, f0, ld, key=key)))(params)
    np.testing.assert_allclose(float(dr_loss), float(pure_loss), rtol=1e-6)
    as_model = datarax_params_to_model(dr_grads, model)
    pure_leaves = jax.tree.leaves(eqx.filter(pure_grads, eqx.is_inexact_array))
    dr_leaves = jax.tree.leaves(eqx.filter(as_model, eqx.is_inexact_array))
    assert len(pure_leaves) == len(dr_leaves)
    for p, d in zip(pure_leaves, dr_leaves):
        np.testing.assert_allclose(np.asarray(d), np.asarray(p), rtol=0, atol=1e-5)
    assert abs(float(pure_grads.instrument.sources[0].log_ratio)) > 1e-6  # the voice's own parameter learns


def test_a_few_adam_steps_on_the_user_processor_lower_the_loss_on_both_paths():
    model = _model()
    audio, f0, ld = _batch()
    key = jax.random.key(3)
    optimizer = optax.adam(3e-3)
    loss_fn, datarax_params = make_datarax_loss(model, rngs=nnx.Rngs(0), fft_sizes=FFT_SIZES)
    losses = {
        "pure": lambda p: reconstruction_loss(p, audio, f0, ld, key=key, fft_sizes=FFT_SIZES),
        "datarax": lambda p: loss_fn(p, audio, f0, ld, key=key),
    }
    results = {}
    for path, start in (("pure", model), ("datarax", datarax_params)):
        trainable, static = eqx.partition(start, eqx.is_inexact_array)

        @jax.jit
        def run(trainable, loss=losses[path], static=static):
            def body(carry, _):
                t, state = carry
                value, grads = jax.value_and_grad(lambda x: loss(eqx.combine(x, static)))(t)
                updates, state = optimizer.update(grads, state, t)
                return (optax.apply_updates(t, updates), state), value

            (t, _), values = jax.lax.scan(body, (trainable, optimizer.init(trainable)), None, length=5)
            return t, values

        final, values = run(trainable)
        results[path] = (eqx.combine(final, static), np.asarray(values))
    for path, (_, values) in results.items():
        assert values[-1] < values[0], (path, values)
    np.testing.assert_allclose(results["datarax"][1], results["pure"][1], rtol=1e-4)
    trained_via_datarax = datarax_params_to_model(results["datarax"][0], model)
    np.testing.assert_allclose(float(trained_via_datarax.instrument.sources[0].log_ratio),
                               float(results["pure"][0].instrument.sources[0].log_ratio), rtol=1e-4, atol=1e-6)
