"""Filtered noise: frequency-sampled FIR design and frame-wise filtering of white noise.

Each frame carries ``n_bands`` linear magnitudes spaced uniformly from 0 Hz to Nyquist. They become a zero-phase,
Hann-windowed, causal FIR filter (:func:`frequency_impulse_response`), which filters that frame of the audio by FFT
convolution with overlap-add (:func:`frequency_filter`). Uniform noise in ``[-1, 1)`` through such a filter is
DDSP's noise synthesiser (:func:`filtered_noise`); :func:`filtered_noise_controls` maps network outputs to
magnitudes.

Every function works on one example; batch with ``jax.vmap``.

Source: magenta/ddsp ``core.frequency_impulse_response``, ``core.apply_window_to_impulse_response``,
``core.frequency_filter`` and ``synths.FilteredNoise`` (Engel et al., ICLR 2020); the design method is J. O. Smith,
"Spectral Audio Signal Processing", *Windowing a Desired Impulse Response*.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ddsp_core._shapes import check_shapes
from ddsp_core._typing import AnyArray, Key
from ddsp_core.core import exp_sigmoid, hann_window
from ddsp_core.effects import _convolve_frames_by_spectrum, _fast_fft_size

__all__ = [
    "filtered_noise",
    "filtered_noise_controls",
    "frame_noise",
    "frequency_filter",
    "frequency_impulse_response",
]


def _check_filter_sizes(n_bands: int, window_size: int) -> None:
    if n_bands < 2:
        raise ValueError(f"magnitudes must have at least 2 bands (0 Hz and Nyquist), got {n_bands}")
    if window_size < 0 or window_size in (1, 2):
        raise ValueError(f"window_size must be 0 (the full impulse-response size) or >= 3, got {window_size}")


def _impulse_response_basis(n_bands: int, window_size: int) -> np.ndarray:
    """The filter design as a matrix: ``frequency_impulse_response(m) = m @ basis``, shape ``[n_bands, ir_size]``.

    The design (inverse real FFT, window, rotation, crop) is linear in the magnitudes, so row ``k`` is the design
    applied to the ``k``-th unit vector. Built in float64 NumPy at trace time; one small matrix product per frame
    then replaces an inverse FFT, a window multiply and a gather.
    """
    n_fft = 2 * (n_bands - 1)
    zero_phase_ir = np.fft.irfft(np.eye(n_bands), n=n_fft)  # [n_bands, n_fft], time 0 at index 0
    if window_size == 0 or window_size >= n_fft:
        return np.fft.fftshift(zero_phase_ir * np.fft.fftshift(hann_window(n_fft)), axes=-1)  # [n_bands, n_fft]
    # tf.signal.hann_window(periodic=True), which magenta uses, is periodic for even sizes, symmetric for odd ones.
    window = hann_window(window_size, periodic=window_size % 2 == 0)
    half_idx = (window_size + 1) // 2
    zero_phase_window = np.concatenate([window[half_idx:], np.zeros(n_fft - window_size), window[:half_idx]])
    windowed = zero_phase_ir * zero_phase_window  # [n_bands, n_fft], zero-phase form
    negative_time_start = n_fft - half_idx + 2
    return np.concatenate([windowed[:, negative_time_start:], windowed[:, : half_idx + 1]], axis=-1)


def _design_product(magnitudes: jax.Array, matrix: np.ndarray) -> jax.Array:
    """``magnitudes @ matrix`` in full float32 precision (no TF32/bfloat16 passes on accelerators)."""
    return jnp.matmul(magnitudes, jnp.asarray(matrix, dtype=jnp.float32), precision=jax.lax.Precision.HIGHEST)


def frequency_impulse_response(
    magnitudes: Float[AnyArray, "n_frames n_bands"],
    *,
    window_size: int = 257,
) -> Float[Array, "n_frames ir_size"]:
    """Design one linear-phase FIR filter per frame from its magnitude response (frequency sampling + window).

    Maths, per frame: ``h0 = irfft(magnitudes)`` (real, zero phase: the magnitudes are the real spectrum), of
    ``n_fft = 2 * (n_bands - 1)`` taps with time 0 at index 0 and negative times wrapped to the end. It is
    multiplied by a Hann window of ``window_size`` taps centred on time 0, which trades the ideal response's ripple
    for a smooth one and bounds the filter's length, then rotated into causal form:

    - ``window_size`` 0 or >= ``n_fft``: the window has ``n_fft`` taps and the result is ``fftshift(w * h0)``
      (``n_fft`` taps, time 0 at index ``n_fft // 2``);
    - 3 <= ``window_size`` < ``n_fft``: the window is zero-padded to ``n_fft`` and the result keeps only the taps it
      covers: ``2 * ((window_size + 1) // 2) - 1`` taps (``window_size`` when odd), time 0 at index
      ``(window_size + 1) // 2 - 2``, exactly as magenta crops it.

    The window is ``tf.signal.hann_window(window_size)``'s, as in magenta: periodic for even sizes and symmetric
    (``0.5 - 0.5 cos(2 pi n / (N - 1))``) for odd ones. The whole design is linear in the magnitudes, so it is
    computed as one product with a precomputed ``(n_bands, ir_size)`` matrix.

    Parameters
    ----------
    magnitudes
        ``(n_frames, n_bands)`` linear, non-negative magnitude response of each frame's filter; band ``k`` is at
        ``k / (n_bands - 1) * sample_rate / 2`` Hz (first 0 Hz, last Nyquist). ``n_bands >= 2``.
    window_size
        Hann window length in taps. 0 means the full ``n_fft``; values above ``n_fft`` are clipped to it (so the
        default 257 with 65 bands gives 128-tap filters). Must be 0 or at least 3.

    Returns
    -------
    ``(n_frames, ir_size)`` causal impulse responses, ``ir_size`` as above.

    Raises
    ------
    ValueError
        If ``n_bands < 2`` or ``window_size < 0``.

    Source
    ------
    magenta/ddsp ``core.frequency_impulse_response`` and ``core.apply_window_to_impulse_response``; conformance to
    magenta 3.7.0 output is tested (even and odd window sizes).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ddsp_core.noise import frequency_impulse_response
    >>> frequency_impulse_response(jnp.ones((10, 65))).shape
    (10, 128)

    See Also
    --------
    frequency_filter : apply these filters frame by frame.
    """
    n_bands = magnitudes.shape[-1]
    _check_filter_sizes(n_bands, window_size)
    with jax.named_scope("frequency_impulse_response"):
        magnitudes = jnp.asarray(magnitudes, dtype=jnp.float32)
        return _design_product(magnitudes, _impulse_response_basis(n_bands, window_size))  # [n_frames, ir_size]


def frequency_filter(
    audio: Float[AnyArray, " n_samples"],
    magnitudes: Float[AnyArray, "n_frames n_bands"],
    *,
    window_size: int = 257,
) -> Float[Array, " n_samples"]:
    """Filter audio with a time-varying FIR filter given by per-frame magnitude responses.

    The audio is cut into ``n_frames`` equal, non-overlapping frames; frame ``i`` is convolved with the filter
    :func:`frequency_impulse_response` designs from ``magnitudes[i]`` and the results are overlap-added (the
    filter tails spill into the next frames). The output is advanced by ``(ir_size - 1) // 2 - 1`` samples to undo
    most of the filters' group delay, as magenta does: with the default full-size window (even ``ir_size``) a flat
    response therefore returns the input delayed by 2 samples; with a ``window_size`` smaller than the
    filter size the compensation is exact.

    Parameters
    ----------
    audio
        ``(n_samples,)`` input signal; ``n_samples`` must split into ``n_frames`` frames of
        ``ceil(n_samples / n_frames)`` samples (e.g. 64000 samples, 1000 frames of 64).
    magnitudes
        ``(n_frames, n_bands)`` linear magnitude response per frame, bands uniform from 0 Hz to Nyquist.
    window_size
        Hann window length of each filter, see :func:`frequency_impulse_response` (0: full size).

    Returns
    -------
    ``(n_samples,)`` filtered audio.

    Raises
    ------
    ValueError
        If the audio cannot be cut into ``n_frames`` frames, or the magnitudes are invalid (see
        :func:`frequency_impulse_response`).

    Source
    ------
    magenta/ddsp ``core.frequency_filter`` (``padding='same'``) = ``fft_convolve(audio,
    frequency_impulse_response(magnitudes, window_size))``; conformance to magenta 3.7.0 output is tested.
    Computed differently, with the same result up to float32 rounding (measured <= 4e-7 of the peak): the filters'
    spectra come from the magnitudes by one matrix product (no FFT of the designed filters), and the FFT length is
    the smallest ``2^a 3^b 5^c >= frame_size + ir_size - 1`` (192 for 64-sample frames and 128 taps, where
    magenta uses 256).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ddsp_core.noise import frequency_filter
    >>> audio = jnp.zeros(16000).at[8000].set(1.0)
    >>> lowpass = jnp.zeros((250, 65)).at[:, :16].set(1.0)  # pass 0..1.9 kHz at 16 kHz
    >>> frequency_filter(audio, lowpass).shape
    (16000,)

    See Also
    --------
    frequency_impulse_response : the filter design.
    ddsp_core.effects.fft_convolve : the frame-wise convolution (same framing, overlap-add and crop).
    filtered_noise : this filter applied to white noise.
    """
    check_shapes("frequency_filter", audio=(audio, "n_samples"), magnitudes=(magnitudes, "n_frames n_bands"))
    n_samples, n_frames = audio.shape[0], magnitudes.shape[0]
    frame_size = -(-n_samples // n_frames)
    if -(-n_samples // frame_size) != n_frames:
        raise ValueError(
            f"magnitudes has {n_frames} frames, which do not split {n_samples} audio samples into equal frames of "
            f"ceil({n_samples} / {n_frames}) = {frame_size}; use n_samples a multiple of the number of frames"
        )
    n_bands = magnitudes.shape[-1]
    _check_filter_sizes(n_bands, window_size)
    with jax.named_scope("frequency_filter"):
        basis = _impulse_response_basis(n_bands, window_size)  # [n_bands, ir_size]
        ir_size = basis.shape[-1]
        fft_size = _fast_fft_size(frame_size + ir_size - 1)
        basis_spectrum = np.fft.rfft(basis, n=fft_size)  # [n_bands, n_bins]
        # The filters' spectra straight from the magnitudes: one product, no FFT of the designed filters.
        spectrum_parts = _design_product(
            jnp.asarray(magnitudes, dtype=jnp.float32), np.concatenate([basis_spectrum.real, basis_spectrum.imag], -1)
        )  # [n_frames, 2 * n_bins]
        real, imag = jnp.split(spectrum_parts, 2, axis=-1)
        return _convolve_frames_by_spectrum(
            jnp.asarray(audio, dtype=jnp.float32),
            jax.lax.complex(real, imag),
            ir_size=ir_size,
            fft_size=fft_size,
            padding="same",
            delay_compensation=-1,
        )


def filtered_noise(
    magnitudes: Float[AnyArray, "n_frames n_bands"],
    *,
    n_samples: int,
    window_size: int = 257,
    key: Key,
) -> Float[Array, " n_samples"]:
    """DDSP's noise synthesiser: uniform white noise in ``[-1, 1)`` through a time-varying FIR filter.

    Maths: ``noise ~ U[-1, 1)`` (``n_samples`` i.i.d. samples, variance 1/3), then
    ``frequency_filter(noise, magnitudes, window_size)``. The noise is drawn frame by frame (:func:`frame_noise`:
    frame ``i`` from ``jax.random.fold_in(key, i)``), so a block-by-block render (:mod:`ddsp_core.stream`) draws
    exactly the same samples. The long-term power spectrum is ``|H(f)|^2 / 3`` with
    ``H`` the windowed filter's response (the magnitudes, smoothed by the window).

    Parameters
    ----------
    magnitudes
        ``(n_frames, n_bands)`` linear magnitudes per frame, bands uniform 0 Hz..Nyquist, already scaled (e.g. by
        :func:`filtered_noise_controls`).
    n_samples
        Output length; must split into ``n_frames`` frames of ``ceil(n_samples / n_frames)`` samples.
    window_size
        Hann window length of each filter, see :func:`frequency_impulse_response` (0: full size; magenta's
        solo-instrument configuration uses 0, its ``FilteredNoise`` default is 257).
    key
        PRNG key for the noise; the same key gives the same noise. Frame ``i`` uses ``fold_in(key, i)``.

    Returns
    -------
    ``(n_samples,)`` audio.

    Raises
    ------
    ValueError
        If ``n_samples`` is not positive or does not split into ``n_frames`` frames.

    Source
    ------
    magenta/ddsp ``synths.FilteredNoise.get_signal`` (noise from ``tf.random.uniform(minval=-1, maxval=1)``).

    Examples
    --------
    >>> import jax
    >>> from ddsp_core.noise import filtered_noise, filtered_noise_controls
    >>> raw = jax.numpy.zeros((1000, 65))  # network output
    >>> audio = filtered_noise(filtered_noise_controls(raw), n_samples=64000, key=jax.random.key(0))
    >>> audio.shape
    (64000,)

    See Also
    --------
    filtered_noise_controls : network outputs to magnitudes.
    frequency_filter : the filter used here.
    """
    check_shapes("filtered_noise", magnitudes=(magnitudes, "n_frames n_bands"))
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    with jax.named_scope("filtered_noise"):
        n_frames = magnitudes.shape[0]
        frame_size = -(-n_samples // n_frames)
        noise = frame_noise(key, jnp.arange(n_frames), frame_size=frame_size).reshape(-1)[:n_samples]
        return frequency_filter(noise, magnitudes, window_size=window_size)


def frame_noise(
    key: Key, frame_indices: Int[AnyArray, " n_frames"], *, frame_size: int
) -> Float[Array, "n_frames frame_size"]:
    """Uniform white noise in ``[-1, 1)`` per frame: row ``j`` is drawn from ``fold_in(key, frame_indices[j])``.

    Keying each frame by its index makes the noise of a frame independent of how the signal is cut into blocks:
    :func:`filtered_noise` (the whole clip) and :func:`ddsp_core.stream.filtered_noise_block` (a few frames at a
    time) draw the same samples.

    Parameters
    ----------
    key
        PRNG key of the whole signal.
    frame_indices
        ``(n_frames,)`` int, the frames' positions in the whole signal.
    frame_size
        Samples per frame.

    Returns
    -------
    ``(n_frames, frame_size)`` noise.
    """

    def draw(index: Int[Array, ""]) -> Float[Array, " frame_size"]:
        return jax.random.uniform(jax.random.fold_in(key, index), (frame_size,), minval=-1.0, maxval=1.0)

    return jax.vmap(draw)(jnp.asarray(frame_indices))


def filtered_noise_controls(
    raw: Float[AnyArray, "n_frames n_bands"],
    *,
    initial_bias: float = -5.0,
) -> Float[Array, "n_frames n_bands"]:
    """Map network outputs to filtered-noise magnitudes: ``exp_sigmoid(raw + initial_bias)``.

    The bias of -5 makes a zero network output give magnitude ``2 * sigmoid(-5) ** ln(10) + 1e-7 ~ 2.0e-5``, so
    the noise starts almost silent (about -94 dB) and the model brings it in where it helps; the range is
    ``(1e-7, 2)``.

    Parameters
    ----------
    raw
        ``(n_frames, n_bands)`` unbounded network outputs.
    initial_bias
        Added before ``exp_sigmoid`` (magenta ``FilteredNoise(initial_bias=-5.0)``).

    Returns
    -------
    ``(n_frames, n_bands)`` linear magnitudes for :func:`filtered_noise`.

    Source
    ------
    magenta/ddsp ``synths.FilteredNoise.get_controls`` with ``scale_fn=exp_sigmoid``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ddsp_core.noise import filtered_noise_controls
    >>> round(float(filtered_noise_controls(jnp.full((1, 1), 5.0))[0, 0]), 4)  # exp_sigmoid(0) = 2 * 0.5 ** ln(10)
    0.4054

    See Also
    --------
    filtered_noise : the synthesiser these magnitudes drive.
    ddsp_core.core.exp_sigmoid : the scaling.
    """
    with jax.named_scope("filtered_noise_controls"):
        return exp_sigmoid(jnp.asarray(raw, dtype=jnp.float32) + initial_bias)
