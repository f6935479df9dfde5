"""The DDSP composite and pipeline on datarax 0.1.4, built from a :class:`ddsp_core.processors.Instrument`.

The instrument's description (weighted sources, then effects in series) becomes the composite::

    SEQUENTIAL([WEIGHTED_PARALLEL([source_0, source_1, ...], weights=instrument.weights), effect_0, ...])

e.g. the seed's ``SEQUENTIAL([WEIGHTED_PARALLEL([harmonic, noise], weights=[1.0, 0.1]), reverb])``
(:func:`composite_from_instrument`), with every processor wrapped by ``ddsp_datarax.operators``. The same
parameters through :func:`ddsp_core.model.autoencode` and through :func:`datarax_autoencode` give the same audio
and gradients: :func:`composite_random_params` hands source ``i`` the key ``fold_in(key, i)``, as the pure path does.

Training on the datarax path (:func:`make_datarax_loss`) keeps the decoder an Equinox module and the processors'
learnable arrays (the reverb's impulse response) in ``nnx.Param`` inside the composite; the trainable state is the
pair ``(decoder, nnx.State)``, one pytree that optax updates in one step. The composite's graphdef is closed over,
never passed as a static ``jit`` argument: datarax 0.1.4 graphdefs are not hashable (the composite config holds
lists).

:func:`build_resynthesis_pipeline` puts the whole chain in a ``datarax.Pipeline`` DAG:
source -> CrepeF0 -> Loudness -> DecoderControls -> composite, and a join that adds ``synth_audio`` to the
features (the composite's output holds only ``synth_audio``; see ``ddsp_datarax.operators`` on why).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from datarax.core.data_source import DataSourceModule
from datarax.operators.composite_operator import (
    CompositeOperatorConfig,
    CompositeOperatorModule,
    CompositionStrategy,
)
from datarax.pipeline.pipeline import Pipeline
from flax import nnx
from jaxtyping import Array, Float, PyTree

from ddsp_core._typing import AnyArray, Key
from ddsp_core.crepe import CrepeParams
from ddsp_core.decoder import AnyDecoder
from ddsp_core.model import DDSPAutoencoder, decode
from ddsp_core.processors import Instrument
from ddsp_core.spectral import DEFAULT_FFT_SIZES, multiscale_spectral_loss
from ddsp_datarax.operators import (
    SYNTH_AUDIO,
    CrepeF0,
    DecoderControls,
    EffectOperator,
    Loudness,
    SourceOperator,
    controls_element,
)

__all__ = [
    "DataraxParams",
    "build_resynthesis_pipeline",
    "composite_from_instrument",
    "composite_random_params",
    "datarax_autoencode",
    "datarax_params_to_model",
    "make_datarax_loss",
]

DataraxParams = tuple[AnyDecoder, Any]
"""Trainable state of the datarax path: the Equinox decoder and the composite's ``nnx.Param`` state (an
``nnx.State``; annotated ``Any`` because beartype warns on ``nnx.State``'s ``typing.Hashable`` parameters)."""


class _Composite(CompositeOperatorModule):
    """A composite whose output structure is found with placeholder keys (datarax's default calls ``apply``
    without random parameters, which our stochastic sources refuse)."""

    def get_output_structure(self, sample_data: PyTree, sample_state: PyTree) -> tuple[PyTree, PyTree]:
        def apply_with_keys(data, state):
            keys = self.generate_random_params(jax.random.split(jax.random.key(0), 1), data)
            one = jax.tree.map(lambda leaf: leaf[0], keys)  # shapes only: eval_shape never draws
            return self.apply(data, state, None, one)[:2]

        out = jax.eval_shape(apply_with_keys, sample_data, sample_state)
        return jax.tree.map(lambda _: 0, out[0]), jax.tree.map(lambda _: 0, out[1])


def composite_from_instrument(instrument: Instrument, *, rngs: nnx.Rngs) -> CompositeOperatorModule:
    """The datarax composite of an instrument: ``SEQUENTIAL([WEIGHTED_PARALLEL(sources, weights), *effects])``.

    Parameters
    ----------
    instrument : Instrument
        Processors, weights and effects; learnable arrays are copied into the operators' ``nnx.Param``.
    rngs : nnx.Rngs
        Base keys of the stochastic source operators and of the composites.

    Returns
    -------
    CompositeOperatorModule
        Input element: ``controls_element(instrument.get_controls(raw, f0_hz))`` (one example). Output:
        ``{"synth_audio"}``.

    Examples
    --------
    >>> from ddsp_core.model import build_instrument
    >>> from ddsp_datarax.operators import controls_element
    >>> instrument = build_instrument([{"type": "harmonic", "n_harmonics": 4}, {"type": "reverb", "ir_length": 32}],
    ...                               key=jax.random.key(0))
    >>> composite = composite_from_instrument(instrument, rngs=nnx.Rngs(0))
    >>> raw = {name: jax.numpy.zeros((5, size)) for name, size in instrument.control_sizes().items()}
    >>> element = controls_element(instrument.get_controls(raw, jax.numpy.full((5,), 220.0)))
    >>> out, _, _ = composite.apply(element, {}, None, composite_random_params(instrument, jax.random.key(1)))
    >>> out["synth_audio"].shape
    (320,)
    """
    mix = _Composite(
        CompositeOperatorConfig(
            strategy=CompositionStrategy.WEIGHTED_PARALLEL,
            operators=[SourceOperator(s, hop_size=instrument.hop_size, rngs=rngs) for s in instrument.sources],
            weights=list(instrument.weights),
        ),
        rngs=rngs,
    )
    stages = [mix] + [EffectOperator(effect) for effect in instrument.effects]
    return _Composite(CompositeOperatorConfig(strategy=CompositionStrategy.SEQUENTIAL, operators=stages), rngs=rngs)


def composite_random_params(instrument: Instrument, key: Key) -> dict:
    """Random parameters for ONE element of :func:`composite_from_instrument`'s composite.

    Source ``i`` gets ``instrument.source_key(key, i)`` (``fold_in(key, i)``), deterministic sources ``None``: the
    same keys the pure path (:func:`ddsp_core.processors.render`) uses. The nesting mirrors datarax's
    ``{"operator_<i>": ...}`` layout (sequential stage 0 is the mix).
    """
    mix = {
        f"operator_{i}": instrument.source_key(key, i) if source.stochastic else None
        for i, source in enumerate(instrument.sources)
    }
    return {"operator_0": mix, **{f"operator_{j + 1}": None for j in range(len(instrument.effects))}}


def datarax_autoencode(
    model: DDSPAutoencoder,
    composite: CompositeOperatorModule,
    f0_hz: Float[AnyArray, " n_frames"],
    loudness_db: Float[AnyArray, " n_frames"],
    *,
    key: Key,
    audio: Float[AnyArray, " n_samples"] | None = None,
) -> Float[Array, " n_samples"]:
    """ONE example through the datarax path: the model's decoder -> controls -> composite.

    Parameters
    ----------
    model : DDSPAutoencoder
        Supplies the decoder (and z-encoder) and the instrument's ``get_controls``; the processors' learnable
        arrays are those in ``composite``.
    composite : CompositeOperatorModule
        From :func:`composite_from_instrument`.
    f0_hz, loudness_db : Float[AnyArray, "n_frames"]
        Features, Hz and dB.
    key : Key
        Same meaning as ``autoencode``'s.
    audio : Float[AnyArray, "n_samples"] or None
        Input audio, for a model with a z-encoder.

    Returns
    -------
    Float[Array, "n_samples"]
        Final audio, ``n_frames * hop_size`` samples; equals ``autoencode(model, ...).audio`` for the same
        parameters.
    """
    with jax.named_scope("ddsp_datarax_autoencode"):
        raw = decode(model, f0_hz, loudness_db, audio)
        element = controls_element(model.instrument.get_controls(raw, f0_hz))
        out, _, _ = composite.apply(element, {}, None, composite_random_params(model.instrument, key))
        return out[SYNTH_AUDIO]


def make_datarax_loss(
    model: DDSPAutoencoder, *, rngs: nnx.Rngs, fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES
) -> tuple[Callable[..., Array], DataraxParams]:
    """The datarax training path: a pure loss over ``(Equinox decoder, nnx.Param state)`` and its initial value.

    Parameters
    ----------
    model : DDSPAutoencoder
        Supplies the decoder, the instrument and its learnable arrays (no z-encoder).
    rngs : nnx.Rngs
        For the composite's operators (their base keys are not used by the loss: keys come from ``key``).
    fft_sizes : tuple of int
        FFT sizes of the spectral loss.

    Returns
    -------
    loss_fn : callable
        ``loss_fn(params, audio (batch, n_samples), f0_hz (batch, n_frames), loudness_db (batch, n_frames), *, key)
        -> scalar``; pure and jit-able (the composite's graphdef is closed over). Same value as
        ``ddsp_core.model.reconstruction_loss`` for the same parameters and key.
    params : DataraxParams
        ``(model.decoder, nnx.State of the composite's nnx.Param)``: differentiate with ``eqx.filter_grad`` and
        update with optax (``optax.adam(...).init(eqx.filter(params, eqx.is_inexact_array))``).

    See Also
    --------
    ddsp_core.model.reconstruction_loss : the pure path.
    """
    if model.encoder is not None:
        raise ValueError("make_datarax_loss supports models without a z-encoder (z_dims=0)")
    composite = composite_from_instrument(model.instrument, rngs=rngs)
    graphdef, param_state, other_state = nnx.split(composite, nnx.Param, ...)

    def loss_fn(
        params: DataraxParams,
        audio: Float[AnyArray, "batch n_samples"],
        f0_hz: Float[AnyArray, "batch n_frames"],
        loudness_db: Float[AnyArray, "batch n_frames"],
        *,
        key: Key,
    ) -> Float[Array, ""]:
        decoder, state = params
        merged = nnx.merge(graphdef, state, other_state)
        with_decoder = eqx.tree_at(lambda m: m.decoder, model, decoder)
        keys = jax.random.split(key, audio.shape[0])

        def one(f0, loudness, example_key):
            return datarax_autoencode(with_decoder, merged, f0, loudness, key=example_key)

        predicted = jax.vmap(one)(f0_hz, loudness_db, keys)  # [batch, n_samples]
        return multiscale_spectral_loss(audio, predicted, fft_sizes=fft_sizes)

    return loss_fn, (model.decoder, param_state)


def datarax_params_to_model(params: DataraxParams, model: DDSPAutoencoder) -> DDSPAutoencoder:
    """Write datarax-path parameters back into a :class:`DDSPAutoencoder` (for checkpoints and evaluation)."""
    decoder, state = params
    stages = state["operators"]
    sources = tuple(stages[0]["operators"][i]["processor"].get_value() for i in range(len(model.instrument.sources)))
    effects = tuple(stages[j + 1]["processor"].get_value() for j in range(len(model.instrument.effects)))
    return eqx.tree_at(
        lambda m: (m.decoder, m.instrument.sources, m.instrument.effects), model, (decoder, sources, effects)
    )


class _AttachSynthAudio(nnx.Module):
    """Pipeline join: the features batch plus the composite's ``synth_audio``."""

    def __call__(self, features: dict, synthesised: dict) -> dict:
        return {**features, SYNTH_AUDIO: synthesised[SYNTH_AUDIO]}


def build_resynthesis_pipeline(
    *,
    source: DataSourceModule,
    crepe_params: CrepeParams,
    model: DDSPAutoencoder,
    composite: CompositeOperatorModule,
    batch_size: int,
    rngs: nnx.Rngs,
) -> Pipeline:
    """A datarax ``Pipeline``: source -> CrepeF0 -> Loudness -> DecoderControls -> composite, joined.

    Parameters
    ----------
    source : DataSourceModule
        Yields elements with ``audio`` of ``n_frames * hop_size`` samples (e.g. a ``MemorySource``).
    crepe_params : CrepeParams
        CREPE weights for :class:`~ddsp_datarax.operators.CrepeF0`.
    model : DDSPAutoencoder
        Its decoder (no z) and instrument's ``get_controls`` form :class:`~ddsp_datarax.operators.DecoderControls`;
        its sample rate and hop size are the pipeline's.
    composite : CompositeOperatorModule
        From :func:`composite_from_instrument`.
    batch_size : int
        Records per ``Pipeline.step()``.
    rngs : nnx.Rngs
        The pipeline's keys.

    Returns
    -------
    Pipeline
        ``pipeline.step()`` (jitted by datarax) returns a batch dict with ``audio``, ``f0_hz``, ``f0_confidence``,
        ``loudness_db``, every processor's controls and ``synth_audio``.
    """
    sample_rate, hop_size = model.sample_rate, model.hop_size
    nodes = {
        "f0": CrepeF0(crepe_params, sample_rate=sample_rate, hop_size=hop_size),
        "loudness": Loudness(sample_rate=sample_rate, hop_size=hop_size),
        "controls": DecoderControls(model.decoder, model.instrument),
        "synth": composite,
        "output": _AttachSynthAudio(),
    }
    edges = {
        "f0": [],
        "loudness": ["f0"],
        "controls": ["loudness"],
        "synth": ["controls"],
        "output": ["controls", "synth"],
    }
    return Pipeline.from_dag(source=source, nodes=nodes, edges=edges, sink="output", batch_size=batch_size, rngs=rngs)
