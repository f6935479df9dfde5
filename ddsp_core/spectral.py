"""Spectral analysis: STFT, magnitudes, A-weighting, loudness, the multi-scale spectral loss, log-mel and MFCC.

The reference is magenta/ddsp 3.7.0 (``ddsp/spectral_ops.py`` and ``ddsp/losses.py``):

- framing follows magenta's ``spectral_ops.pad``/``get_framed_lengths`` with three modes: ``"same"`` (zeros at the
  end, ``ceil(n_samples / hop_size)`` frames; what ``tf.signal.stft(pad_end=True)`` does, used by the loss),
  ``"center"`` (``n_fft // 2`` zeros on both sides, ``n_samples // hop_size + 1`` frames; used by the loudness) and
  ``"valid"`` (no padding);
- every frame is multiplied by a periodic Hann window of length ``n_fft`` and transformed with a real FFT of
  length ``n_fft`` (``tf.signal.stft`` with ``fft_length = n_fft``; for a power-of-two ``n_fft``, the only sizes
  magenta uses, this is also its default "enclosing power of 2").

Every function works on ONE example (``audio`` of shape ``(n_samples,)``) and batches with :func:`jax.vmap`, except
the spectral loss, which, like magenta's ``SpectralLoss``, also takes a batch and averages over it. Sizes and rates
are keyword arguments (Python ints).

Compilation: the public functions are not jitted themselves (jit them, or call them inside your own jit); each
calls a private jitted body whose static arguments are integer sizes and the padding name, so an eager call still
compiles one program per shape, and float arguments (``ref_db``, loss weights, mel edges) are never static.

Speed on CPU: the loudness and the loss transform the frames in chunks (``_CHUNK_SAMPLES`` samples of frames per
signal) one after another (``lax.map``, recomputed in the backward pass by ``jax.checkpoint``), so the frames,
their spectra and the gradients stay in the CPU caches; this takes 1.3-2x less time than transforming all frames
at once, which streams hundreds of MB through memory. On other platforms all frames are transformed at once.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from ddsp_core._shapes import check_shapes
from ddsp_core._typing import AnyArray, Padding
from ddsp_core.core import hann_window, power_to_db, safe_log

__all__ = [
    "DEFAULT_FFT_SIZES",
    "Padding",
    "a_weighting_db",
    "compute_loudness",
    "log_mel_spectrogram",
    "magnitudes",
    "mfcc",
    "multiscale_spectral_loss",
    "spectral_loss_terms",
    "stft",
]

DEFAULT_FFT_SIZES: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)
"""FFT sizes of the multi-scale spectral loss in the DDSP paper and magenta's ae/solo-instrument configurations."""

# Constants of the IEC 61672 A-weighting curve as librosa writes them: the squared pole frequencies in Hz^2.
_A_WEIGHT_POLES_HZ_SQ = (12194.217**2, 20.598997**2, 107.65265**2, 737.86223**2)


# Framing ---------------------------------------------------------------------------------------------------------
def _check_frame_sizes(*, n_fft: int, hop_size: int, padding: str) -> None:
    if n_fft < 2:
        raise ValueError(f"n_fft must be an integer >= 2, got {n_fft}.")
    if not 1 <= hop_size <= n_fft:
        raise ValueError(f"hop_size must be an integer in [1, n_fft={n_fft}], got {hop_size}.")
    if padding not in ("center", "same", "valid"):
        raise ValueError(f"padding must be one of 'center', 'same', 'valid', got {padding!r}.")


def _pad_for_framing(audio: jax.Array, *, n_fft: int, hop_size: int, padding: str) -> jax.Array:
    """Zero-pad a 1-D signal as magenta's ``spectral_ops.pad`` does, ready for valid framing."""
    n_samples = audio.shape[0]
    if padding == "center":
        return jnp.pad(audio, (n_fft // 2, n_fft // 2))
    if padding == "same":
        n_frames = -(-n_samples // hop_size)
        return jnp.pad(audio, (0, (n_frames - 1) * hop_size + n_fft - n_samples))
    if n_samples < n_fft:
        raise ValueError(f"padding='valid' needs audio with at least n_fft={n_fft} samples, got {n_samples}.")
    return audio


def _frame(audio: jax.Array, *, frame_size: int, hop_size: int) -> jax.Array:
    """Cut a padded 1-D signal into ``1 + (n - frame_size) // hop_size`` frames: ``[n_frames, frame_size]``.

    One gather with a static index table, which XLA fuses with the window multiplication. For the loss it measured
    as fast as concatenating slices of hop-sized blocks (forward and backward, within noise), and it works for any
    hop size.
    """
    n_frames = 1 + (audio.shape[0] - frame_size) // hop_size
    index = np.arange(n_frames)[:, None] * hop_size + np.arange(frame_size)[None, :]  # [n_frames, frame_size]
    return audio[index]


def _windowed_frames(audio: jax.Array, *, n_fft: int, hop_size: int, padding: str) -> jax.Array:
    """Pad, frame and window one signal: ``[n_frames, n_fft]``."""
    padded = _pad_for_framing(audio, n_fft=n_fft, hop_size=hop_size, padding=padding)
    frames = _frame(padded, frame_size=n_fft, hop_size=hop_size)  # [n_frames, n_fft]
    return frames * jnp.asarray(hann_window(n_fft), dtype=jnp.float32)


def _map_on_cpu(body: Callable[[Any], Any], xs: Any) -> Any:
    """``body`` over the leading axis of ``xs``: a loop on CPU (each piece stays in cache), ``vmap`` elsewhere.

    On CPU the pieces run one after another with ``lax.map``, and ``jax.checkpoint`` makes the backward pass
    recompute each piece's forward values instead of storing them all. Same values on every platform.
    """
    return jax.lax.platform_dependent(
        xs, cpu=lambda xs: jax.lax.map(jax.checkpoint(body), xs), default=lambda xs: jax.vmap(body)(xs)
    )


_CHUNK_SAMPLES = 2**17
"""On CPU, frames are transformed in chunks of ``_CHUNK_SAMPLES // n_fft`` frames (512 KB of float32 per signal)."""


def _over_frame_chunks(
    frames_fn: Callable[..., jax.Array],
    signals: tuple[jax.Array, ...],
    *,
    n_fft: int,
    hop_size: int,
    padding: str,
) -> jax.Array:
    """``frames_fn`` of the windowed frames of one or more signals of one length, chunk by chunk on CPU.

    ``frames_fn(*frames)`` maps the ``[n, n_fft]`` windowed frames of each signal to ``[n, ...]`` (one row per frame,
    each frame on its own); the result is ``frames_fn(*[_windowed_frames(x, ...) for x in signals])``, computed on
    CPU for ``_CHUNK_SAMPLES // n_fft`` frames at a time (see ``_map_on_cpu``). The batch axis stays outside
    (``vmap``), so a batch split over devices stays split.
    """
    padded = [_pad_for_framing(x, n_fft=n_fft, hop_size=hop_size, padding=padding) for x in signals]
    n_frames = 1 + (padded[0].shape[0] - n_fft) // hop_size
    chunk = max(1, min(n_frames, _CHUNK_SAMPLES // n_fft))
    n_chunks = -(-n_frames // chunk)
    chunk_span = (chunk - 1) * hop_size + n_fft  # samples under one chunk of frames
    extra = max(0, (n_chunks * chunk - 1) * hop_size + n_fft - padded[0].shape[0])
    padded = [jnp.pad(x, (0, extra)) for x in padded]
    window = jnp.asarray(hann_window(n_fft), dtype=jnp.float32)

    def one_chunk(start: jax.Array) -> jax.Array:
        frames = [
            _frame(jax.lax.dynamic_slice(x, (start,), (chunk_span,)), frame_size=n_fft, hop_size=hop_size) * window
            for x in padded
        ]
        return frames_fn(*frames)  # [chunk, ...]

    out = _map_on_cpu(one_chunk, jnp.arange(n_chunks) * (chunk * hop_size))  # [n_chunks, chunk, ...]
    return out.reshape(n_chunks * chunk, *out.shape[2:])[:n_frames]


def _stft(audio: Float[AnyArray, "n_samples"], *, n_fft: int, hop_size: int, padding: str) -> jax.Array:
    _check_frame_sizes(n_fft=n_fft, hop_size=hop_size, padding=padding)
    audio = jnp.asarray(audio, dtype=jnp.float32)
    return jnp.fft.rfft(_windowed_frames(audio, n_fft=n_fft, hop_size=hop_size, padding=padding), axis=-1)


def _power_spectrogram(audio: Float[AnyArray, "n_samples"], *, n_fft: int, hop_size: int, padding: str) -> jax.Array:
    """``|STFT|^2`` as ``re^2 + im^2``: smooth everywhere, so its gradient is finite even on silence."""
    spectrum = _stft(audio, n_fft=n_fft, hop_size=hop_size, padding=padding)
    return jnp.square(spectrum.real) + jnp.square(spectrum.imag)  # [n_frames, n_fft // 2 + 1]


def _magnitudes(audio: Float[AnyArray, "n_samples"], *, n_fft: int, hop_size: int, padding: str) -> jax.Array:
    power = _power_spectrogram(audio, n_fft=n_fft, hop_size=hop_size, padding=padding)
    zero = power <= 0.0  # NaN is not zero: a non-finite signal keeps non-finite magnitudes
    return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, power)))


# STFT and magnitudes ---------------------------------------------------------------------------------------------
_stft_jit = jax.jit(_stft, static_argnames=("n_fft", "hop_size", "padding"))
_magnitudes_jit = jax.jit(_magnitudes, static_argnames=("n_fft", "hop_size", "padding"))


def stft(
    audio: Float[AnyArray, "n_samples"],
    *,
    n_fft: int,
    hop_size: int,
    padding: Padding = "same",
) -> Complex[Array, "n_frames n_bins"]:
    """Short-time Fourier transform with a periodic Hann window, framed as magenta frames it.

    .. math:: S[m, k] = \\sum_{n=0}^{N-1} w[n]\\, x_p[m H + n]\\, e^{-2\\pi i k n / N},
              \\quad w[n] = \\tfrac12 - \\tfrac12\\cos(2\\pi n / N)

    with ``N = n_fft``, ``H = hop_size`` and ``x_p`` the signal padded according to ``padding``.

    Parameters
    ----------
    audio : array, shape (n_samples,)
        Mono audio, float.
    n_fft : int
        Frame length and FFT length in samples (>= 2).
    hop_size : int
        Samples between the starts of consecutive frames, in ``[1, n_fft]``.
    padding : {"same", "center", "valid"}
        ``"same"`` (default; magenta ``stft(pad_end=True)``): zeros appended so there are
        ``ceil(n_samples / hop_size)`` frames, frame ``m`` starting at sample ``m * hop_size``.
        ``"center"``: ``n_fft // 2`` zeros on each side, ``1 + n_samples // hop_size`` frames (for even ``n_fft``),
        frame ``m`` centred on sample ``m * hop_size``. ``"valid"``: no padding,
        ``1 + (n_samples - n_fft) // hop_size`` frames (needs ``n_samples >= n_fft``).

    Returns
    -------
    Array, shape (n_frames, n_fft // 2 + 1), complex64
        The one-sided spectrum of each frame; bin ``k`` is at ``k * sample_rate / n_fft`` Hz.

    Raises
    ------
    ValueError
        If ``n_fft < 2``, ``hop_size`` is outside ``[1, n_fft]``, ``padding`` is unknown, or ``padding="valid"`` and
        the audio is shorter than ``n_fft``.

    Notes
    -----
    Source: magenta ddsp ``spectral_ops.stft`` (``tf.signal.stft``, Hann window, ``pad_end``) and
    ``spectral_ops.pad`` for the ``"center"``/``"valid"`` modes.

    Examples
    --------
    >>> spectrum = stft(jnp.zeros(16000), n_fft=2048, hop_size=512)
    >>> spectrum.shape  # ceil(16000 / 512) frames, 1025 bins
    (32, 1025)

    See also
    --------
    magnitudes : ``|stft|`` with a gradient that stays finite at zero.
    """
    check_shapes("stft", audio=(audio, "n_samples"))
    with jax.named_scope("stft"):
        return _stft_jit(audio, n_fft=n_fft, hop_size=hop_size, padding=padding)


def magnitudes(
    audio: Float[AnyArray, "n_samples"],
    *,
    n_fft: int,
    hop_size: int,
    padding: Padding = "same",
) -> Float[Array, "n_frames n_bins"]:
    """Magnitude spectrogram ``|stft(audio)|``, differentiable everywhere including at silence.

    .. math:: |S[m, k]| = \\sqrt{\\operatorname{Re}(S)^2 + \\operatorname{Im}(S)^2}

    computed so that where ``|S| = 0`` the value is 0 and the gradient is 0 (as TensorFlow's ``tf.abs``
    gradient, which divides with ``div_no_nan``), not NaN. NaN or infinite audio gives NaN or infinite magnitudes
    (never a finite number that looks like silence).

    Parameters
    ----------
    audio : array, shape (n_samples,)
        Mono audio, float.
    n_fft, hop_size, padding
        As in :func:`stft`.

    Returns
    -------
    Array, shape (n_frames, n_fft // 2 + 1), float32
        Non-negative magnitudes.

    Notes
    -----
    Source: magenta ddsp ``spectral_ops.compute_mag`` (there ``overlap = 1 - hop_size / n_fft``, default 0.75).

    Examples
    --------
    >>> mags = magnitudes(jnp.sin(2 * jnp.pi * 1000 * jnp.arange(4096) / 16000), n_fft=1024, hop_size=256)
    >>> int(mags[4].argmax())  # 1000 Hz * 1024 / 16000 Hz = bin 64
    64

    See also
    --------
    stft : the complex spectrum; multiscale_spectral_loss : L1 distances between magnitudes.
    """
    check_shapes("magnitudes", audio=(audio, "n_samples"))
    with jax.named_scope("magnitudes"):
        return _magnitudes_jit(audio, n_fft=n_fft, hop_size=hop_size, padding=padding)


# Loudness --------------------------------------------------------------------------------------------------------
def a_weighting_db(frequencies_hz: Float[AnyArray, "*shape"], *, min_db: float = -80.0) -> Float[Array, "*shape"]:
    """A-weighting curve (IEC 61672) in dB, floored at ``min_db``; equals ``librosa.A_weighting``.

    .. math:: A(f) = 2.0 + 20 \\log_{10} \\frac{c_0 f^4}{(f^2 + c_0)(f^2 + c_1)\\sqrt{(f^2 + c_2)(f^2 + c_3)}}

    with :math:`\\sqrt{c_i}` = 12194.217, 20.598997, 107.65265, 737.86223 Hz. It is about 0 dB at 1 kHz,
    -19.1 dB at 100 Hz, +1.3 dB at 2.5 kHz. The fraction is evaluated as a product of ratios in ``(0, 1]`` so that it
    keeps float32 precision (the reference takes differences of large logarithms in float64).

    Parameters
    ----------
    frequencies_hz : array, any shape
        Frequencies in Hz, >= 0. ``0`` Hz gives ``min_db``.
    min_db : float
        Floor of the curve in dB (default -80, librosa's default).

    Returns
    -------
    Array, same shape as ``frequencies_hz``, float32
        The weighting in dB.

    Notes
    -----
    Source: ``librosa.A_weighting`` (librosa 0.10), used by magenta ddsp ``spectral_ops.compute_loudness``.

    Examples
    --------
    >>> a_weighting_db(jnp.array([100.0, 1000.0]))
    Array([-1.9142433e+01,  3.4427643e-04], dtype=float32)

    See also
    --------
    compute_loudness : A-weighted loudness of audio.
    """
    f_sq = jnp.square(jnp.asarray(frequencies_hz, dtype=jnp.float32))
    c0, c1, c2, c3 = _A_WEIGHT_POLES_HZ_SQ
    log_ratio = (
        jnp.log10(f_sq / (f_sq + c1))
        + 0.5 * jnp.log10(f_sq / (f_sq + c2))
        + 0.5 * jnp.log10(f_sq / (f_sq + c3))
        + jnp.log10(c0 / (f_sq + c0))
    )
    return jnp.maximum(2.0 + 20.0 * log_ratio, min_db)


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_fft", "hop_size", "padding"))
def _mean_weighted_power(
    audio: Float[AnyArray, "n_samples"], *, sample_rate: int, n_fft: int, hop_size: int, padding: str
) -> jax.Array:
    """Mean over bins of the A-weighted power spectrum of every frame: ``[n_frames]``."""
    _check_frame_sizes(n_fft=n_fft, hop_size=hop_size, padding=padding)
    bin_frequencies_hz = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    weighting = 10.0 ** (a_weighting_db(bin_frequencies_hz) / 10.0)  # [n_bins], linear power gain

    def mean_weighted_power(windowed_frames: jax.Array) -> jax.Array:
        spectrum = jnp.fft.rfft(windowed_frames, axis=-1)  # [n, n_bins]
        power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
        return jnp.mean(power * weighting, axis=-1)  # [n]

    audio = jnp.asarray(audio, dtype=jnp.float32)
    return _over_frame_chunks(mean_weighted_power, (audio,), n_fft=n_fft, hop_size=hop_size, padding=padding)


def compute_loudness(
    audio: Float[AnyArray, "n_samples"],
    *,
    sample_rate: int = 16000,
    frame_rate: int = 250,
    n_fft: int = 2048,
    ref_db: float | Float[AnyArray, ""] = 0.0,
    range_db: float | Float[AnyArray, ""] = 80.0,
    padding: Padding = "center",
) -> Float[Array, "n_frames"]:
    """Perceptual loudness: A-weighted power of each frame, averaged over FFT bins, in dB.

    .. math:: L[m] = \\max\\Big(10 \\log_{10} \\max\\big(\\tfrac{1}{K}\\sum_k |S[m,k]|^2\\, 10^{A(f_k)/10},\\;
              10^{-\\text{range\\_db}/10}\\big) - \\text{ref\\_db},\\; -\\text{range\\_db}\\Big)

    with ``S = stft(audio, n_fft=n_fft, hop_size=sample_rate // frame_rate, padding=padding)``, ``K = n_fft // 2 + 1``
    bins at ``f_k = k * sample_rate / n_fft`` and ``A`` the A-weighting in dB (:func:`a_weighting_db`). The weighting
    and the average are in the power domain (magenta >= 2.0), then :func:`ddsp_core.core.power_to_db`.

    Parameters
    ----------
    audio : array, shape (n_samples,)
        Mono audio in [-1, 1].
    sample_rate : int
        Audio sample rate in Hz (default 16000).
    frame_rate : int
        Loudness frames per second (default 250); must divide ``sample_rate``: ``hop_size = sample_rate //
        frame_rate``.
    n_fft : int
        FFT size (default 2048, the training-time value; magenta's data preparation uses 512).
    ref_db : float
        Reference level subtracted, in dB (default 0; then a full-scale 1 kHz sine reads about 25.8 dB at n_fft
        2048 and 19.8 dB at n_fft 512: the mean weighted power is ``(n_fft / 4)^2 * 1.5 / (n_fft / 2 + 1)``).
    range_db : float
        Dynamic range: the output is floored at ``-range_db`` dB (default 80).
    padding : {"center", "same", "valid"}
        Framing (see :func:`stft`). ``"center"`` (default) gives ``n_samples // hop_size + 1`` frames,
        ``"same"`` gives ``ceil(n_samples / hop_size)``.

    Returns
    -------
    Array, shape (n_frames,), float32
        Loudness in dB, in ``[-range_db, +inf)``.

    Raises
    ------
    ValueError
        If ``frame_rate`` does not divide ``sample_rate``, or the framing sizes are invalid (see :func:`stft`).

    Notes
    -----
    Source: magenta ddsp 3.7.0 ``spectral_ops.compute_loudness(use_tf=True)``. The gradient is finite everywhere
    (on silence it is 0: the power is below the floor).

    Examples
    --------
    >>> audio = jnp.sin(2 * jnp.pi * 1000.0 * jnp.arange(16000) / 16000)
    >>> loudness_db = compute_loudness(audio, n_fft=512)
    >>> loudness_db.shape, round(float(loudness_db[100]), 2)  # 16000 // 64 + 1 frames
    ((251,), 19.81)

    See also
    --------
    a_weighting_db : the weighting curve; ddsp_core.core.power_to_db : the dB conversion and floors.
    """
    if sample_rate <= 0 or frame_rate <= 0 or sample_rate % frame_rate != 0:
        raise ValueError(
            f"frame_rate ({frame_rate}) must be a positive divisor of sample_rate ({sample_rate}) so that "
            "hop_size = sample_rate // frame_rate is exact."
        )
    hop_size = sample_rate // frame_rate
    check_shapes("compute_loudness", audio=(audio, "n_samples"))
    with jax.named_scope("compute_loudness"):
        mean_power = _mean_weighted_power(
            audio, sample_rate=sample_rate, n_fft=n_fft, hop_size=hop_size, padding=padding
        )  # [n_frames]
        return power_to_db(mean_power, ref_db=ref_db, range_db=range_db)


# Multi-scale spectral loss ---------------------------------------------------------------------------------------
def _check_fft_sizes(fft_sizes: tuple[int, ...]) -> None:
    if len(fft_sizes) == 0 or any(n_fft < 4 or n_fft & (n_fft - 1) for n_fft in fft_sizes):
        raise ValueError(
            f"fft_sizes must be a non-empty sequence of powers of two >= 4, got {tuple(fft_sizes)} (magenta "
            "zero-pads other sizes to the next power of two and windows odd ones differently; not supported)."
        )


def _magnitudes_of_frames(windowed_frames: jax.Array) -> jax.Array:
    spectrum = jnp.fft.rfft(windowed_frames, axis=-1)
    power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
    zero = power <= 0.0  # NaN is not zero: a non-finite signal keeps non-finite magnitudes
    return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, power)))


def _example_loss_terms(target: jax.Array, pred: jax.Array, n_fft: int) -> jax.Array:
    """``[mag, logmag]`` L1 terms of one example at one scale: means over frames and bins.

    Target and prediction go through separate STFTs: the target's then needs no gradient.
    """

    def per_frame_sums(target_frames: jax.Array, pred_frames: jax.Array) -> jax.Array:
        target_mag, pred_mag = _magnitudes_of_frames(target_frames), _magnitudes_of_frames(pred_frames)
        mag = jnp.sum(jnp.abs(target_mag - pred_mag), axis=-1)
        logmag = jnp.sum(jnp.abs(safe_log(target_mag) - safe_log(pred_mag)), axis=-1)
        return jnp.stack([mag, logmag], axis=-1)  # [n, 2]

    sums = _over_frame_chunks(per_frame_sums, (target, pred), n_fft=n_fft, hop_size=n_fft // 4, padding="same")
    return jnp.mean(sums, axis=0) / (n_fft // 2 + 1)  # [2]


@functools.partial(jax.jit, static_argnames=("fft_sizes",))
def _batch_loss_terms(
    target_batch: jax.Array, pred_batch: jax.Array, fft_sizes: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
    """Per-scale terms averaged over a batch ``[batch, n_samples]`` (every example has the same frames and bins)."""
    terms = jnp.stack(
        [jax.vmap(lambda t, p, n=n_fft: _example_loss_terms(t, p, n))(target_batch, pred_batch) for n_fft in fft_sizes],
        axis=1,
    )  # [batch, n_scales, 2]
    mean_terms = jnp.mean(terms, axis=0)  # [n_scales, 2]
    return mean_terms[:, 0], mean_terms[:, 1]


def _as_batch(audio: Float[AnyArray, "*batch n_samples"]) -> jax.Array:
    audio = jnp.asarray(audio, dtype=jnp.float32)
    return audio.reshape(-1, audio.shape[-1])  # [batch, n_samples]


def spectral_loss_terms(
    target: Float[AnyArray, "*batch n_samples"],
    pred: Float[AnyArray, "*batch n_samples"],
    *,
    fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES,
) -> tuple[Float[Array, "n_scales"], Float[Array, "n_scales"]]:
    """Per-scale terms of the multi-scale spectral loss: mean L1 of magnitudes and of log magnitudes.

    .. math:: \\text{mag}_s = \\operatorname{mean}_{b,m,k} |M^t_s - M^p_s|, \\qquad
              \\text{logmag}_s = \\operatorname{mean}_{b,m,k} |\\operatorname{safe\\_log} M^t_s -
              \\operatorname{safe\\_log} M^p_s|

    where ``M_s = magnitudes(x, n_fft=fft_sizes[s], hop_size=fft_sizes[s] // 4, padding="same")`` (75% overlap) and
    the mean runs over batch, frames and bins.

    Parameters
    ----------
    target : array, shape (*batch, n_samples)
        Reference audio (any number of leading batch axes, including none).
    pred : array, shape (*batch, n_samples)
        Predicted audio, same shape as ``target``.
    fft_sizes : tuple of int
        FFT sizes, powers of two >= 4 (default ``DEFAULT_FFT_SIZES`` = 2048 ... 64).

    Returns
    -------
    mag_terms : Array, shape (len(fft_sizes),)
        Mean absolute difference of magnitudes per scale, in ``fft_sizes`` order.
    logmag_terms : Array, shape (len(fft_sizes),)
        Mean absolute difference of natural-log magnitudes per scale (``ddsp_core.core.safe_log``, eps 1e-5).

    Raises
    ------
    ValueError
        If ``fft_sizes`` is empty or holds a size that is not a power of two >= 4, or ``target`` and ``pred``
        differ in shape.

    Notes
    -----
    Source: magenta ddsp ``losses.SpectralLoss`` (``loss_type="L1"``), its per-scale summands.

    Examples
    --------
    >>> mag_terms, logmag_terms = spectral_loss_terms(jnp.zeros(4096), jnp.zeros(4096))
    >>> mag_terms.shape, float(logmag_terms.sum())
    ((6,), 0.0)

    See also
    --------
    multiscale_spectral_loss : the weighted sum of these terms.
    """
    _check_fft_sizes(fft_sizes)
    if jnp.shape(target) != jnp.shape(pred) or jnp.ndim(target) == 0:
        raise ValueError(
            f"target and pred must have the same shape (*batch, n_samples), got target {jnp.shape(target)} "
            f"and pred {jnp.shape(pred)}"
        )
    with jax.named_scope("spectral_loss_terms"):
        return _batch_loss_terms(_as_batch(target), _as_batch(pred), tuple(fft_sizes))


def multiscale_spectral_loss(
    target: Float[AnyArray, "*batch n_samples"],
    pred: Float[AnyArray, "*batch n_samples"],
    *,
    fft_sizes: tuple[int, ...] = DEFAULT_FFT_SIZES,
    mag_weight: float | Float[AnyArray, ""] = 1.0,
    logmag_weight: float | Float[AnyArray, ""] = 1.0,
) -> Float[Array, ""]:
    """Multi-scale spectral loss of DDSP: L1 on magnitudes plus L1 on log magnitudes, summed over FFT sizes.

    .. math:: \\mathcal{L} = \\sum_{s} \\big(\\text{mag\\_weight}\\cdot\\text{mag}_s +
              \\text{logmag\\_weight}\\cdot\\text{logmag}_s\\big)

    with the per-scale terms of :func:`spectral_loss_terms` (means over batch, frames and bins; 75% overlap). Under
    ``jit`` a term whose weight is 0 is not computed.

    Parameters
    ----------
    target : array, shape (*batch, n_samples)
        Reference audio (any number of leading batch axes, including none).
    pred : array, shape (*batch, n_samples)
        Predicted audio, same shape as ``target``.
    fft_sizes : tuple of int
        FFT sizes, powers of two >= 4 (default 2048, 1024, 512, 256, 128, 64).
    mag_weight : float
        Weight of the linear-magnitude terms (default 1).
    logmag_weight : float
        Weight of the log-magnitude terms (default 1; magenta's ``SpectralLoss`` class default is 0, its ae and
        solo-instrument configurations set 1).

    Returns
    -------
    Array, shape ()
        The loss (>= 0; 0 iff the magnitude spectrograms are equal).

    Raises
    ------
    ValueError
        If ``fft_sizes`` is empty or holds a size that is not a power of two >= 4, or ``target`` and ``pred``
        differ in shape.

    Notes
    -----
    Source: Engel et al. 2020, section 4.2.1; magenta ddsp ``losses.SpectralLoss(loss_type="L1")``. The gradient
    is finite everywhere, including on silence. A NaN or infinite sample in either signal makes the loss NaN or
    infinite (never a finite value), so a diverged model cannot look trained.

    Examples
    --------
    >>> t = jnp.sin(2 * jnp.pi * 440.0 * jnp.arange(16000) / 16000)
    >>> float(multiscale_spectral_loss(t, t))
    0.0
    >>> jax.grad(multiscale_spectral_loss, argnums=1)(t, 0.5 * t).shape
    (16000,)

    See also
    --------
    spectral_loss_terms : the per-scale terms; magnitudes : the spectrograms compared.
    """
    with jax.named_scope("multiscale_spectral_loss"):
        mag_terms, logmag_terms = spectral_loss_terms(target, pred, fft_sizes=fft_sizes)
        # A term whose weight is a Python 0 is left out of the graph, so under jit XLA does not compute it.
        loss = jnp.zeros((), dtype=jnp.float32)
        if not _is_python_zero(mag_weight):
            loss = loss + mag_weight * jnp.sum(mag_terms)
        if not _is_python_zero(logmag_weight):
            loss = loss + logmag_weight * jnp.sum(logmag_terms)
        return loss


def _is_python_zero(weight: float | Float[AnyArray, ""]) -> bool:
    return isinstance(weight, (int, float)) and weight == 0.0


# Mel spectrogram and MFCC ----------------------------------------------------------------------------------------
def _hz_to_mel(frequencies_hz: np.ndarray) -> np.ndarray:
    """HTK mel scale with a natural log, as ``tf.signal``: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(frequencies_hz / 700.0)


def _mel_weight_matrix(*, n_mels: int, n_bins: int, sample_rate: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Triangular mel filterbank ``[n_bins, n_mels]`` as ``tf.signal.linear_to_mel_weight_matrix``.

    Bins are spread linearly over ``[0, sample_rate / 2]``; band ``j`` rises from mel edge ``j`` to ``j + 1`` and
    falls to ``j + 2`` (``n_mels + 2`` edges equally spaced in mel between ``lo_hz`` and ``hi_hz``), peak 1, no area
    normalisation; the DC bin gets no weight.
    """
    bin_mels = _hz_to_mel(np.linspace(0.0, sample_rate / 2.0, n_bins))[:, None]  # [n_bins, 1]
    lo_mel, hi_mel = _hz_to_mel(np.array([lo_hz, hi_hz], dtype=np.float64))
    edges = np.linspace(lo_mel, hi_mel, n_mels + 2)
    lower, center, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]  # [1, n_mels] each
    rising = (bin_mels - lower) / (center - lower)
    falling = (upper - bin_mels) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # [n_bins, n_mels]
    weights[0] = 0.0
    return weights


@functools.partial(jax.jit, static_argnames=("n_fft", "hop_size", "padding"))
def _log_mel(audio: jax.Array, mel_weights: jax.Array, *, n_fft: int, hop_size: int, padding: str) -> jax.Array:
    mags = _magnitudes(audio, n_fft=n_fft, hop_size=hop_size, padding=padding)  # [n_frames, n_bins]
    return safe_log(mags @ mel_weights)  # [n_frames, n_mels]


def _mel_weights_checked(*, n_mels: int, n_fft: int, sample_rate: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    if n_mels < 1:
        raise ValueError(f"n_mels must be a positive integer, got {n_mels}.")
    if not 0.0 <= lo_hz < hi_hz <= sample_rate / 2.0:
        raise ValueError(
            f"lo_hz and hi_hz must satisfy 0 <= lo_hz < hi_hz <= sample_rate / 2 = {sample_rate / 2}, "
            f"got lo_hz={lo_hz}, hi_hz={hi_hz}."
        )
    weights = _mel_weight_matrix(n_mels=n_mels, n_bins=n_fft // 2 + 1, sample_rate=sample_rate, lo_hz=lo_hz, hi_hz=hi_hz)
    return weights.astype(np.float32)


def log_mel_spectrogram(
    audio: Float[AnyArray, "n_samples"],
    *,
    sample_rate: int,
    n_fft: int = 1024,
    hop_size: int = 256,
    n_mels: int = 128,
    lo_hz: float = 20.0,
    hi_hz: float = 8000.0,
    padding: Padding = "same",
) -> Float[Array, "n_frames n_mels"]:
    """Natural log of a mel-scaled magnitude spectrogram.

    .. math:: \\text{logmel}[m, j] = \\operatorname{safe\\_log}\\Big(\\sum_k |S[m, k]|\\, W[k, j]\\Big)

    with ``S = stft(audio, n_fft=n_fft, hop_size=hop_size, padding=padding)`` and ``W`` the triangular HTK-mel
    filterbank of ``tf.signal.linear_to_mel_weight_matrix`` (mel = 1127 ln(1 + f/700); ``n_mels`` bands with edges
    equally spaced in mel from ``lo_hz`` to ``hi_hz``, peak weight 1, DC bin excluded). Magnitudes, not powers, are
    summed, as in magenta.

    Parameters
    ----------
    audio : array, shape (n_samples,)
        Mono audio.
    sample_rate : int
        Audio sample rate in Hz.
    n_fft, hop_size, padding
        Framing, as in :func:`stft` (defaults 1024, 256, "same": magenta's MFCC encoder at 250 frames per 4 s).
    n_mels : int
        Number of mel bands (default 128).
    lo_hz, hi_hz : float
        Lower and upper edge of the filterbank in Hz, ``0 <= lo_hz < hi_hz <= sample_rate / 2``
        (defaults 20 and 8000).

    Returns
    -------
    Array, shape (n_frames, n_mels), float32
        Log mel energies (natural log; ``log(1e-5)`` where a band is empty).

    Raises
    ------
    ValueError
        If the band edges or sizes are invalid.

    Notes
    -----
    Source: magenta ddsp ``spectral_ops.compute_logmel`` / ``compute_mel``.

    Examples
    --------
    >>> log_mel_spectrogram(jnp.zeros(16000), sample_rate=16000).shape  # ceil(16000 / 256) frames
    (63, 128)

    See also
    --------
    mfcc : its DCT; magnitudes : the linear spectrogram.
    """
    mel_weights = _mel_weights_checked(n_mels=n_mels, n_fft=n_fft, sample_rate=sample_rate, lo_hz=lo_hz, hi_hz=hi_hz)
    _check_frame_sizes(n_fft=n_fft, hop_size=hop_size, padding=padding)
    with jax.named_scope("log_mel_spectrogram"):
        audio = jnp.asarray(audio, dtype=jnp.float32)
        return _log_mel(audio, mel_weights, n_fft=n_fft, hop_size=hop_size, padding=padding)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop_size", "n_mfccs", "padding"))
def _mfcc(
    audio: jax.Array, mel_weights: jax.Array, *, n_fft: int, hop_size: int, n_mfccs: int, padding: str
) -> jax.Array:
    log_mel = _log_mel(audio, mel_weights, n_fft=n_fft, hop_size=hop_size, padding=padding)  # [n_frames, n_mels]
    n_mels = mel_weights.shape[-1]
    mel_index = np.arange(n_mels)[:, None]
    quefrency = np.arange(n_mfccs)[None, :]
    dct = np.sqrt(2.0 / n_mels) * np.cos(np.pi * quefrency * (2 * mel_index + 1) / (2 * n_mels))
    return log_mel @ jnp.asarray(dct, dtype=jnp.float32)  # [n_frames, n_mfccs]


def mfcc(
    audio: Float[AnyArray, "n_samples"],
    *,
    sample_rate: int,
    n_fft: int = 1024,
    hop_size: int = 256,
    n_mels: int = 128,
    n_mfccs: int = 30,
    lo_hz: float = 20.0,
    hi_hz: float = 8000.0,
    padding: Padding = "same",
) -> Float[Array, "n_frames n_mfccs"]:
    """Mel-frequency cepstral coefficients: DCT-II of the log-mel spectrogram, first ``n_mfccs`` kept.

    .. math:: c[m, q] = \\sqrt{\\tfrac{2}{J}} \\sum_{j=0}^{J-1} \\text{logmel}[m, j]
              \\cos\\Big(\\frac{\\pi q (2j + 1)}{2J}\\Big), \\quad q < \\text{n\\_mfccs}

    with ``J = n_mels`` (``tf.signal.mfccs_from_log_mel_spectrograms``: the unnormalised DCT-II times
    ``1 / sqrt(2 J)``; unlike an orthonormal DCT, coefficient 0 is not scaled by an extra ``1 / sqrt(2)``).

    Parameters
    ----------
    audio : array, shape (n_samples,)
        Mono audio.
    sample_rate : int
        Audio sample rate in Hz.
    n_fft, hop_size, n_mels, lo_hz, hi_hz, padding
        As in :func:`log_mel_spectrogram`.
    n_mfccs : int
        Number of coefficients kept, in ``[1, n_mels]`` (default 30, magenta's MFCC z-encoder; its
        ``compute_mfcc`` function default is 13).

    Returns
    -------
    Array, shape (n_frames, n_mfccs), float32
        MFCCs per frame.

    Raises
    ------
    ValueError
        If ``n_mfccs`` is outside ``[1, n_mels]`` or the arguments of :func:`log_mel_spectrogram` are invalid.

    Notes
    -----
    Source: magenta ddsp ``spectral_ops.compute_mfcc`` (used with ``mfcc_bins=30`` by
    ``encoders.MfccTimeDistributedRnnEncoder``).

    Examples
    --------
    >>> mfcc(jnp.zeros(64000), sample_rate=16000).shape  # 250 frames for 4 s at 16 kHz
    (250, 30)

    See also
    --------
    log_mel_spectrogram : the log-mel input of the DCT.
    """
    if not 1 <= n_mfccs <= n_mels:
        raise ValueError(f"n_mfccs must be in [1, n_mels={n_mels}], got {n_mfccs}.")
    mel_weights = _mel_weights_checked(n_mels=n_mels, n_fft=n_fft, sample_rate=sample_rate, lo_hz=lo_hz, hi_hz=hi_hz)
    _check_frame_sizes(n_fft=n_fft, hop_size=hop_size, padding=padding)
    with jax.named_scope("mfcc"):
        audio = jnp.asarray(audio, dtype=jnp.float32)
        return _mfcc(audio, mel_weights, n_fft=n_fft, hop_size=hop_size, n_mfccs=n_mfccs, padding=padding)
