"""The model as the trainer sees it: build from a config, split into trainable arrays and static structure, and run a
batch through the pure path (``ddsp_core.model.autoencode``) or the datarax path (the seed's composite).

Both paths take the same parameters (an ``equinox.partition`` of :class:`ddsp_core.model.DDSPAutoencoder`), so
checkpoints, evaluation and resumption do not depend on the path; on the datarax path the impulse response is
placed in the Reverb operator's ``nnx.Param`` inside the traced function, and gradients flow back to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import optax

from ddsp_core.model import DDSPAutoencoder, autoencode
from train.config import Config


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip) -> adam(lr * decay_rate ** (step / decay_steps))`` (design.md 6)."""
    train = config.train
    schedule = optax.exponential_decay(train.learning_rate, train.decay_steps, train.decay_rate)
    return optax.chain(optax.clip_by_global_norm(train.grad_clip), optax.adam(schedule))


def build_model(config: Config, key: jax.Array) -> DDSPAutoencoder:
    """A freshly initialised autoencoder with the shape given by ``config.model``."""
    model = config.model
    return DDSPAutoencoder(
        sample_rate=model.sample_rate,
        hop_size=model.hop_size,
        n_harmonics=model.n_harmonics,
        n_noise_bands=model.n_noise_bands,
        ir_length=model.ir_length,
        harmonic_weight=model.harmonic_weight,
        noise_weight=model.noise_weight,
        use_reverb=model.reverb,
        hidden_size=model.hidden_size,
        scan_unroll=config.train.scan_unroll,
        key=key,
    )


def init_model(config: Config, key: jax.Array) -> tuple[Any, Any]:
    """``(params, static)``: the trainable float arrays and the rest of the model (``eqx.partition``).

    Parameters are made strongly typed, so the optimiser's updates do not change their types and the jitted step
    is compiled once.
    """
    params, static = eqx.partition(build_model(config, key), eqx.is_inexact_array)
    params = jax.tree_util.tree_map(lambda leaf: jax.numpy.array(leaf, dtype=leaf.dtype), params)
    return params, static


def _pure_forward(model: DDSPAutoencoder, f0_hz, loudness_db, keys):
    return jax.vmap(lambda f0, loudness, key: autoencode(model, f0, loudness, key=key))(f0_hz, loudness_db, keys)


def _datarax_audio(model: DDSPAutoencoder, f0_hz, loudness_db, keys):
    from flax import nnx

    from ddsp_datarax.pipeline import composite_from_model, datarax_autoencode

    composite = composite_from_model(model, rngs=nnx.Rngs(0))

    def one(f0, loudness, key):
        return datarax_autoencode(model.decoder, composite, f0, loudness, sample_rate=model.sample_rate, key=key)

    return jax.vmap(one)(f0_hz, loudness_db, keys)


def batch_forward(config: Config, static: Any) -> Callable:
    """``forward(params, f0_hz, loudness_db, key) -> audio (batch, n_samples)`` on the configured path.

    Example ``i`` draws its noise with ``jax.random.split(key, batch)[i]`` on both paths.
    """

    def forward(params, f0_hz, loudness_db, key):
        model = eqx.combine(params, static)
        keys = jax.random.split(key, f0_hz.shape[0])
        if config.train.path == "datarax":
            return _datarax_audio(model, f0_hz, loudness_db, keys)
        return _pure_forward(model, f0_hz, loudness_db, keys).audio

    return forward


def batch_outputs(config: Config, static: Any) -> Callable:
    """``outputs(params, f0_hz, loudness_db, key) -> dict`` of every output (pure path), for evaluation and plots.

    Keys: audio, harmonic, noise (batch, n_samples); amplitudes, harmonic_distribution, noise_magnitudes
    (batch, n_frames, ...); impulse_response (batch, ir_length) when the model has reverb.
    """

    def outputs(params, f0_hz, loudness_db, key):
        model = eqx.combine(params, static)
        keys = jax.random.split(key, f0_hz.shape[0])
        result = _pure_forward(model, f0_hz, loudness_db, keys)._asdict()
        if model.impulse_response is not None:
            result["impulse_response"] = jax.numpy.broadcast_to(
                model.impulse_response, (f0_hz.shape[0], model.impulse_response.shape[0]))
        return result

    return outputs
