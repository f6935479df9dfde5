"""The DDSP composite and pipeline on datarax 0.1.4, and the datarax training path.

The composite is exactly the seed's:

    SEQUENTIAL([WEIGHTED_PARALLEL([HarmonicSynth, FilteredNoise], weights=[1.0, 0.1]), Reverb])

built with datarax's ``CompositeOperatorModule`` (:func:`build_ddsp_composite`, or :func:`composite_from_model` to
take a :class:`ddsp_core.model.DDSPAutoencoder`'s configuration and impulse response). The same parameters through
:func:`ddsp_core.model.autoencode` and through :func:`datarax_autoencode` give the same audio and gradients.

Training on the datarax path (:func:`make_datarax_loss`) keeps the decoder an Equinox module and the impulse
response an ``nnx.Param`` inside the composite; the trainable state is the pair ``(decoder, nnx.State)``, one
pytree that optax updates in one step. The composite's graphdef is closed over, never passed as a static ``jit``
argument: datarax 0.1.4 graphdefs are not hashable (the composite config holds lists).

:func:`build_ddsp_pipeline` puts the whole chain in a ``datarax.Pipeline`` DAG:
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
from jaxtyping import Array, Float

from ddsp_core._typing import AnyArray, Key
from ddsp_core.crepe import CrepeParams
from ddsp_core.decoder import DDSPDecoder
from ddsp_core.model import DDSPAutoencoder, controls_from_decoder
from ddsp_core.spectral import DEFAULT_FFT_SIZES, multiscale_spectral_loss
from ddsp_datarax.operators import (
    F0_HZ,
    SYNTH_AUDIO,
    CrepeF0,
    DecoderControls,
    FilteredNoise,
    HarmonicSynth,
    Loudness,
    Reverb,
)

__all__ = [
    "DataraxParams",
    "build_ddsp_composite",
    "build_ddsp_pipeline",
    "composite_from_model",
    "composite_random_params",
    "datarax_autoencode",
    "datarax_params_to_model",
    "make_datarax_loss",
]

DataraxParams = tuple[DDSPDecoder, Any]
"""Trainable state of the datarax path: the Equinox decoder and the composite's ``nnx.Param`` state (an
``nnx.State``; annotated ``Any`` because beartype warns on ``nnx.State``'s ``typing.Hashable`` parameters)."""


def build_ddsp_composite(
    *,
    impulse_response: AnyArray | None,
    sample_rate: int = 16000,
    hop_size: int = 64,
    noise_window_size: int = 257,
    harmonic_weight: float = 1.0,
    noise_weight: float = 0.1,
    rngs: nnx.Rngs,
) -> CompositeOperatorModule:
    """Build ``SEQUENTIAL([WEIGHTED_PARALLEL([harmonic, noise], weights), reverb])``.

    Parameters
    ----------
    impulse_response : Float[AnyArray, "ir_length"] or None
        Initial reverb impulse response (an ``nnx.Param`` of the :class:`~ddsp_datarax.operators.Reverb`);
        ``None`` leaves the reverb out: ``SEQUENTIAL([WEIGHTED_PARALLEL([harmonic, noise])])``.
    sample_rate, hop_size : int
        Audio rate (Hz) and samples per control frame.
    noise_window_size : int
        Hann window of the noise filters.
    harmonic_weight, noise_weight : float
        Static ``WEIGHTED_PARALLEL`` weights (seed: 1.0 and 0.1).
    rngs : nnx.Rngs
        Base keys of the stochastic noise operator and of the composites.

    Returns
    -------
    CompositeOperatorModule
        Input element: ``f0_hz``, ``amplitude``, ``harmonic_distribution``, ``noise_magnitudes`` (one example). Output: ``{"synth_audio"}``.

    Examples
    --------
    >>> composite = build_ddsp_composite(impulse_response=ir, rngs=nnx.Rngs(0))
    >>> out, _, _ = composite.apply(controls, {}, None, composite_random_params(key))

    See Also
    --------
    composite_from_model, composite_random_params
    """
    mix = CompositeOperatorModule(
        CompositeOperatorConfig(
            strategy=CompositionStrategy.WEIGHTED_PARALLEL,
            operators=[
                HarmonicSynth(sample_rate=sample_rate, hop_size=hop_size),
                FilteredNoise(hop_size=hop_size, window_size=noise_window_size, rngs=rngs),
            ],
            weights=[harmonic_weight, noise_weight],
        ),
        rngs=rngs,
    )
    stages = [mix] if impulse_response is None else [mix, Reverb(impulse_response)]
    return CompositeOperatorModule(
        CompositeOperatorConfig(strategy=CompositionStrategy.SEQUENTIAL, operators=stages), rngs=rngs
    )


def composite_from_model(model: DDSPAutoencoder, *, rngs: nnx.Rngs) -> CompositeOperatorModule:
    """The composite with a :class:`~ddsp_core.model.DDSPAutoencoder`'s configuration and impulse response.

    The impulse response is copied into the reverb's ``nnx.Param``; the decoder stays with the caller (see
    :func:`make_datarax_loss`).
    """
    return build_ddsp_composite(
        impulse_response=model.impulse_response,
        sample_rate=model.sample_rate,
        hop_size=model.hop_size,
        noise_window_size=model.noise_window_size,
        harmonic_weight=model.harmonic_weight,
        noise_weight=model.noise_weight,
        rngs=rngs,
    )


def composite_random_params(key: Key) -> dict:
    """Random parameters for ONE element of :func:`build_ddsp_composite`'s composite: ``key`` for the noise.

    The nesting mirrors datarax's ``{"operator_<i>": ...}`` layout (sequential stage 0 is the mix, whose child 1 is
    the noise), so ``composite.apply(element, {}, None, composite_random_params(key))`` draws exactly the noise
    that ``ddsp_core.model.autoencode(..., key=key)`` draws.
    """
    return {"operator_0": {"operator_0": None, "operator_1": key}}


def datarax_autoencode(
    decoder: DDSPDecoder,
    composite: CompositeOperatorModule,
    f0_hz: Float[AnyArray, " n_frames"],
    loudness_db: Float[AnyArray, " n_frames"],
    *,
    sample_rate: int,
    key: Key,
) -> Float[Array, " n_samples"]:
    """ONE example through the datarax path: Equinox decoder -> controls -> composite.

    Parameters
    ----------
    decoder : DDSPDecoder
        The decoder (no z).
    composite : CompositeOperatorModule
        From :func:`build_ddsp_composite` / :func:`composite_from_model`.
    f0_hz, loudness_db : Float[AnyArray, "n_frames"]
        Features, Hz and dB.
    sample_rate : int
        Audio sample rate (Hz) for the Nyquist mask; the composite's.
    key : Key
        Noise key (same meaning as ``autoencode``'s).

    Returns
    -------
    Float[Array, "n_samples"]
        Final audio, ``n_frames * hop_size`` samples; equals ``autoencode(model, ...).audio`` for the same
        parameters.
    """
    with jax.named_scope("ddsp_datarax_autoencode"):
        raw = decoder(f0_hz, loudness_db)
        controls = controls_from_decoder(raw, f0_hz, sample_rate=sample_rate)
        element = {F0_HZ: f0_hz, **controls._asdict()}
        out, _, _ = composite.apply(element, {}, None, composite_random_params(key))
        return out[SYNTH_AUDIO]


def make_datarax_loss(
    model: DDSPAutoencoder, *, rngs: nnx.Rngs, fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES
) -> tuple[Callable[..., Array], DataraxParams]:
    """The datarax training path: a pure loss over ``(Equinox decoder, nnx.Param state)`` and its initial value.

    Parameters
    ----------
    model : DDSPAutoencoder
        Supplies the decoder, the impulse response and the configuration (no z-encoder).
    rngs : nnx.Rngs
        For the composite's operators (their base keys are not used by the loss: noise keys come from ``key``).
    fft_sizes : tuple of int
        FFT sizes of the spectral loss.

    Returns
    -------
    loss_fn : callable
        ``loss_fn(params, audio (batch, n_samples), f0_hz (batch, n_frames), loudness_db (batch, n_frames), *, key)
        -> scalar``; pure and jit-able (the composite's graphdef is closed over). Same value as
        ``ddsp_core.model.spectral_loss`` for the same parameters and key.
    params : DataraxParams
        ``(model.decoder, nnx.State of the composite's nnx.Param)``: differentiate with ``eqx.filter_grad`` and
        update with optax (``optax.adam(...).init(eqx.filter(params, eqx.is_inexact_array))``).

    See Also
    --------
    ddsp_core.model.spectral_loss : the pure path.
    """
    if model.encoder is not None:
        raise ValueError("make_datarax_loss supports models without a z-encoder (z_dims=0)")
    composite = composite_from_model(model, rngs=rngs)
    graphdef, param_state, other_state = nnx.split(composite, nnx.Param, ...)
    sample_rate = model.sample_rate

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
        keys = jax.random.split(key, audio.shape[0])

        def one(f0, loudness, example_key):
            return datarax_autoencode(decoder, merged, f0, loudness, sample_rate=sample_rate, key=example_key)

        predicted = jax.vmap(one)(f0_hz, loudness_db, keys)  # [batch, n_samples]
        return multiscale_spectral_loss(audio, predicted, fft_sizes=fft_sizes)

    return loss_fn, (model.decoder, param_state)


def datarax_params_to_model(params: DataraxParams, model: DDSPAutoencoder) -> DDSPAutoencoder:
    """Write datarax-path parameters back into a :class:`DDSPAutoencoder` (for checkpoints and evaluation)."""
    decoder, state = params
    impulse_response = state["operators"][1]["impulse_response"][...] if model.impulse_response is not None else None
    return eqx.tree_at(
        lambda m: (m.decoder, m.impulse_response), model, (decoder, impulse_response), is_leaf=lambda x: x is None
    )


class _AttachSynthAudio(nnx.Module):
    """Pipeline join: the features batch plus the composite's ``synth_audio``."""

    def __call__(self, features: dict, synthesised: dict) -> dict:
        return {**features, SYNTH_AUDIO: synthesised[SYNTH_AUDIO]}


def build_ddsp_pipeline(
    *,
    source: DataSourceModule,
    crepe_params: CrepeParams,
    decoder: DDSPDecoder,
    composite: CompositeOperatorModule,
    sample_rate: int = 16000,
    hop_size: int = 64,
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
    decoder : DDSPDecoder
        Wrapped in :class:`~ddsp_datarax.operators.DecoderControls`.
    composite : CompositeOperatorModule
        From :func:`build_ddsp_composite`.
    sample_rate, hop_size : int
        Audio rate (Hz) and samples per frame.
    batch_size : int
        Records per ``Pipeline.step()``.
    rngs : nnx.Rngs
        The pipeline's keys.

    Returns
    -------
    Pipeline
        ``pipeline.step()`` (jitted by datarax) returns a batch dict with ``audio``, ``f0_hz``, ``f0_confidence``,
        ``loudness_db``, the three controls and ``synth_audio``.
    """
    nodes = {
        "f0": CrepeF0(crepe_params, sample_rate=sample_rate, hop_size=hop_size),
        "loudness": Loudness(sample_rate=sample_rate, hop_size=hop_size),
        "controls": DecoderControls(decoder, sample_rate=sample_rate),
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
