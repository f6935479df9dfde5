"""The model as the trainer sees it: build from a config, split into trainable arrays and static structure, and run a
batch through the pure path (``ddsp_core.model``) or the datarax path (the composite built from the same
instrument).

Both paths take the same parameters (an ``equinox.partition`` of :class:`ddsp_core.model.DDSPAutoencoder`), so
checkpoints, evaluation and resumption do not depend on the path; on the datarax path the processors' learnable
arrays are placed in the composite's ``nnx.Param`` inside the traced function, and gradients flow back to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ddsp_core.model import DDSPAutoencoder, batch_autoencode, build_autoencoder, reconstruction_loss
from ddsp_core.processors import ConvolutionReverb
from ddsp_core.spectral import multiscale_spectral_loss
from train.config import Config


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip) -> adam(learning_rate_schedule(config))`` (design.md 6)."""
    train = config.train
    return optax.chain(optax.clip_by_global_norm(train.grad_clip), optax.adam(learning_rate_schedule(config)))


def learning_rate_schedule(config: Config) -> optax.Schedule:
    """``lr * decay_rate ** (step / decay_steps)``; the exponent is rounded down to whole ``decay_steps`` when
    ``train.decay_staircase`` (magenta's solo-instrument training decays continuously)."""
    train = config.train
    return optax.exponential_decay(train.learning_rate, train.decay_steps, train.decay_rate,
                                   staircase=train.decay_staircase)


def build_model(config: Config, key: jax.Array) -> DDSPAutoencoder:
    """A freshly initialised autoencoder described by ``config.model`` (GRU unroll, GRU implementation and decoder
    precision from ``config.train``)."""
    model = config.model
    try:
        return build_autoencoder(
            model.processors,
            decoder=model.decoder,
            hidden_size=model.hidden_size,
            n_mlp_layers=model.n_mlp_layers,
            z_dims=model.z_dims,
            sample_rate=model.sample_rate,
            hop_size=model.hop_size,
            scan_unroll=config.train.scan_unroll,
            gru_impl=config.train.gru_impl,
            decoder_dtype=config.train.decoder_dtype,
            loudness_ref_db=model.loudness_ref_db,
            init=model.decoder_init,
            key=key,
        )
    except ValueError as error:
        raise ValueError(f"model.processors: {error}") from None


def init_model(config: Config, key: jax.Array) -> tuple[Any, Any]:
    """``(params, static)``: the trainable float arrays and the rest of the model (``eqx.partition``).

    Parameters are made strongly typed, so the optimiser's updates do not change their types and the jitted step
    is compiled once.
    """
    params, static = eqx.partition(build_model(config, key), eqx.is_inexact_array)
    params = jax.tree_util.tree_map(lambda leaf: jnp.array(leaf, dtype=leaf.dtype), params)
    return params, static


def _datarax_audio(model: DDSPAutoencoder, f0_hz, loudness_db, key, audio):
    from flax import nnx

    from ddsp_datarax.pipeline import composite_from_instrument, datarax_autoencode

    composite = composite_from_instrument(model.instrument, rngs=nnx.Rngs(0))
    keys = jax.random.split(key, f0_hz.shape[0])
    encoder_audio = audio if model.encoder is not None else None

    def one(f0, loudness, example_key, example_audio):
        return datarax_autoencode(model, composite, f0, loudness, key=example_key, audio=example_audio)

    in_axes = (0, 0, 0, 0 if encoder_audio is not None else None)
    return jax.vmap(one, in_axes=in_axes)(f0_hz, loudness_db, keys, encoder_audio)


def make_loss_fn(config: Config, static: Any) -> Callable:
    """``loss(params, batch, key) -> scalar``: the multi-scale spectral loss of the batch's resynthesis.

    The pure path is :func:`ddsp_core.model.reconstruction_loss`; the datarax path renders through the composite built
    from the same instrument (example ``i`` draws its noise from ``jax.random.split(key, batch)[i]`` on both).
    """

    def loss_fn(params, batch, key):
        model = eqx.combine(params, static)
        if config.train.path == "datarax":
            predicted = _datarax_audio(model, batch["f0_hz"], batch["loudness_db"], key, batch["audio"])
            return multiscale_spectral_loss(batch["audio"], predicted)
        return reconstruction_loss(model, batch["audio"], batch["f0_hz"], batch["loudness_db"], key=key)

    return loss_fn


def batch_forward(config: Config, static: Any) -> Callable:
    """``forward(params, f0_hz, loudness_db, key, audio=None) -> audio (batch, n_samples)`` on the configured path.

    ``audio`` (the input audio) is needed by a model with a z-encoder.
    """

    def forward(params, f0_hz, loudness_db, key, audio=None):
        model = eqx.combine(params, static)
        if config.train.path == "datarax":
            return _datarax_audio(model, f0_hz, loudness_db, key, audio)
        return batch_autoencode(model, f0_hz, loudness_db, key=key, audio=audio).audio

    return forward


def batch_outputs(static: Any) -> Callable:
    """``outputs(params, f0_hz, loudness_db, key, audio=None) -> dict`` of every output (pure path), for evaluation
    and plots.

    Keys: ``audio`` (batch, n_samples); ``signal/<source>`` per source (batch, n_samples); ``control/<processor>/
    <control>`` per control (batch, n_frames, ...); ``impulse_response/<effect>`` (batch, ir_length) for effects
    that have one.
    """

    def outputs(params, f0_hz, loudness_db, key, audio=None):
        model = eqx.combine(params, static)
        rendered = batch_autoencode(model, f0_hz, loudness_db, key=key, audio=audio)
        result = {"audio": rendered.audio}
        result.update({f"signal/{name}": signal for name, signal in rendered.signals.items()})
        for name, controls in rendered.controls.items():
            result.update({f"control/{name}/{control}": value for control, value in controls.items()})
        for effect in model.instrument.effects:
            if isinstance(effect, ConvolutionReverb):
                ir = effect.get_impulse_response()
                result[f"impulse_response/{effect.name}"] = jnp.broadcast_to(ir, (f0_hz.shape[0], ir.shape[0]))
        return result

    return outputs
