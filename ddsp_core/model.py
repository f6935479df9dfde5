"""The DDSP autoencoder: a decoder (and optional z-encoder) driving an :class:`~ddsp_core.processors.Instrument`.

``autoencode(model, f0_hz, loudness_db, *, key)`` runs, for ONE example::

    [z-encoder (audio) -> z]
    decoder (f0, loudness[, z]) -> raw outputs, one per entry of instrument.control_sizes()
      -> processors' get_controls -> sources' signals -> weighted mix -> effects in series

The model is built from already-built parts (Equinox style): ``DDSPAutoencoder(instrument=..., decoder=...)``.
:func:`build_autoencoder` builds the parts from a description (processor entries + decoder settings), the form a
run's config stores. Batches come from ``jax.vmap``; :func:`reconstruction_loss` does that for a training batch.
``n_samples`` is not a field: it is ``n_frames * hop_size``, so one model resynthesises clips of any length.

Examples
--------
>>> model = build_autoencoder(
...     [{"type": "harmonic", "n_harmonics": 16, "weight": 1.0},
...      {"type": "filtered_noise", "n_bands": 9, "weight": 0.1},
...      {"type": "reverb", "ir_length": 256}],
...     hidden_size=16, n_mlp_layers=1, key=jax.random.key(0))
>>> out = autoencode(model, jnp.full((100,), 440.0), jnp.full((100,), -20.0), key=jax.random.key(1))
>>> out.audio.shape, sorted(out.signals)
((6400,), ['harmonic', 'noise'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ddsp_core._typing import AnyArray, Key
from ddsp_core.decoder import DECODERS, AnyDecoder, MfccEncoder, keras_initialise
from ddsp_core.processors import Effect, Instrument, Rendered, Source, build_processor, render
from ddsp_core.spectral import DEFAULT_FFT_SIZES, multiscale_spectral_loss

__all__ = [
    "DDSPAutoencoder",
    "autoencode",
    "batch_autoencode",
    "build_autoencoder",
    "build_instrument",
    "decode",
    "reconstruction_loss",
]

DECODER_INITS = ("equinox", "keras")
"""Decoder initialisations :func:`build_autoencoder` knows."""


class DDSPAutoencoder(eqx.Module):
    """The DDSP autoencoder's parts: decoder, optional z-encoder, and the instrument it drives.

    Parameters
    ----------
    instrument : Instrument
        The processors and how they combine.
    decoder : DDSPDecoder or RnnFcDecoder
        Must produce every output of ``instrument.control_sizes()``.
    encoder : MfccEncoder or None
        z-encoder; present if and only if the decoder takes ``z`` (``decoder.z_dims > 0``).

    See Also
    --------
    build_autoencoder, autoencode, reconstruction_loss
    """

    decoder: AnyDecoder
    encoder: MfccEncoder | None
    instrument: Instrument

    def __init__(self, *, instrument: Instrument, decoder: AnyDecoder, encoder: MfccEncoder | None = None):
        produced = dict(decoder.output_splits)
        needed = instrument.control_sizes()
        wrong = sorted(name for name, size in needed.items() if produced.get(name) != size)
        if wrong:
            raise ValueError(
                "the decoder's outputs do not match the instrument's controls: "
                + ", ".join(f"{name} needs {needed[name]}, decoder gives {produced.get(name)}" for name in wrong)
            )
        if (encoder is None) != (decoder.z_dims == 0):
            raise ValueError(f"a z-encoder is needed exactly when the decoder takes z (decoder z_dims="
                             f"{decoder.z_dims}, encoder {'absent' if encoder is None else 'present'})")
        if encoder is not None and encoder.z_dims != decoder.z_dims:
            raise ValueError(f"encoder z_dims={encoder.z_dims} != decoder z_dims={decoder.z_dims}")
        self.decoder, self.encoder, self.instrument = decoder, encoder, instrument

    @property
    def sample_rate(self) -> int:
        """Audio sample rate, Hz."""
        return self.instrument.sample_rate

    @property
    def hop_size(self) -> int:
        """Audio samples per control frame."""
        return self.instrument.hop_size


def build_instrument(
    entries: Sequence[Mapping[str, Any]], *, sample_rate: int = 16000, hop_size: int = 64, key: Key
) -> Instrument:
    """An :class:`Instrument` from processor entries (the description a config stores).

    Each entry is a mapping with ``type`` (a registered processor type, see
    :func:`ddsp_core.processors.processor_types`, or ``"package.module:ClassName"``), for sources an optional
    ``weight`` (default 1.0), and the processor's own settings (e.g. ``n_harmonics``). Sources are summed with
    their weights, effects follow in the order given.

    Examples
    --------
    >>> build_instrument([{"type": "harmonic", "n_harmonics": 8}], key=jax.random.key(0)).control_sizes()
    {'harmonic/amplitude': 1, 'harmonic/harmonic_distribution': 8}
    """
    sources, weights, effects = [], [], []
    keys = jax.random.split(key, max(len(entries), 1))
    for index, entry in enumerate(entries):
        settings = dict(entry)
        if "type" not in settings:
            raise ValueError(f"processor entry {index} has no 'type' (e.g. type = \"harmonic\"): {dict(entry)}")
        type_name = settings.pop("type")
        weight = settings.pop("weight", None)
        processor = build_processor(type_name, settings, sample_rate=sample_rate, key=keys[index])
        if isinstance(processor, Source):
            sources.append(processor)
            weights.append(1.0 if weight is None else weight)
        elif weight is not None:
            raise ValueError(f"processor entry {index} ({type_name}) is an effect; only sources take a weight")
        else:
            assert isinstance(processor, Effect)
            effects.append(processor)
    return Instrument(sources=sources, weights=weights, effects=effects, sample_rate=sample_rate, hop_size=hop_size)


def build_autoencoder(
    entries: Sequence[Mapping[str, Any]],
    *,
    decoder: str = "linear",
    hidden_size: int = 512,
    n_mlp_layers: int = 3,
    z_dims: int = 0,
    sample_rate: int = 16000,
    hop_size: int = 64,
    scan_unroll: int = 1,
    gru_impl: str = "scan",
    decoder_dtype: str = "float32",
    loudness_ref_db: float = 0.0,
    init: str = "equinox",
    key: Key,
) -> DDSPAutoencoder:
    """A freshly initialised autoencoder from a description: processor entries and decoder settings.

    Parameters
    ----------
    entries : sequence of mappings
        Processor entries, see :func:`build_instrument`.
    decoder : str
        ``"linear"`` (:class:`~ddsp_core.decoder.DDSPDecoder`) or ``"rnn_fc"``
        (:class:`~ddsp_core.decoder.RnnFcDecoder`, magenta's).
    hidden_size, n_mlp_layers : int
        Decoder width and MLP depth (also the z-encoder's GRU width).
    z_dims : int
        0: no z-encoder; otherwise an :class:`~ddsp_core.decoder.MfccEncoder` feeds ``z`` of this size, trained end
        to end with the rest.
    sample_rate, hop_size : int
        Audio rate (Hz) and samples per control frame.
    scan_unroll : int
        GRU ``lax.scan`` unroll (speed only).
    gru_impl : str
        The decoder's GRU: ``"scan"`` or ``"pallas"`` (same values; see ``ddsp_core.decoder.GRU_IMPLS``).
    decoder_dtype : str
        ``"float32"`` or ``"bfloat16"`` (mixed-precision decoder; see ``ddsp_core.decoder.DECODER_DTYPES``).
    loudness_ref_db : float
        The loudness the decoder scales to 1 (:func:`~ddsp_core.decoder.scale_decoder_inputs`).
    init : str
        The decoder's initialisation: ``"equinox"`` (Equinox's layer defaults) or ``"keras"`` (Glorot / orthogonal
        weights and zero biases, as magenta's decoders start; :func:`~ddsp_core.decoder.keras_initialise`).
    key : Key
        PRNG key of every initialisation.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r}; expected one of {', '.join(DECODERS)}")
    if init not in DECODER_INITS:
        raise ValueError(f"init={init!r}; expected one of {', '.join(DECODER_INITS)}")
    instrument_key, decoder_key, encoder_key = jax.random.split(key, 3)
    instrument = build_instrument(entries, sample_rate=sample_rate, hop_size=hop_size, key=instrument_key)
    network = DECODERS[decoder](
        output_sizes=instrument.control_sizes(),
        hidden_size=hidden_size,
        n_mlp_layers=n_mlp_layers,
        z_dims=z_dims,
        scan_unroll=scan_unroll,
        gru_impl=gru_impl,
        decoder_dtype=decoder_dtype,
        loudness_ref_db=loudness_ref_db,
        key=decoder_key,
    )
    if init == "keras":
        network = keras_initialise(network, key=jax.random.fold_in(decoder_key, 1))
    encoder = (
        MfccEncoder(z_dims=z_dims, sample_rate=sample_rate, hidden_size=hidden_size, scan_unroll=scan_unroll,
                    key=encoder_key)
        if z_dims > 0
        else None
    )
    return DDSPAutoencoder(instrument=instrument, decoder=network, encoder=encoder)


def decode(
    model: DDSPAutoencoder,
    f0_hz: Float[AnyArray, " n_frames"],
    loudness_db: Float[AnyArray, " n_frames"],
    audio: Float[AnyArray, " n_samples"] | None = None,
) -> dict[str, Array]:
    """The network part of :func:`autoencode`: [z-encoder,] decoder -> raw outputs by name (ONE example)."""
    n_frames = jnp.shape(f0_hz)[0]
    if jnp.shape(loudness_db) != (n_frames,):
        raise ValueError(f"loudness_db must have shape ({n_frames},) like f0_hz, got {jnp.shape(loudness_db)}")
    z = None
    if model.encoder is not None:
        if audio is None:
            raise ValueError("audio is required: this model has a z-encoder")
        n_samples = n_frames * model.hop_size
        if jnp.shape(audio) != (n_samples,):
            raise ValueError(f"audio must have n_frames * hop_size = {n_samples} samples, got {jnp.shape(audio)}")
        z = model.encoder(audio, n_frames=n_frames)  # [n_frames, z_dims]
    return model.decoder(f0_hz, loudness_db, z)


def autoencode(
    model: DDSPAutoencoder,
    f0_hz: Float[AnyArray, " n_frames"],
    loudness_db: Float[AnyArray, " n_frames"],
    *,
    key: Key,
    audio: Float[AnyArray, " n_samples"] | None = None,
) -> Rendered:
    """Run the whole DDSP autoencoder on ONE example: features -> decoder -> processors.

    Parameters
    ----------
    model : DDSPAutoencoder
        Parameters and configuration.
    f0_hz : Float[AnyArray, "n_frames"]
        Fundamental frequency per frame, Hz (e.g. from CREPE).
    loudness_db : Float[AnyArray, "n_frames"]
        A-weighted loudness per frame, dB.
    key : Key
        PRNG key of the stochastic processors (the same key gives the same noise).
    audio : Float[AnyArray, "n_samples"] or None
        The input audio, ``n_frames * hop_size`` samples; needed only by a model with a z-encoder.

    Returns
    -------
    Rendered
        Final ``audio`` (``n_frames * hop_size`` samples), each source's dry signal and every processor's controls.

    Notes
    -----
    Source: magenta ddsp ``models.Autoencoder`` with a ``ProcessorGroup`` (e.g. ``Harmonic``, ``FilteredNoise``,
    ``Add``, ``Reverb``), here a typed :class:`~ddsp_core.processors.Instrument` instead of a string-keyed DAG.

    See Also
    --------
    reconstruction_loss, ddsp_core.processors.render
    """
    with jax.named_scope("ddsp_autoencoder"):
        raw = decode(model, f0_hz, loudness_db, audio)
        return render(model.instrument, raw, f0_hz, key=key)


def reconstruction_loss(
    model: DDSPAutoencoder,
    audio: Float[AnyArray, "batch n_samples"],
    f0_hz: Float[AnyArray, "batch n_frames"],
    loudness_db: Float[AnyArray, "batch n_frames"],
    *,
    key: Key,
    fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES,
) -> Float[Array, ""]:
    """Training loss for a batch: multi-scale spectral loss between the audio and its resynthesis.

    Parameters
    ----------
    model : DDSPAutoencoder
        Parameters (differentiate with ``eqx.filter_grad`` / ``eqx.filter_value_and_grad``).
    audio : Float[AnyArray, "batch n_samples"]
        Target audio, ``n_samples = n_frames * hop_size``.
    f0_hz, loudness_db : Float[AnyArray, "batch n_frames"]
        Features of the target audio.
    key : Key
        PRNG key, split into one key per example (example ``i`` uses ``jax.random.split(key, batch)[i]``).
    fft_sizes : tuple of int
        FFT sizes of the loss (default 2048 .. 64).

    Returns
    -------
    Float[Array, ""]
        :func:`ddsp_core.spectral.multiscale_spectral_loss` of the batch.

    See Also
    --------
    autoencode, ddsp_core.spectral.multiscale_spectral_loss
    """
    predicted = batch_autoencode(model, f0_hz, loudness_db, key=key, audio=audio).audio  # [batch, n_samples]
    return multiscale_spectral_loss(audio, predicted, fft_sizes=fft_sizes)


def batch_autoencode(
    model: DDSPAutoencoder,
    f0_hz: Float[AnyArray, "batch n_frames"],
    loudness_db: Float[AnyArray, "batch n_frames"],
    *,
    key: Key,
    audio: Float[AnyArray, "batch n_samples"] | None = None,
) -> Rendered:
    """:func:`autoencode` over a batch (``vmap``); example ``i`` uses ``jax.random.split(key, batch)[i]``.

    ``audio`` is the input audio, needed by a model with a z-encoder (and checked against the frame count).
    """
    n_samples = jnp.shape(f0_hz)[1] * model.hop_size
    if audio is not None and jnp.shape(audio)[1] != n_samples:
        raise ValueError(f"audio must have n_frames * hop_size = {n_samples} samples, got {jnp.shape(audio)[1]}")
    keys = jax.random.split(key, jnp.shape(f0_hz)[0])
    encoder_audio = audio if model.encoder is not None else None
    in_axes = (0, 0, 0, 0 if encoder_audio is not None else None)

    def one(f0, loudness, example_key, example_audio):
        return autoencode(model, f0, loudness, key=example_key, audio=example_audio)

    return jax.vmap(one, in_axes=in_axes)(f0_hz, loudness_db, keys, encoder_audio)
