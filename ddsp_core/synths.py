"""Oscillator synthesisers: harmonic (additive), free sinusoidal bank, wavetable.

Split as magenta/ddsp splits its processors:

* **controls** (``get_controls``): raw network outputs -> physical controls. :func:`harmonic_controls` applies
  :func:`~ddsp_core.core.exp_sigmoid` and :func:`~ddsp_core.core.normalize_harmonics`; controls that are already
  scaled only need :func:`~ddsp_core.core.normalize_harmonics` (or nothing).
* **signal** (``get_signal``): controls -> audio. :func:`harmonic_synthesis`, :func:`sinusoidal_synthesis`,
  :func:`wavetable_synthesis` take frame-rate controls (one example, no batch axis; use :func:`jax.vmap`) and
  return ``(n_samples,)`` audio.

Phase is accumulated per hop and wrapped between hops with an error-free split of each frequency into a coarse
part (summed exactly in float32) and a tiny remainder, so it stays accurate to ~1e-7 cycles however long the audio
is: a 440 Hz tone is still exactly in phase after a minute. magenta's default float32 ``cumsum`` over the whole
signal is already flat by a fraction of a cent after 1 s, and even its chunked ``angular_cumsum`` loses up to 10%
of full scale on high harmonics within 1 s (measured on the conformance fixture).

The harmonic bank never materialises the ``(n_samples, n_harmonics)`` envelopes: it computes the fundamental's
phase once, generates ``sin(k phi)`` for ``k = 1..n_harmonics`` by complex rotation (``e^{ik phi} = e^{i(k-1) phi}
e^{i phi}``) inside a ``lax.scan`` over harmonics, and contracts each harmonic with its two neighbouring frame
amplitudes as it goes (the Hann/linear upsampling is a per-hop crossfade between consecutive frames). Its gradient
is a hand-written scan of the same shape (``jax.custom_vjp``).
"""

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from ddsp_core._shapes import check_shapes
from ddsp_core._typing import AnyArray
from ddsp_core.core import exp_sigmoid, hann_window, normalize_harmonics, remove_above_nyquist, upsample_linear

__all__ = [
    "as_frequency_hz",
    "harmonic_controls",
    "harmonic_synthesis",
    "sinusoidal_synthesis",
    "wavetable_synthesis",
]

AmpResample = Literal["window", "linear"]

_TWO_PI = 2.0 * math.pi
_UNROLL = 4  # harmonics per scan iteration: lets XLA fuse several rotation steps into one loop body


# Controls --------------------------------------------------------------------------------------------------------
def harmonic_controls(
    amplitude: Float[AnyArray, "n_frames"],
    harmonic_distribution: Float[AnyArray, "n_frames n_harmonics"],
    f0_hz: Float[AnyArray, "n_frames"],
    *,
    sample_rate: int,
) -> tuple[Float[Array, "n_frames"], Float[Array, "n_frames n_harmonics"]]:
    """Turn raw decoder outputs into harmonic-synth controls (magenta ``Harmonic.get_controls``).

    .. math::

        A = \\text{exp\\_sigmoid}(\\hat A), \\qquad
        d_k = \\frac{\\text{exp\\_sigmoid}(\\hat d_k)\\,[k f_0 < sr/2]}{\\sum_j \\text{exp\\_sigmoid}(\\hat d_j)\\,
        [j f_0 < sr/2]}

    For controls that are already positive and scaled, skip this and call
    :func:`~ddsp_core.core.normalize_harmonics` alone (or nothing, if the distribution is already normalised).

    Parameters
    ----------
    amplitude : array, shape (n_frames,)
        Raw network output for the overall amplitude.
    harmonic_distribution : array, shape (n_frames, n_harmonics)
        Raw network outputs for the relative harmonic amplitudes.
    f0_hz : array, shape (n_frames,)
        Fundamental frequency per frame, Hz (decides which harmonics are above Nyquist).
    sample_rate : int
        Audio sample rate, Hz.

    Returns
    -------
    amplitude : Array, shape (n_frames,)
        Overall linear amplitude, in ``[1e-7, 2 + 1e-7]``.
    harmonic_distribution : Array, shape (n_frames, n_harmonics)
        Non-negative, zero at/above Nyquist, each frame summing to 1.

    Notes
    -----
    Source: magenta ddsp ``synths.Harmonic(scale_fn=exp_sigmoid, normalize_below_nyquist=True).get_controls``.

    Examples
    --------
    >>> amp, dist = harmonic_controls(jnp.zeros(4), jnp.zeros((4, 60)), jnp.full(4, 200.0), sample_rate=16000)
    >>> audio = harmonic_synthesis(amp, dist, jnp.full(4, 200.0), n_samples=256, sample_rate=16000)

    See also
    --------
    harmonic_synthesis : the signal step; ddsp_core.core.normalize_harmonics : the normalisation alone.
    """
    check_shapes("harmonic_controls", amplitude=(amplitude, "n_frames"),
                 harmonic_distribution=(harmonic_distribution, "n_frames n_harmonics"), f0_hz=(f0_hz, "n_frames"))
    amplitude = exp_sigmoid(amplitude)
    harmonic_distribution = exp_sigmoid(harmonic_distribution)
    return amplitude, normalize_harmonics(harmonic_distribution, as_frequency_hz(f0_hz), sample_rate)


# Shared helpers ----------------------------------------------------------------------------------------------------
def as_frequency_hz(frequency_hz: Float[AnyArray, "*shape"]) -> Float[Array, "*shape"]:
    """Frequencies as the synths use them: negative and NaN values become 0 Hz (an unvoiced frame).

    A negative f0 would otherwise pass the Nyquist mask (``k f0 < sr / 2``) and alias, and one NaN frame would turn
    the running phase, and so the rest of the clip, into NaN. At 0 Hz an oscillator holds its phase. The gradient
    is 1 where the input is >= 0 (f0 = 0 still gets a gradient toward pitch) and 0 elsewhere.

    Examples
    --------
    >>> as_frequency_hz(jnp.array([440.0, -5.0, jnp.nan]))
    Array([440.,   0.,   0.], dtype=float32)
    """
    frequency_hz = jnp.asarray(frequency_hz, dtype=jnp.float32)
    return jnp.where(frequency_hz >= 0.0, frequency_hz, 0.0)


def _check_sizes(n_frames: int, n_samples: int, sample_rate: int) -> int:
    """Validate the sizes every synth needs and return the hop size (samples per frame)."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of samples per second, got {sample_rate}")
    if n_frames < 1:
        raise ValueError(f"controls must have at least one frame, got n_frames={n_frames}")
    if n_samples < 1 or n_samples % n_frames != 0:
        raise ValueError(
            f"n_samples must be a positive multiple of the number of frames (hop = n_samples / n_frames), "
            f"got n_samples={n_samples}, n_frames={n_frames}"
        )
    return n_samples // n_frames


def _crossfade_weights(hop_size: int, amp_resample: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-offset weights ``(w_start, w_end)``, each ``(hop_size,)``, of frame ``i`` and ``i + 1`` within hop ``i``.

    ``"window"``: the falling and rising halves of a periodic Hann window of length ``2 * hop_size``
    (``core.upsample_with_windows``). ``"linear"``: ``1 - j / hop`` and ``j / hop`` (``core.upsample_linear``).
    """
    if amp_resample == "window":
        window = hann_window(2 * hop_size)
        return window[hop_size:].astype(np.float32), window[:hop_size].astype(np.float32)
    if amp_resample == "linear":
        rise = (np.arange(hop_size, dtype=np.float32) / np.float32(hop_size)).astype(np.float32)
        return (1.0 - rise).astype(np.float32), rise
    raise ValueError(f"amp_resample must be 'window' or 'linear', got {amp_resample!r}")


def _next_frame(frames: Array) -> Array:
    """Frames shifted one step earlier, the last frame held: ``x[i + 1]`` with ``x[n] := x[n - 1]``."""
    return jnp.concatenate([frames[1:], frames[-1:]], axis=0)


def _split(values: Array, step: float) -> tuple[Array, Array]:
    """Split ``values`` into ``hi`` on the grid ``step`` (no gradient) and the exact remainder ``lo``."""
    hi = lax.stop_gradient(jnp.round(values / step) * step)
    return hi, values - hi


def _cycles_from(
    frequency_hz: Array, start: tuple[Array, Array], sample_rate: int, exclusive: bool
) -> tuple[Array, tuple[Array, Array]]:
    """Phase in cycles from per-sample frequencies, continuing from a phase ``start``; also the phase at the end.

    ``frequency_hz`` is ``(n_frames, hop_size, ...)``; ``start`` and the returned end phase are ``(hi, lo)`` pairs
    of shape ``(...)`` in Hz x samples (one cycle = ``sample_rate``), ``hi`` on the grid of :func:`_split`. See
    :func:`_accumulate_cycles` for the method; from ``start = (0, 0)`` the result is bit-identical to it, and a
    signal cut into blocks, each continuing from the previous block's end phase, gets the same phase (the exact
    ``hi`` parts are the same; only the order of the tiny ``lo`` sums differs).
    """
    hop_size = frequency_hz.shape[1]
    # Partial sums of |hi| stay below 2**23 grid steps for frequencies up to 2 * sample_rate.
    step = 2.0 ** (math.ceil(math.log2(hop_size * 2 * sample_rate)) - 23)
    period = float(sample_rate)
    hi, lo = _split(frequency_hz, step)
    within_hi = jnp.cumsum(hi, axis=1)  # exact: [n_frames, hop_size, ...]
    within_lo = jnp.cumsum(lo, axis=1)

    def combine(a: tuple[Array, Array], b: tuple[Array, Array]) -> tuple[Array, Array]:
        carry_hi, carry_lo = _split(a[1] + b[1], step)
        return jnp.mod(a[0] + b[0] + carry_hi, period), carry_lo

    total_hi, total_lo = _split(within_lo[:, -1], step)
    total_hi = jnp.mod(within_hi[:, -1] + total_hi, period)  # [n_frames, ...]
    end_hi, end_lo = combine(start, lax.associative_scan(combine, (total_hi, total_lo), axis=0))
    start_hi = jnp.concatenate([jnp.broadcast_to(start[0], end_hi[:1].shape), end_hi[:-1]], axis=0)
    start_lo = jnp.concatenate([jnp.broadcast_to(start[1], end_lo[:1].shape), end_lo[:-1]], axis=0)
    if exclusive:
        within_hi = within_hi - hi
        within_lo = within_lo - lo
    coarse = jnp.mod(start_hi[:, None] + within_hi, period)  # exact
    cycles = jnp.mod((coarse + (start_lo[:, None] + within_lo)) / period, 1.0)
    return cycles, (end_hi[-1], end_lo[-1])


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _accumulate_cycles(frequency_hz: Array, sample_rate: int, exclusive: bool) -> Array:
    """Oscillator phase in cycles, wrapped to ``[0, 1)``, from per-sample frequencies; exact over any length.

    ``frequency_hz`` is ``(n_frames, hop_size, ...)``. The phase is the running sum of ``f / sample_rate``
    (``exclusive=False``: ``sum(f[:t + 1])``, as magenta ``oscillator_bank``; ``True``: ``sum(f[:t])``, as
    magenta ``wavetable_synthesis``).

    Float32 cannot hold a running phase of thousands of radians to 1e-7, and a plain ``cumsum`` drifts. Here each
    frequency is split into a coarse part ``hi`` on a power-of-two grid (in Hz) and a tiny remainder ``lo``. Sums
    of ``hi`` within a hop are exact in float32, and so is wrapping them modulo ``sample_rate`` (one cycle, in
    Hz x samples); the frame start phases are an ``associative_scan`` over ``(hi, lo)`` pairs that re-splits
    ``lo`` at every step, so ``hi`` stays exact and ``lo`` stays smaller than the grid. The only rounding left is
    in the small ``lo`` sums and in the final division: ~1e-7 cycles, not growing with length. The derivative is
    the plain running sum (``custom_jvp``), so reverse mode is one reversed ``cumsum``.
    """
    zero = jnp.zeros(frequency_hz.shape[2:], frequency_hz.dtype)
    return _cycles_from(frequency_hz, (zero, zero), sample_rate, exclusive)[0]


@_accumulate_cycles.defjvp
def _accumulate_cycles_jvp(sample_rate, exclusive, primals, tangents):
    (frequency_hz,), (frequency_dot,) = primals, tangents
    cycles = _accumulate_cycles(frequency_hz, sample_rate, exclusive)
    flat = frequency_dot.reshape((-1,) + frequency_dot.shape[2:])  # [n_samples, ...]
    running = jnp.cumsum(flat, axis=0)
    if exclusive:
        running = running - flat
    return cycles, running.reshape(frequency_dot.shape) / sample_rate


def _frame_f0_envelope(f0_hz: Array, n_samples: int, hop_size: int) -> Array:
    """f0 upsampled linearly to audio rate (magenta ``resample(f0, n_samples)``), as ``(n_frames, hop_size)``."""
    return upsample_linear(f0_hz[:, None], n_samples)[:, 0].reshape(-1, hop_size)


# Harmonic bank -----------------------------------------------------------------------------------------------------
def _harmonic_bank_forward(nyquist_hz, amp_resample, phase, f0_envelope_hz, amps_start, amps_end):
    """Sum over harmonics of ``A_k(t) [k f0(t) < nyquist] sin(k phase(t))``, per hop. Shapes in ``_harmonic_bank``."""
    w_start, w_end = _crossfade_weights(phase.shape[1], amp_resample)
    cos_1, sin_1 = jnp.cos(phase), jnp.sin(phase)  # [n_frames, hop_size]

    def step(carry, xs):
        cos_k, sin_k, acc_start, acc_end = carry
        k, a_start, a_end = xs  # scalar, [n_frames], [n_frames]
        sin_masked = jnp.where(f0_envelope_hz * k < nyquist_hz, sin_k, 0.0)
        acc_start = acc_start + a_start[:, None] * sin_masked
        acc_end = acc_end + a_end[:, None] * sin_masked
        cos_k, sin_k = cos_k * cos_1 - sin_k * sin_1, sin_k * cos_1 + cos_k * sin_1
        return (cos_k, sin_k, acc_start, acc_end), None

    n_harmonics = amps_start.shape[1]
    numbers = jnp.arange(1, n_harmonics + 1, dtype=jnp.float32)
    zeros = jnp.zeros_like(phase)
    (_, _, acc_start, acc_end), _ = lax.scan(
        step, (cos_1, sin_1, zeros, zeros), (numbers, amps_start.T, amps_end.T), unroll=_UNROLL
    )
    return acc_start * w_start + acc_end * w_end  # [n_frames, hop_size]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _harmonic_bank(nyquist_hz, amp_resample, phase, f0_envelope_hz, amps_start, amps_end):
    """Harmonic oscillator bank over hops.

    ``phase``, ``f0_envelope_hz``: ``(n_frames, hop_size)`` fundamental phase (rad, wrapped) and frequency (Hz);
    ``amps_start``, ``amps_end``: ``(n_frames, n_harmonics)`` amplitudes of frame ``i`` and ``i + 1``.
    Returns ``(n_frames, hop_size)`` audio. The Nyquist mask is a step, so ``f0_envelope_hz`` gets no gradient.
    """
    return _harmonic_bank_forward(nyquist_hz, amp_resample, phase, f0_envelope_hz, amps_start, amps_end)


def _harmonic_bank_fwd(nyquist_hz, amp_resample, phase, f0_envelope_hz, amps_start, amps_end):
    out = _harmonic_bank_forward(nyquist_hz, amp_resample, phase, f0_envelope_hz, amps_start, amps_end)
    return out, (phase, f0_envelope_hz, amps_start, amps_end)


def _harmonic_bank_bwd(nyquist_hz, amp_resample, residuals, grad_out):
    # d out / d a_k[i]   = sum_j w_start[j] m_k sin(k phi)  (same with w_end for the next frame's amplitude)
    # d out / d phi[i,j] = sum_k k m_k cos(k phi) (a_k[i] w_start[j] + a_k[i+1] w_end[j])
    phase, f0_envelope_hz, amps_start, amps_end = residuals
    w_start, w_end = _crossfade_weights(phase.shape[1], amp_resample)
    grad_start = grad_out * w_start  # [n_frames, hop_size]
    grad_end = grad_out * w_end
    cos_1, sin_1 = jnp.cos(phase), jnp.sin(phase)

    def step(carry, xs):
        cos_k, sin_k, grad_phase = carry
        k, a_start, a_end = xs
        mask = f0_envelope_hz * k < nyquist_hz
        sin_masked = jnp.where(mask, sin_k, 0.0)
        cos_masked = jnp.where(mask, cos_k, 0.0)
        grad_a_start = jnp.sum(grad_start * sin_masked, axis=1)  # [n_frames]
        grad_a_end = jnp.sum(grad_end * sin_masked, axis=1)
        grad_phase = grad_phase + k * cos_masked * (a_start[:, None] * grad_start + a_end[:, None] * grad_end)
        cos_k, sin_k = cos_k * cos_1 - sin_k * sin_1, sin_k * cos_1 + cos_k * sin_1
        return (cos_k, sin_k, grad_phase), (grad_a_start, grad_a_end)

    n_harmonics = amps_start.shape[1]
    numbers = jnp.arange(1, n_harmonics + 1, dtype=jnp.float32)
    (_, _, grad_phase), (grad_starts, grad_ends) = lax.scan(
        step, (cos_1, sin_1, jnp.zeros_like(phase)), (numbers, amps_start.T, amps_end.T), unroll=_UNROLL
    )
    return grad_phase, jnp.zeros_like(f0_envelope_hz), grad_starts.T, grad_ends.T


_harmonic_bank.defvjp(_harmonic_bank_fwd, _harmonic_bank_bwd)


def harmonic_synthesis(
    amplitude: Float[AnyArray, "n_frames"],
    harmonic_distribution: Float[AnyArray, "n_frames n_harmonics"],
    f0_hz: Float[AnyArray, "n_frames"],
    *,
    n_samples: int,
    sample_rate: int,
    amp_resample: AmpResample = "window",
) -> Float[Array, "n_samples"]:
    """Additive synthesis: a bank of harmonic sinusoids at ``k * f0``, driven by frame-rate controls.

    .. math::

        y[t] = \\sum_{k=1}^{K} A_k(t)\\, [k f_0(t) < sr/2]\\, \\sin(k\\, \\phi(t)),\\qquad
        \\phi(t) = \\sum_{\\tau \\le t} 2\\pi f_0(\\tau) / sr

    with :math:`A_k = \\text{amplitude} \\cdot \\text{harmonic\\_distribution}_k` upsampled from frames to samples
    by overlapping Hann windows (``amp_resample="window"``, the default) or linearly (``"linear"``), and
    :math:`f_0(t)` upsampled linearly (frame ``i`` at sample ``i * hop``, the last frame held). The distribution is
    used as given (no normalisation here); harmonics at or above Nyquist are silenced sample by sample.

    The phase is accumulated per hop and wrapped between hops, so it stays accurate in float32 for any length:
    the output equals a float64 evaluation of the formula above to ~1e-5 of full scale. magenta's
    ``core.harmonic_synthesis`` computes the same formula with float32 phase sums, and differs from this by its
    own rounding: a drift of -0.2 to -0.4 cents after 1 s with its default ``cumsum``, and errors growing with
    harmonic number and time with ``use_angular_cumsum=True`` (up to 10% of full scale after 1 s for 18
    harmonics of 440 Hz); within the first frames the two agree to 2e-4.

    Parameters
    ----------
    amplitude : array, shape (n_frames,)
        Overall linear amplitude per frame (e.g. from :func:`harmonic_controls`).
    harmonic_distribution : array, shape (n_frames, n_harmonics)
        Relative amplitude of each harmonic per frame (normally normalised to sum to 1).
    f0_hz : array, shape (n_frames,)
        Fundamental frequency per frame, Hz. Negative and NaN values are taken as 0 Hz (:func:`as_frequency_hz`).
    n_samples : int
        Output length; a positive multiple of ``n_frames`` (hop = n_samples / n_frames, e.g. 64000 / 1000).
    sample_rate : int
        Audio sample rate, Hz.
    amp_resample : {"window", "linear"}
        How the amplitudes are upsampled (magenta ``amp_resample_method``).

    Returns
    -------
    Array, shape (n_samples,)
        Audio.

    Raises
    ------
    ValueError
        If ``n_samples`` is not a positive multiple of ``n_frames``, ``sample_rate <= 0``, ``amp_resample`` is
        unknown, or an argument's shape breaks the contract above (the message names it).

    Notes
    -----
    Source: Engel et al. 2020, eq. 1-3; magenta ddsp ``core.harmonic_synthesis`` / ``synths.Harmonic.get_signal``.
    The sum over harmonics runs as a ``lax.scan`` generating ``sin(k phi)`` by complex rotation, never building
    ``(n_samples, n_harmonics)`` envelopes; its gradient is a matching hand-written scan.

    Examples
    --------
    >>> f0 = jnp.full(250, 440.0)
    >>> audio = harmonic_synthesis(jnp.full(250, 0.5), jnp.ones((250, 1)), f0, n_samples=16000, sample_rate=16000)
    >>> audio.shape
    (16000,)
    >>> batched = jax.vmap(lambda a, d, f: harmonic_synthesis(a, d, f, n_samples=16000, sample_rate=16000))

    See also
    --------
    harmonic_controls : raw network outputs -> these controls; sinusoidal_synthesis : free frequencies.
    """
    check_shapes("harmonic_synthesis", amplitude=(amplitude, "n_frames"),
                 harmonic_distribution=(harmonic_distribution, "n_frames n_harmonics"), f0_hz=(f0_hz, "n_frames"))
    hop_size = _check_sizes(harmonic_distribution.shape[0], n_samples, sample_rate)
    _crossfade_weights(hop_size, amp_resample)  # validates amp_resample
    return _harmonic_signal(
        amplitude, harmonic_distribution, as_frequency_hz(f0_hz), n_samples=n_samples, sample_rate=sample_rate, amp_resample=amp_resample
    )


@functools.partial(jax.jit, static_argnames=("n_samples", "sample_rate", "amp_resample"))
def _harmonic_signal(amplitude, harmonic_distribution, f0_hz, *, n_samples, sample_rate, amp_resample):
    """Body of :func:`harmonic_synthesis` (jitted so that eager calls compile once per shape)."""
    with jax.named_scope("harmonic_synthesis"):
        hop_size = n_samples // harmonic_distribution.shape[0]
        f0_envelope_hz = _frame_f0_envelope(jnp.asarray(f0_hz, jnp.float32), n_samples, hop_size)  # [n_frames, hop]
        phase = _TWO_PI * _accumulate_cycles(f0_envelope_hz, sample_rate, False)
        # [n_frames, n_harmonics]
        harmonic_amplitudes = jnp.asarray(amplitude, jnp.float32)[:, None] * jnp.asarray(harmonic_distribution, jnp.float32)
        audio = _harmonic_bank(
            sample_rate / 2.0,
            amp_resample,
            phase,
            f0_envelope_hz,
            harmonic_amplitudes,
            _next_frame(harmonic_amplitudes),
        )
        return audio.reshape(n_samples)


# Sinusoidal bank ---------------------------------------------------------------------------------------------------
def sinusoidal_synthesis(
    amplitudes: Float[AnyArray, "n_frames n_sinusoids"],
    frequencies_hz: Float[AnyArray, "n_frames n_sinusoids"],
    *,
    n_samples: int,
    sample_rate: int,
    amp_resample: AmpResample = "window",
) -> Float[Array, "n_samples"]:
    """A bank of free sinusoidal oscillators, each with its own frame-rate frequency and amplitude.

    .. math:: y[t] = \\sum_s A_s(t)\\, [f_s(t) < sr/2]\\, \\sin\\Big(\\sum_{\\tau \\le t} 2\\pi f_s(\\tau)/sr\\Big)

    Frequencies are upsampled linearly, amplitudes by Hann windows (or linearly), as in
    :func:`harmonic_synthesis`; each oscillator's phase is accumulated per hop and wrapped, so it stays accurate
    for long audio. Oscillators at or above Nyquist are silent.

    Parameters
    ----------
    amplitudes : array, shape (n_frames, n_sinusoids)
        Linear amplitude of each oscillator per frame.
    frequencies_hz : array, shape (n_frames, n_sinusoids)
        Frequency of each oscillator per frame, Hz. Negative and NaN values are taken as 0 Hz.
    n_samples : int
        Output length; a positive multiple of ``n_frames``.
    sample_rate : int
        Audio sample rate, Hz.
    amp_resample : {"window", "linear"}
        How amplitudes are upsampled.

    Returns
    -------
    Array, shape (n_samples,)
        Audio.

    Notes
    -----
    Source: magenta ddsp ``synths.Sinusoidal.get_signal`` (``core.oscillator_bank`` on resampled envelopes).

    Examples
    --------
    >>> freqs = jnp.tile(jnp.array([[220.0, 330.0]]), (10, 1))
    >>> sinusoidal_synthesis(jnp.full((10, 2), 0.3), freqs, n_samples=640, sample_rate=16000).shape
    (640,)

    See also
    --------
    harmonic_synthesis : oscillators locked to integer multiples of f0.
    """
    check_shapes("sinusoidal_synthesis", amplitudes=(amplitudes, "n_frames n_sinusoids"),
                 frequencies_hz=(frequencies_hz, "n_frames n_sinusoids"))
    hop_size = _check_sizes(amplitudes.shape[0], n_samples, sample_rate)
    _crossfade_weights(hop_size, amp_resample)  # validates amp_resample
    return _sinusoidal_signal(
        amplitudes, as_frequency_hz(frequencies_hz), n_samples=n_samples, sample_rate=sample_rate, amp_resample=amp_resample
    )


@functools.partial(jax.jit, static_argnames=("n_samples", "sample_rate", "amp_resample"))
def _sinusoidal_signal(amplitudes, frequencies_hz, *, n_samples, sample_rate, amp_resample):
    """Body of :func:`sinusoidal_synthesis`."""
    n_frames, n_sinusoids = amplitudes.shape
    hop_size = n_samples // n_frames
    w_start, w_end = _crossfade_weights(hop_size, amp_resample)
    with jax.named_scope("sinusoidal_synthesis"):
        frequencies_hz = jnp.asarray(frequencies_hz, dtype=jnp.float32)
        amplitudes = jnp.asarray(amplitudes, dtype=jnp.float32)
        # [n_frames, hop_size, n_sinusoids]
        frequency_envelopes_hz = upsample_linear(frequencies_hz, n_samples).reshape(n_frames, hop_size, n_sinusoids)
        phases = _TWO_PI * _accumulate_cycles(frequency_envelopes_hz, sample_rate, False)
        amplitude_envelopes = (
            amplitudes[:, None, :] * w_start[None, :, None] + _next_frame(amplitudes)[:, None, :] * w_end[None, :, None]
        )
        amplitude_envelopes = remove_above_nyquist(frequency_envelopes_hz, amplitude_envelopes, sample_rate)
        return jnp.sum(amplitude_envelopes * jnp.sin(phases), axis=-1).reshape(n_samples)


# Wavetable ---------------------------------------------------------------------------------------------------------
def wavetable_synthesis(
    amplitude: Float[AnyArray, "n_frames"],
    wavetables: Float[AnyArray, "n_frames n_wavetable"],
    f0_hz: Float[AnyArray, "n_frames"],
    *,
    n_samples: int,
    sample_rate: int,
) -> Float[Array, "n_samples"]:
    """Monophonic wavetable synthesis: read a per-frame single-cycle waveform at the rate ``f0``.

    .. math:: y[t] = A(t)\\, W_t\\big(N \\cdot p(t)\\big),\\qquad p(t) = \\Big(\\sum_{\\tau < t} f_0(\\tau)/sr\\Big)
              \\bmod 1

    where :math:`W_t` is the wavetable upsampled linearly in time (frame ``i`` at sample ``i * hop``) and read
    with linear interpolation between its ``N`` points, wrapping from the last point back to the first;
    :math:`A(t)` is upsampled with Hann windows and :math:`f_0(t)` linearly. The phase (in cycles, starting at 0)
    is accumulated per hop and wrapped, accurate for long audio.

    Parameters
    ----------
    amplitude : array, shape (n_frames,)
        Linear amplitude per frame.
    wavetables : array, shape (n_frames, n_wavetable)
        One period of the waveform per frame, sampled at ``n_wavetable`` equally spaced phases in ``[0, 1)``.
    f0_hz : array, shape (n_frames,)
        Playback frequency per frame, Hz. Negative and NaN values are taken as 0 Hz.
    n_samples : int
        Output length; a positive multiple of ``n_frames``.
    sample_rate : int
        Audio sample rate, Hz.

    Returns
    -------
    Array, shape (n_samples,)
        Audio.

    Notes
    -----
    Source: magenta ddsp ``synths.Wavetable.get_signal`` (``core.wavetable_synthesis`` + ``core.linear_lookup``;
    this reads the two neighbouring table points directly instead of weighting all ``N``). Unlike the harmonic
    synth, a wavetable is not band-limited: partials above Nyquist alias.

    Examples
    --------
    >>> table = jnp.sin(2 * jnp.pi * jnp.arange(64) / 64)
    >>> wavetable_synthesis(jnp.ones(10), jnp.tile(table, (10, 1)), jnp.full(10, 250.0),
    ...                     n_samples=640, sample_rate=16000).shape
    (640,)

    See also
    --------
    harmonic_synthesis : the band-limited alternative.
    """
    check_shapes("wavetable_synthesis", amplitude=(amplitude, "n_frames"),
                 wavetables=(wavetables, "n_frames n_wavetable"), f0_hz=(f0_hz, "n_frames"))
    _check_sizes(wavetables.shape[0], n_samples, sample_rate)
    return _wavetable_signal(amplitude, wavetables, as_frequency_hz(f0_hz), n_samples=n_samples,
                             sample_rate=sample_rate)


@functools.partial(jax.jit, static_argnames=("n_samples", "sample_rate"))
def _wavetable_signal(amplitude, wavetables, f0_hz, *, n_samples, sample_rate):
    """Body of :func:`wavetable_synthesis`."""
    n_frames, n_wavetable = wavetables.shape
    hop_size = n_samples // n_frames
    w_start, w_end = _crossfade_weights(hop_size, "window")
    # Time interpolation weight of the next frame, as core.upsample_linear computes it.
    time_lerp = (np.arange(hop_size, dtype=np.float32) * np.float32(n_frames / n_samples)).astype(np.float32)
    with jax.named_scope("wavetable_synthesis"):
        wavetables = jnp.asarray(wavetables, dtype=jnp.float32)
        amplitude = jnp.asarray(amplitude, dtype=jnp.float32)
        f0_envelope_hz = _frame_f0_envelope(jnp.asarray(f0_hz, dtype=jnp.float32), n_samples, hop_size)
        cycles = _accumulate_cycles(f0_envelope_hz, sample_rate, True)  # [n_frames, hop]
        position = cycles * n_wavetable
        lower = jnp.clip(jnp.floor(position), 0, n_wavetable - 1)
        frac = position - lower
        lower_index = lower.astype(jnp.int32)
        upper_index = jnp.where(lower_index + 1 == n_wavetable, 0, lower_index + 1)

        def read(tables: Array) -> Array:  # [n_frames, n_wavetable] -> [n_frames, hop_size]
            below = jnp.take_along_axis(tables, lower_index, axis=1)
            above = jnp.take_along_axis(tables, upper_index, axis=1)
            return below + (above - below) * frac

        this_frame = read(wavetables)
        next_frame = read(_next_frame(wavetables))
        waveform = this_frame + (next_frame - this_frame) * time_lerp[None, :]
        amplitude_envelope = amplitude[:, None] * w_start + _next_frame(amplitude)[:, None] * w_end
        return (amplitude_envelope * waveform).reshape(n_samples)
