"""Convolution effects: FFT convolution (time-invariant or frame-wise), reverb, and reverb impulse responses.

One convolution routine, :func:`fft_convolve`, serves both the reverb here (one long impulse response) and the
filtered-noise synthesiser in :mod:`ddsp_core.noise` (one short impulse response per frame, overlap-added).

Every function works on one example; batch with ``jax.vmap``.

Source: magenta/ddsp ``core.fft_convolve``, ``core.crop_and_compensate_delay``, ``effects.Reverb`` and
``effects.ExpDecayReverb`` (Engel et al., "DDSP: Differentiable Digital Signal Processing", ICLR 2020).
"""

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

from ddsp_core._shapes import check_shapes
from ddsp_core._typing import AnyArray, Key
from ddsp_core.core import exp_sigmoid

__all__ = ["exp_decay_impulse_response", "fft_convolve", "learned_ir_init", "reverb"]

_LEARNED_IR_NORM = 0.01
"""L2 norm of :func:`learned_ir_init`'s impulse response: white input gets a wet signal 40 dB below the dry one."""

_LEARNED_IR_DECAY = 4.0
"""Pre-activation decay of :func:`learned_ir_init` (magenta ``ExpDecayReverb``'s initial ``decay``)."""


def _overlap_add(frames: Float[Array, "n_frames frame_size"], hop_size: int) -> Float[Array, " n_out"]:
    """Overlap-add frames spaced ``hop_size`` apart; returns ``(n_frames - 1) * hop_size + frame_size`` samples.

    Each frame is cut into ``k = ceil(frame_size / hop_size)`` blocks of ``hop_size`` samples; block ``j`` of frame
    ``i`` lands on output block ``i + j``. The sum over ``j`` is done with a skew (pad each row of the
    ``(k, n_frames)`` block grid by ``k`` and re-read it with row length ``n_frames + k - 1``), so it is a few
    reshapes and one sum: no loop over frames and no scatter.
    """
    n_frames, frame_size = frames.shape
    n_blocks = -(-frame_size // hop_size)
    padded = jnp.pad(frames, ((0, 0), (0, n_blocks * hop_size - frame_size)))
    blocks = padded.reshape(n_frames, n_blocks, hop_size).transpose(1, 0, 2)  # [k, n_frames, hop]
    n_out_blocks = n_frames + n_blocks - 1
    skewed = jnp.pad(blocks, ((0, 0), (0, n_blocks), (0, 0))).reshape(-1, hop_size)  # [k * (n_frames + k), hop]
    skewed = skewed[: n_blocks * n_out_blocks].reshape(n_blocks, n_out_blocks, hop_size)
    audio = skewed.sum(axis=0).reshape(-1)  # [n_out_blocks * hop]
    return audio[: (n_frames - 1) * hop_size + frame_size]


def _fast_fft_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n``: a length XLA's FFT handles as fast per sample as a power of two, and often
    much shorter than the next power of two (80000 instead of 131072 for a 4 s clip and a 1 s reverb)."""
    size = max(n, 1)
    while True:
        rest = size
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 1


def fft_convolve(
    audio: Float[AnyArray, " n_samples"],
    impulse_response: Float[AnyArray, " ir_size"] | Float[AnyArray, "n_frames ir_size"],
    *,
    padding: Literal["same", "valid"] = "same",
    delay_compensation: int = -1,
) -> Float[Array, " n_out"]:
    """Convolve audio with one impulse response, or with one impulse response per frame, by FFT.

    With a 1-D impulse response this is a linear time-invariant filter (one FFT of the whole signal). With a 2-D
    impulse response of ``n_frames`` rows, the audio is cut into ``n_frames`` non-overlapping, non-windowed frames
    of ``frame_size = ceil(n_samples / n_frames)`` samples (the last one zero-padded); frame ``i`` is convolved
    with row ``i`` and the results are overlap-added with hop ``frame_size``: a linear time-varying filter.

    Maths: for each frame ``x_i`` and response ``h_i``, ``y_i = irfft(rfft(x_i, N) * rfft(h_i, N))`` with ``N`` the
    smallest ``2^a 3^b 5^c >= frame_size + ir_size - 1`` (so the circular convolution equals the linear one), then
    ``y[n] = sum_i y_i[n - i * frame_size]``. The result is cropped: it starts ``delay_compensation`` samples into
    the full convolution and is ``n_samples`` (``padding="same"``) or ``n_samples + ir_size - 1``
    (``padding="valid"``) samples long.

    Parameters
    ----------
    audio
        ``(n_samples,)`` input signal.
    impulse_response
        ``(ir_size,)`` one FIR filter (taps at the audio rate), or ``(n_frames, ir_size)`` one filter per frame.
        ``n_frames`` must cut the audio into exactly ``n_frames`` frames of ``ceil(n_samples / n_frames)``
        samples.
    padding
        ``"same"``: output has ``n_samples`` samples. ``"valid"``: output has ``n_samples + ir_size - 1``
        samples and keeps the filter's tail.
    delay_compensation
        Samples dropped from the front of the full convolution to undo the filter's group delay. Negative (the
        default) means ``max((ir_size - 1) // 2 - 1, 0)``, magenta's choice for the linear-phase filters of
        :func:`ddsp_core.noise.frequency_impulse_response`; use 0 for a causal filter such as a reverb. Output
        samples beyond the end of the full convolution are zero (it is zero there).

    Returns
    -------
    ``(n_samples,)`` for ``padding="same"``, ``(n_samples + ir_size - 1,)`` for ``padding="valid"``.

    Raises
    ------
    ValueError
        If ``padding`` is unknown, or if the audio cannot be cut into ``n_frames`` frames.

    Source
    ------
    magenta/ddsp ``core.fft_convolve`` and ``core.crop_and_compensate_delay`` (same framing and crop; magenta's FFT
    length is the next power of two, which gives the same result up to float32 rounding and costs up to 1.6x more,
    e.g. 131072 instead of 80000 for a 4 s clip and a 1 s reverb). Magenta returns an empty tensor when the crop leaves no samples at the end (``audio[:, start:-0]``);
    here the crop is ``full[start : start + out_size]``, the intended slice.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ddsp_core.effects import fft_convolve
    >>> fft_convolve(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 1.0]), padding="valid", delay_compensation=0)
    Array([1., 3., 5., 3.], dtype=float32)

    See Also
    --------
    reverb : convolution with a learned room response, dry signal added.
    ddsp_core.noise.frequency_filter : frame-wise filtering with filters designed from magnitudes.
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    ir_spec = "ir_size" if jnp.ndim(impulse_response) == 1 else "n_frames ir_size"
    check_shapes("fft_convolve", audio=(audio, "n_samples"), impulse_response=(impulse_response, ir_spec))
    with jax.named_scope("fft_convolve"):
        audio = jnp.asarray(audio, dtype=jnp.float32)
        impulse_response = jnp.asarray(impulse_response, dtype=jnp.float32)
        if impulse_response.ndim == 1:
            impulse_response = impulse_response[jnp.newaxis, :]  # [1, ir_size]
        n_samples = audio.shape[0]
        n_frames, ir_size = impulse_response.shape
        frame_size = -(-n_samples // n_frames)
        if -(-n_samples // frame_size) != n_frames:
            raise ValueError(
                f"impulse_response has {n_frames} frames but audio of {n_samples} samples cuts into "
                f"{-(-n_samples // frame_size)} frames of ceil({n_samples} / {n_frames}) = {frame_size} samples; "
                "use a number of frames that divides the audio evenly (e.g. n_samples a multiple of n_frames)"
            )

        fft_size = _fast_fft_size(frame_size + ir_size - 1)
        ir_fft = jnp.fft.rfft(impulse_response, n=fft_size)  # [n_frames, fft_size // 2 + 1]
        return _convolve_frames_by_spectrum(
            audio, ir_fft, ir_size=ir_size, fft_size=fft_size, padding=padding, delay_compensation=delay_compensation
        )


def _convolve_frames_by_spectrum(
    audio: Float[Array, " n_samples"],
    ir_spectra: Complex[Array, "n_frames n_bins"],
    *,
    ir_size: int,
    fft_size: int,
    padding: str,
    delay_compensation: int,
) -> Float[Array, " n_out"]:
    """The body of :func:`fft_convolve` once the impulse responses' spectra are known.

    ``ir_spectra`` holds ``rfft(h_i, fft_size)`` of each frame's (or the one) impulse response of ``ir_size`` taps,
    ``fft_size >= frame_size + ir_size - 1``: frame, transform, multiply, invert, overlap-add, crop.
    """
    n_samples, n_frames = audio.shape[0], ir_spectra.shape[0]
    frame_size = -(-n_samples // n_frames)
    audio_frames = jnp.pad(audio, (0, n_frames * frame_size - n_samples)).reshape(n_frames, frame_size)
    audio_fft = jnp.fft.rfft(audio_frames, n=fft_size)  # [n_frames, fft_size // 2 + 1]
    frames_out = jnp.fft.irfft(audio_fft * ir_spectra, n=fft_size)  # [n_frames, fft_size]
    full = _overlap_add(frames_out, frame_size)  # [(n_frames - 1) * frame_size + fft_size]

    out_size = n_samples if padding == "same" else n_samples + ir_size - 1
    start = max((ir_size - 1) // 2 - 1, 0) if delay_compensation < 0 else delay_compensation
    shortfall = start + out_size - full.shape[0]
    if shortfall > 0:
        full = jnp.pad(full, (0, shortfall))
    return full[start : start + out_size]


def reverb(
    audio: Float[AnyArray, " n_samples"],
    impulse_response: Float[AnyArray, " ir_size"],
    *,
    add_dry: bool = True,
) -> Float[Array, " n_samples"]:
    """Convolution reverb: the audio convolved with a room impulse response whose first tap is zeroed, plus dry.

    Maths: ``h'[0] = 0, h'[k] = h[k] (k >= 1)``; ``wet = (audio * h')[0 : n_samples]`` (causal, no delay
    compensation); returns ``audio + wet`` (or ``wet`` with ``add_dry=False``). Zeroing the first tap keeps the dry
    path out of the learned response, so ``add_dry`` alone controls it: a unit impulse at tap 0 gives back just
    the dry audio; a unit impulse at tap ``d >= 1`` gives ``audio[n] + audio[n - d]``.

    Parameters
    ----------
    audio
        ``(n_samples,)`` dry signal.
    impulse_response
        ``(ir_size,)`` room response at the audio rate (e.g. 16000 taps = 1 s at 16 kHz). Its first tap is ignored.
    add_dry
        Add the dry signal to the reverberated one (magenta ``Reverb(add_dry=True)``, the default).

    Returns
    -------
    ``(n_samples,)`` the reverberated audio, the reverb tail beyond ``n_samples`` cut off.

    Source
    ------
    magenta/ddsp ``effects.Reverb.get_signal`` and ``_mask_dry_ir``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ddsp_core.effects import reverb
    >>> reverb(jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([1.0, 0.0, 0.5]))
    Array([1. , 0. , 0.5, 0. ], dtype=float32)

    See Also
    --------
    learned_ir_init : a starting impulse response for a learned reverb.
    exp_decay_impulse_response : a two-parameter impulse response.
    fft_convolve : the convolution used here.
    """
    check_shapes("reverb", audio=(audio, "n_samples"), impulse_response=(impulse_response, "ir_size"))
    with jax.named_scope("reverb"):
        audio = jnp.asarray(audio, dtype=jnp.float32)
        impulse_response = jnp.asarray(impulse_response, dtype=jnp.float32)
        masked_ir = impulse_response.at[0].set(0.0)
        wet = fft_convolve(audio, masked_ir, padding="same", delay_compensation=0)
        return audio + wet if add_dry else wet


def exp_decay_impulse_response(
    gain: Float[AnyArray, ""] | float,
    decay: Float[AnyArray, ""] | float,
    *,
    ir_length: int,
    key: Key,
) -> Float[Array, " ir_length"]:
    """An exponentially decaying white-noise impulse response with two parameters (pre-activation gain, decay).

    Maths: ``t = linspace(0, 1, ir_length)`` (the IR's length is time 1), ``noise ~ U[-1, 1)``,
    ``h = exp_sigmoid(gain) * exp(-(2 + exp(decay)) * t) * noise``. The decay rate ``2 + exp(decay)`` is at least 2
    (amplitude down by ``exp(-2)`` at the end of the IR), and grows fast with ``decay``; magenta initialises
    ``gain = 2`` (peak amplitude ~1.49) and ``decay = 4`` (rate ~56.6, i.e. -60 dB after 12% of the IR).

    Parameters
    ----------
    gain
        Scalar, pre-activation gain: passed through ``exp_sigmoid`` (range ``(1e-7, 2)``).
    decay
        Scalar, pre-activation decay: rate ``2 + exp(decay)`` per IR length.
    ir_length
        Number of taps (audio-rate samples), > 0.
    key
        PRNG key for the noise.

    Returns
    -------
    ``(ir_length,)`` the impulse response.

    Raises
    ------
    ValueError
        If ``ir_length`` is not positive.

    Source
    ------
    magenta/ddsp ``effects.ExpDecayReverb._get_ir`` (scale_fn ``exp_sigmoid``).

    Examples
    --------
    >>> import jax
    >>> from ddsp_core.effects import exp_decay_impulse_response, reverb
    >>> ir = exp_decay_impulse_response(2.0, 4.0, ir_length=16000, key=jax.random.key(0))
    >>> ir.shape
    (16000,)

    See Also
    --------
    reverb : apply the impulse response.
    learned_ir_init : the same shape of response, scaled quiet, as a learnable starting point.
    """
    if ir_length <= 0:
        raise ValueError(f"ir_length must be a positive number of taps, got {ir_length}")
    with jax.named_scope("exp_decay_impulse_response"):
        time = jnp.linspace(0.0, 1.0, ir_length)
        noise = jax.random.uniform(key, (ir_length,), minval=-1.0, maxval=1.0)
        decay_rate = 2.0 + jnp.exp(jnp.asarray(decay, dtype=jnp.float32))
        return exp_sigmoid(jnp.asarray(gain, dtype=jnp.float32)) * jnp.exp(-decay_rate * time) * noise


def learned_ir_init(ir_length: int, *, key: Key) -> Float[Array, " ir_length"]:
    """A starting value for a learned reverb impulse response: quiet, exponentially decaying noise.

    The shape is :func:`exp_decay_impulse_response` with magenta's initial ``decay = 4`` (the envelope falls 60 dB
    in the first 12% of the IR), scaled to an L2 norm of 0.01, so white input gets a wet signal about 40 dB below
    the dry one: a model starts almost dry and learns how much room it needs. The first tap is 0 (reverb ignores
    it anyway).

    Magenta's trainable ``Reverb`` starts from Gaussian noise of standard deviation 1e-6 with no decay; a decaying
    start gives the optimiser a room-like shape to scale instead of flat noise.

    Parameters
    ----------
    ir_length
        Number of taps (audio-rate samples), > 1 (e.g. 16000 = 1 s at 16 kHz).
    key
        PRNG key for the noise.

    Returns
    -------
    ``(ir_length,)`` the impulse response, ``ir[0] == 0`` and ``||ir||_2 == 0.01``.

    Raises
    ------
    ValueError
        If ``ir_length`` is less than 2.

    Examples
    --------
    >>> import jax
    >>> from ddsp_core.effects import learned_ir_init
    >>> ir = learned_ir_init(16000, key=jax.random.key(0))
    >>> round(float(jax.numpy.linalg.norm(ir)), 4)
    0.01

    See Also
    --------
    reverb : apply the impulse response.
    exp_decay_impulse_response : the envelope used here.
    """
    if ir_length < 2:
        raise ValueError(f"ir_length must be at least 2 taps (the first is the masked dry tap), got {ir_length}")
    ir = exp_decay_impulse_response(0.0, _LEARNED_IR_DECAY, ir_length=ir_length, key=key)
    ir = ir.at[0].set(0.0)
    return ir * (_LEARNED_IR_NORM / jnp.linalg.norm(ir))
