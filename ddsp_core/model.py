"""The DDSP autoencoder as one Equinox module and one pure function.

``autoencode(model, f0_hz, loudness_db, *, key)`` runs, for ONE example:

    decoder (f0, loudness[, z]) -> raw outputs
      -> controls   (exp_sigmoid, Nyquist mask, normalised distribution; noise exp_sigmoid(raw - 5))
      -> harmonic synthesis + filtered noise  (dry signals)
      -> mix: harmonic_weight * harmonic + noise_weight * noise
      -> reverb with the learnable impulse response (dry added)

Batches come from ``jax.vmap``; :func:`spectral_loss` does that for a training batch. ``n_samples`` is not a field:
it is ``n_frames * hop_size``, so one model resynthesises clips of any length.

The reverb impulse response is a plain learnable array on the module, initialised by
:func:`ddsp_core.effects.learned_ir_init`: exponentially decaying noise scaled to an L2 norm of 0.01, so the wet
signal starts about 40 dB below the dry one (the model starts almost dry and learns how much room it needs; a loud
random IR at the start would smear every note and slow the early training down).
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ddsp_core._typing import AnyArray, Key
from ddsp_core.decoder import DDSPDecoder, DecoderOutputs, MfccEncoder
from ddsp_core.effects import learned_ir_init, reverb
from ddsp_core.noise import filtered_noise, filtered_noise_controls
from ddsp_core.spectral import DEFAULT_FFT_SIZES, multiscale_spectral_loss
from ddsp_core.synths import harmonic_controls, harmonic_synthesis

__all__ = [
    "Controls",
    "DDSPAutoencoder",
    "ModelOutputs",
    "autoencode",
    "controls_from_decoder",
    "spectral_loss",
]


class Controls(NamedTuple):
    """Physical synthesiser controls for one example, at frame rate.

    Attributes
    ----------
    amplitude : Float[Array, "n_frames"]
        Overall linear amplitude of the harmonic synthesiser.
    harmonic_distribution : Float[Array, "n_frames n_harmonics"]
        Normalised harmonic distribution (sums to 1 over harmonics below Nyquist, 0 at or above).
    noise_magnitudes : Float[Array, "n_frames n_noise_bands"]
        Linear filter magnitudes of the noise, bands uniform from 0 Hz to Nyquist.
    """

    amplitude: Float[Array, " n_frames"]
    harmonic_distribution: Float[Array, "n_frames n_harmonics"]
    noise_magnitudes: Float[Array, "n_frames n_noise_bands"]


class ModelOutputs(NamedTuple):
    """Everything :func:`autoencode` computes for one example.

    Attributes
    ----------
    audio : Float[Array, "n_samples"]
        Final audio: the weighted mix of harmonic and noise, through the reverb (dry added).
    harmonic : Float[Array, "n_samples"]
        Dry harmonic audio (before the mix weight).
    noise : Float[Array, "n_samples"]
        Dry filtered noise (before the mix weight).
    amplitude, harmonic_distribution, noise_magnitudes
        The :class:`Controls`, at frame rate.
    amplitudes : Float[Array, "n_frames n_harmonics"]
        Linear amplitude of every harmonic, ``amplitude[:, None] * harmonic_distribution``.
    f0_hz : Float[Array, "n_frames"]
        The f0 the harmonic synthesiser played, Hz.
    """

    audio: Float[Array, " n_samples"]
    harmonic: Float[Array, " n_samples"]
    noise: Float[Array, " n_samples"]
    amplitude: Float[Array, " n_frames"]
    harmonic_distribution: Float[Array, "n_frames n_harmonics"]
    noise_magnitudes: Float[Array, "n_frames n_noise_bands"]
    amplitudes: Float[Array, "n_frames n_harmonics"]
    f0_hz: Float[Array, " n_frames"]


def controls_from_decoder(
    raw: DecoderOutputs, f0_hz: Float[AnyArray, " n_frames"], *, sample_rate: int, noise_initial_bias: float = -5.0
) -> Controls:
    """The ``get_controls`` step: raw decoder outputs -> physical synthesiser controls.

    Maths: ``amplitude = exp_sigmoid(raw_amplitude)``; ``distribution = exp_sigmoid(raw_distribution)`` with
    harmonics at or above Nyquist zeroed, then normalised to sum 1;
    ``noise_magnitudes = exp_sigmoid(raw_noise + noise_initial_bias)``, with
    ``exp_sigmoid(x) = 2 sigmoid(x) ** ln 10 + 1e-7``.

    Parameters
    ----------
    raw : DecoderOutputs
        Decoder outputs for one example (``(n_frames,)``, ``(n_frames, n_harmonics)``, ``(n_frames, n_bands)``).
    f0_hz : Float[AnyArray, "n_frames"]
        Fundamental frequency per frame, Hz (decides which harmonics are above Nyquist).
    sample_rate : int
        Audio sample rate, Hz.
    noise_initial_bias : float
        Added to the raw noise before ``exp_sigmoid`` (magenta ``FilteredNoise(initial_bias=-5)``: the noise
        starts about 100 dB down).

    Returns
    -------
    Controls

    Notes
    -----
    Source: magenta ddsp ``synths.Harmonic.get_controls`` and ``synths.FilteredNoise.get_controls``.

    See Also
    --------
    ddsp_core.synths.harmonic_controls, ddsp_core.noise.filtered_noise_controls
    """
    amplitude, distribution = harmonic_controls(
        raw.amplitude, raw.harmonic_distribution, f0_hz, sample_rate=sample_rate
    )  # [n_frames], [n_frames, n_harmonics]
    noise_magnitudes = filtered_noise_controls(raw.noise_magnitudes, initial_bias=noise_initial_bias)
    return Controls(amplitude=amplitude, harmonic_distribution=distribution, noise_magnitudes=noise_magnitudes)


class DDSPAutoencoder(eqx.Module):
    """The DDSP autoencoder's parameters and configuration: decoder, optional z-encoder, reverb impulse response.

    Parameters
    ----------
    sample_rate : int
        Audio sample rate, Hz (default 16000).
    hop_size : int
        Audio samples per frame of f0/loudness (default 64 = 250 frames/s at 16 kHz).
    n_harmonics : int
        Harmonics of the additive synthesiser (default 100).
    n_noise_bands : int
        Frequency bands of the filtered noise (default 65).
    ir_length : int
        Reverb impulse-response taps (default 16000 = 1 s at 16 kHz).
    harmonic_weight, noise_weight : float
        Mix weights of the dry harmonic and noise signals (defaults 1.0 and 0.1, the seed configuration).
    use_reverb : bool
        With ``False`` the model has no impulse response and its output is the dry mix.
    noise_window_size : int
        Hann window of the noise filters (default 257, magenta's ``FilteredNoise`` default).
    z_dims : int
        0 (default): no z-encoder; otherwise an :class:`~ddsp_core.decoder.MfccEncoder` feeds ``z`` of this size.
    hidden_size, n_mlp_layers, scan_unroll : int
        Passed to :class:`~ddsp_core.decoder.DDSPDecoder` (and the encoder's GRU width / unroll).
    key : Key
        PRNG key for every initialisation (keyword only).

    Examples
    --------
    >>> model = DDSPAutoencoder(key=jax.random.key(0))
    >>> out = autoencode(model, jnp.full((1000,), 440.0), jnp.full((1000,), -20.0), key=jax.random.key(1))
    >>> out.audio.shape
    (64000,)

    See Also
    --------
    autoencode, spectral_loss, ddsp_datarax.pipeline.composite_from_model
    """

    decoder: DDSPDecoder
    encoder: MfccEncoder | None
    impulse_response: Float[Array, " ir_length"] | None
    sample_rate: int = eqx.field(static=True)
    hop_size: int = eqx.field(static=True)
    n_harmonics: int = eqx.field(static=True)
    n_noise_bands: int = eqx.field(static=True)
    ir_length: int = eqx.field(static=True)
    harmonic_weight: float = eqx.field(static=True)
    noise_weight: float = eqx.field(static=True)
    noise_window_size: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        hop_size: int = 64,
        n_harmonics: int = 100,
        n_noise_bands: int = 65,
        ir_length: int = 16000,
        harmonic_weight: float = 1.0,
        noise_weight: float = 0.1,
        use_reverb: bool = True,
        noise_window_size: int = 257,
        z_dims: int = 0,
        hidden_size: int = 512,
        n_mlp_layers: int = 3,
        scan_unroll: int = 1,
        key: Key,
    ):
        for name, value in (("sample_rate", sample_rate), ("hop_size", hop_size), ("ir_length", ir_length)):
            if value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        decoder_key, encoder_key, ir_key = jax.random.split(key, 3)
        self.decoder = DDSPDecoder(
            n_harmonics=n_harmonics,
            n_noise_bands=n_noise_bands,
            hidden_size=hidden_size,
            n_mlp_layers=n_mlp_layers,
            z_dims=z_dims,
            scan_unroll=scan_unroll,
            key=decoder_key,
        )
        self.encoder = (
            MfccEncoder(
                z_dims=z_dims,
                sample_rate=sample_rate,
                hidden_size=hidden_size,
                scan_unroll=scan_unroll,
                key=encoder_key,
            )
            if z_dims > 0
            else None
        )
        self.impulse_response = learned_ir_init(ir_length, key=ir_key) if use_reverb else None
        self.sample_rate = sample_rate
        self.hop_size = hop_size
        self.n_harmonics = n_harmonics
        self.n_noise_bands = n_noise_bands
        self.ir_length = ir_length
        self.harmonic_weight = harmonic_weight
        self.noise_weight = noise_weight
        self.noise_window_size = noise_window_size


def autoencode(
    model: DDSPAutoencoder,
    f0_hz: Float[AnyArray, " n_frames"],
    loudness_db: Float[AnyArray, " n_frames"],
    *,
    key: Key,
    audio: Float[AnyArray, " n_samples"] | None = None,
) -> ModelOutputs:
    """Run the whole DDSP autoencoder on ONE example: features -> decoder -> synthesisers -> reverb.

    Parameters
    ----------
    model : DDSPAutoencoder
        Parameters and configuration.
    f0_hz : Float[AnyArray, "n_frames"]
        Fundamental frequency per frame, Hz (e.g. from CREPE).
    loudness_db : Float[AnyArray, "n_frames"]
        A-weighted loudness per frame, dB.
    key : Key
        PRNG key of the filtered noise (the same key gives the same noise).
    audio : Float[AnyArray, "n_samples"] or None
        The input audio, ``n_frames * hop_size`` samples; needed only by a model with a z-encoder.

    Returns
    -------
    ModelOutputs
        Final ``audio`` and dry ``harmonic``/``noise`` of ``n_frames * hop_size`` samples, and the controls.

    Notes
    -----
    ``audio = reverb(harmonic_weight * harmonic + noise_weight * noise, impulse_response)`` (dry added).
    Source: magenta ddsp ``models.Autoencoder`` with the ``ae``/``solo_instrument`` processor group
    (``Harmonic``, ``FilteredNoise``, ``Add``, ``Reverb``).

    Examples
    --------
    >>> outputs = jax.vmap(lambda f, l, k: autoencode(model, f, l, key=k))(f0_batch, loudness_batch, keys)

    See Also
    --------
    spectral_loss, controls_from_decoder
    """
    n_frames = f0_hz.shape[0]
    n_samples = n_frames * model.hop_size
    with jax.named_scope("ddsp_autoencoder"):
        z = None
        if model.encoder is not None:
            if audio is None:
                raise ValueError("audio is required: this model has a z-encoder")
            if audio.shape[0] != n_samples:
                raise ValueError(
                    f"audio must have n_frames * hop_size = {n_samples} samples, got {audio.shape[0]}"
                )
            z = model.encoder(audio, n_frames=n_frames)  # [n_frames, z_dims]
        raw = model.decoder(f0_hz, loudness_db, z)
        controls = controls_from_decoder(raw, f0_hz, sample_rate=model.sample_rate)
        harmonic = harmonic_synthesis(
            controls.amplitude, controls.harmonic_distribution, f0_hz, n_samples=n_samples, sample_rate=model.sample_rate
        )  # [n_samples]
        noise = filtered_noise(
            controls.noise_magnitudes, n_samples=n_samples, window_size=model.noise_window_size, key=key
        )  # [n_samples]
        dry = model.harmonic_weight * harmonic + model.noise_weight * noise
        wet = dry if model.impulse_response is None else reverb(dry, model.impulse_response)
        return ModelOutputs(
            audio=wet,
            harmonic=harmonic,
            noise=noise,
            amplitude=controls.amplitude,
            harmonic_distribution=controls.harmonic_distribution,
            noise_magnitudes=controls.noise_magnitudes,
            amplitudes=controls.amplitude[:, None] * controls.harmonic_distribution,  # [n_frames, n_harmonics]
            f0_hz=jnp.asarray(f0_hz, dtype=jnp.float32),
        )


def spectral_loss(
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
        PRNG key, split into one noise key per example.
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
    n_samples = f0_hz.shape[1] * model.hop_size
    if audio.shape[1] != n_samples:
        raise ValueError(f"audio must have n_frames * hop_size = {n_samples} samples, got {audio.shape[1]}")
    keys = jax.random.split(key, audio.shape[0])
    encoder_audio = audio if model.encoder is not None else None

    def one(f0, loudness, example_key, example_audio):
        return autoencode(model, f0, loudness, key=example_key, audio=example_audio).audio

    in_axes = (0, 0, 0, 0 if encoder_audio is not None else None)
    predicted = jax.vmap(one, in_axes=in_axes)(f0_hz, loudness_db, keys, encoder_audio)  # [batch, n_samples]
    return multiscale_spectral_loss(audio, predicted, fft_sizes=fft_sizes)
