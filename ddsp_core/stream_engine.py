"""The streaming engine: a trained model played block by block, with everything that crosses a block in a state.

``state = init_state(model, key=key)``, then for each block of ``k >= 1`` whole frames
``state, audio = process_block(model, state, f0_hz, loudness_db[, z])`` (pure, jit-able; ``k`` may change from
block to block, each new ``k`` compiling once). The state holds

* the decoder's GRU hidden state (the GRU is the only part of the network that crosses frames);
* each source's block state (oscillator phase and last frame's controls, noise filter tails and frame count) and
  each effect's (the reverb's frequency-domain delay line);
* the stream's PRNG key, as raw key data, so the noise of frame ``i`` of source ``s`` is drawn from
  ``fold_in(fold_in(key, s), i)`` exactly as the offline render.

The concatenated output is :func:`ddsp_core.model.autoencode` of all the frames with the same key, delayed by
:func:`latency_samples` (one hop for the built-in processors: the oscillators crossfade each frame into the next),
to float32 rounding. A host program owns the state: it is a pytree of arrays (names and shapes from
:func:`state_spec`) that can go in and out of an exported step.

Features: ``process_block`` takes f0 and loudness per frame (from MIDI, from a controller, or from audio through
:func:`ddsp_core.stream_features.features_block`, whose lookahead adds to the latency). A z-encoder is not
streamed: pass ``z`` per frame.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt32

from ddsp_core._typing import AnyArray, Key
from ddsp_core.gru import gru_recurrence
from ddsp_core.model import DDSPAutoencoder

__all__ = ["StreamState", "check_state", "init_state", "latency_samples", "process_block", "state_spec"]


class StreamState(NamedTuple):
    """Everything :func:`process_block` carries from one block to the next.

    Attributes
    ----------
    hidden : Float[Array, "hidden"]
        The decoder GRU's hidden state after the last frame.
    sources : tuple
        Each source's block state (``Source.init_stream``), in the instrument's order.
    effects : tuple
        Each effect's block state (``Effect.init_stream``).
    key_data : UInt32[Array, "..."]
        The stream's PRNG key (``jax.random.key_data``).
    """

    hidden: Float[Array, " hidden"]
    sources: tuple[Any, ...]
    effects: tuple[Any, ...]
    key_data: UInt32[Array, "..."]


def latency_samples(model: DDSPAutoencoder) -> int:
    """Samples by which the stream trails the offline render: the largest of the sources' smallest latencies."""
    hop_size = model.hop_size
    return max(source.stream_latency(hop_size=hop_size) for source in model.instrument.sources)


def init_state(model: DDSPAutoencoder, *, key: Key) -> StreamState:
    """The state before the first block: silence, GRU at zero, the stream's noise drawn from ``key``.

    Parameters
    ----------
    model : DDSPAutoencoder
        The model to play.
    key : Key
        PRNG key of the stochastic processors (the offline render with the same key gives the same noise).

    Returns
    -------
    StreamState

    Raises
    ------
    NotImplementedError
        If a processor has no block form (a user-defined processor without ``init_stream``).
    """
    hop_size = model.hop_size
    latency = latency_samples(model)
    return StreamState(
        hidden=jnp.zeros((model.decoder.gru.hidden_size,), jnp.float32),
        sources=tuple(s.init_stream(hop_size=hop_size, latency_samples=latency) for s in model.instrument.sources),
        effects=tuple(e.init_stream(hop_size=hop_size) for e in model.instrument.effects),
        key_data=jax.random.key_data(key),
    )


def state_spec(model: DDSPAutoencoder) -> list[tuple[str, tuple[int, ...], str]]:
    """Name, shape and dtype of every array of the model's stream state, in pytree order (for hosts/manifests)."""
    state = jax.eval_shape(lambda: init_state(model, key=jax.random.key(0)))
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return [(jax.tree_util.keystr(path), tuple(leaf.shape), str(leaf.dtype)) for path, leaf in leaves]


def check_state(model: DDSPAutoencoder, state: StreamState) -> None:
    """Refuse a state that was not made for this model (another model's, or a different kind of pytree).

    Raises
    ------
    ValueError
        Naming the first array whose shape or dtype differs, or the structure that differs.
    """
    expected = jax.eval_shape(lambda: init_state(model, key=jax.random.key(0)))
    expected_leaves, expected_tree = jax.tree_util.tree_flatten_with_path(expected)
    leaves, tree = jax.tree_util.tree_flatten(state)
    if tree != expected_tree:
        raise ValueError(
            f"the stream state does not fit this model: it has {len(leaves)} arrays in another structure, "
            f"expected {len(expected_leaves)} (was it made by init_state for another model?)"
        )
    for (path, want), leaf in zip(expected_leaves, leaves, strict=True):
        if tuple(jnp.shape(leaf)) != tuple(want.shape) or jnp.result_type(leaf) != want.dtype:
            raise ValueError(
                f"the stream state does not fit this model: state{jax.tree_util.keystr(path)} has shape "
                f"{tuple(jnp.shape(leaf))} {jnp.result_type(leaf)}, expected {tuple(want.shape)} {want.dtype} "
                "(was it made by init_state for another model?)"
            )


def process_block(
    model: DDSPAutoencoder,
    state: StreamState,
    f0_hz: Float[AnyArray, " k"],
    loudness_db: Float[AnyArray, " k"],
    z: Float[AnyArray, "k z_dims"] | None = None,
) -> tuple[StreamState, Float[Array, " k_hop"]]:
    """Play one block of ``k`` frames: decoder (GRU state carried) -> controls -> sources -> mix -> effects.

    Parameters
    ----------
    model : DDSPAutoencoder
        The model (the same every block).
    state : StreamState
        From :func:`init_state` or the previous call.
    f0_hz : array, shape (k,)
        Fundamental frequency per frame, Hz.
    loudness_db : array, shape (k,)
        A-weighted loudness per frame, dB.
    z : array, shape (k, z_dims), or None
        Latent per frame, for a model whose decoder takes ``z``.

    Returns
    -------
    state : StreamState
    audio : Array, shape (k * hop_size,)
        The block's audio: :func:`ddsp_core.model.autoencode` of the whole stream delayed by
        :func:`latency_samples`.

    Raises
    ------
    ValueError
        If ``loudness_db`` and ``f0_hz`` differ in length, or (outside ``jit``) the state does not fit the model.

    Examples
    --------
    >>> from ddsp_core.model import build_autoencoder
    >>> model = build_autoencoder([{"type": "harmonic", "n_harmonics": 8}], hidden_size=8, n_mlp_layers=1,
    ...                           key=jax.random.key(0))
    >>> state = init_state(model, key=jax.random.key(1))
    >>> step = jax.jit(process_block)
    >>> state, audio = step(model, state, jnp.full(2, 440.0), jnp.full(2, -30.0))  # 2 frames of hop 64
    >>> audio.shape
    (128,)
    """
    n_frames = jnp.shape(f0_hz)[0]
    if n_frames < 1 or jnp.shape(loudness_db) != (n_frames,):
        raise ValueError(
            f"f0_hz and loudness_db must both have shape (k,) with k >= 1 frames, got {jnp.shape(f0_hz)} and "
            f"{jnp.shape(loudness_db)}"
        )
    if not isinstance(state.hidden, jax.core.Tracer):
        check_state(model, state)
    instrument, hop_size = model.instrument, model.hop_size
    f0_hz = jnp.asarray(f0_hz, jnp.float32)
    with jax.named_scope("stream_block"):
        gates, skip = model.decoder.gru_gates(f0_hz, loudness_db, z)  # the offline path's gates, same rounding
        hidden_states = gru_recurrence(model.decoder.gru, gates, initial=state.hidden)  # [k, hidden]
        controls = instrument.get_controls(model.decoder.outputs(hidden_states, skip), f0_hz)
        key = jax.random.wrap_key_data(state.key_data)
        source_states, mix = [], jnp.zeros((n_frames * hop_size,), jnp.float32)
        for index, (source, weight) in enumerate(zip(instrument.sources, instrument.weights, strict=True)):
            source_state, signal = source.stream_signal(
                state.sources[index], controls[source.name], hop_size=hop_size, key=instrument.source_key(key, index)
            )
            source_states.append(source_state)
            mix = mix + weight * signal
        effect_states = []
        for index, effect in enumerate(instrument.effects):
            effect_state, mix = effect.stream_apply(state.effects[index], controls[effect.name], mix, hop_size=hop_size)
            effect_states.append(effect_state)
    return StreamState(hidden_states[-1], tuple(source_states), tuple(effect_states), state.key_data), mix
