"""Small numerical helpers shared by the DSP modules.

Scaling of network outputs (:func:`exp_sigmoid`), unit conversions (MIDI <-> Hz, linear <-> dB), safe logarithms,
Nyquist masking and normalisation of harmonic distributions, and frame-rate -> audio-rate upsampling.

Every function works on ONE example (no batch axis); batch with :func:`jax.vmap`. Each one matches the function of
the same purpose in magenta/ddsp 3.7.0 (``ddsp/core.py``), including its floors and the order of its operations, so
that controls, loudness and envelopes computed here equal the reference's to float32 rounding.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ddsp_core._typing import AnyArray

__all__ = [
    "amplitude_to_db",
    "db_to_amplitude",
    "db_to_power",
    "exp_sigmoid",
    "hann_window",
    "harmonic_frequencies",
    "hz_to_midi",
    "midi_to_hz",
    "normalize_harmonics",
    "power_to_db",
    "remove_above_nyquist",
    "safe_divide",
    "safe_log",
    "upsample_linear",
    "upsample_with_windows",
]


# Scaling ---------------------------------------------------------------------------------------------------------
def exp_sigmoid(
    x: Float[AnyArray, "*shape"],
    exponent: float = 10.0,
    max_value: float = 2.0,
    threshold: float = 1e-7,
) -> Float[Array, "*shape"]:
    """Exponentiated sigmoid: squash raw network outputs into ``[threshold, max_value + threshold]``.

    .. math:: y = \\text{max\\_value} \\cdot \\sigma(x)^{\\ln(\\text{exponent})} + \\text{threshold}

    Away from ``x = 0`` (where ``sigma(x) ~ e^x``) the output changes by a factor ``exponent`` per unit of ``x``,
    so a network can move amplitudes over many decades; ``threshold`` keeps it strictly positive (and its log
    finite) when the network drives it to zero.

    Parameters
    ----------
    x : array, any shape
        Raw (unbounded) network outputs.
    exponent : float
        Growth factor per unit of ``x`` in the exponential regime (default 10).
    max_value : float
        Limit as ``x -> +inf`` (default 2).
    threshold : float
        Floor added everywhere, the limit as ``x -> -inf`` (default 1e-7).

    Returns
    -------
    Array, same shape as ``x``
        Scaled, strictly positive values.

    Notes
    -----
    Source: magenta ddsp ``core.exp_sigmoid`` (Engel et al. 2020, appendix B).

    Examples
    --------
    >>> exp_sigmoid(jnp.zeros(3))  # 2 * 0.5 ** ln(10) + 1e-7
    Array([0.4053992, 0.4053992, 0.4053992], dtype=float32)

    See also
    --------
    normalize_harmonics : the next step for a harmonic distribution.
    """
    x = jnp.asarray(x, dtype=jnp.float32)
    return max_value * jax.nn.sigmoid(x) ** math.log(exponent) + threshold


# Safe maths ------------------------------------------------------------------------------------------------------
def safe_divide(
    numerator: Float[AnyArray, "*shape"],
    denominator: Float[AnyArray, "*shape"],
    eps: float = 1e-7,
) -> Float[Array, "*shape"]:
    """Divide, replacing an exactly-zero denominator by ``eps`` (so ``0 / 0 = 0`` and gradients stay finite).

    .. math:: y = \\frac{n}{d'} ,\\quad d' = \\begin{cases} \\text{eps} & d = 0 \\\\ d & \\text{otherwise}\\end{cases}

    Parameters
    ----------
    numerator, denominator : array, same shape
        Operands (broadcast them yourself first).
    eps : float
        Replacement for zero denominators (default 1e-7).

    Returns
    -------
    Array, same shape
        The quotient.

    Notes
    -----
    Source: magenta ddsp ``core.safe_divide``.

    Examples
    --------
    >>> safe_divide(jnp.array([1.0, 0.0]), jnp.array([2.0, 0.0]))
    Array([0.5, 0. ], dtype=float32)

    See also
    --------
    normalize_harmonics : uses it to normalise an all-zero distribution to zeros.
    """
    numerator = jnp.asarray(numerator, dtype=jnp.float32)
    denominator = jnp.asarray(denominator, dtype=jnp.float32)
    safe_denominator = jnp.where(denominator == 0.0, eps, denominator)
    return numerator / safe_denominator


def safe_log(x: Float[AnyArray, "*shape"], eps: float = 1e-5) -> Float[Array, "*shape"]:
    """Natural log that maps non-positive inputs to ``log(eps)`` instead of ``-inf``/NaN.

    .. math:: y = \\ln x' ,\\quad x' = \\begin{cases} \\text{eps} & x \\le 0 \\\\ x & \\text{otherwise}\\end{cases}

    Only values ``<= 0`` are replaced: a positive value smaller than ``eps`` keeps its own log (this is magenta
    ddsp 3.7's rule; older versions floored every ``x <= eps``). The gradient is ``1/x`` for ``x > 0`` and ``0``
    elsewhere, always finite.

    Parameters
    ----------
    x : array, any shape
        Input values (e.g. spectrogram magnitudes).
    eps : float
        Value whose log is returned for ``x <= 0`` (default 1e-5).

    Returns
    -------
    Array, same shape as ``x``
        ``log(x)`` with the replacement above.

    Notes
    -----
    Source: magenta ddsp 3.7.0 ``core.safe_log`` (used by ``SpectralLoss`` for the log-magnitude term).

    Examples
    --------
    >>> safe_log(jnp.array([1.0, 0.0]))
    Array([  0.      , -11.512925], dtype=float32)

    See also
    --------
    power_to_db : decibels with a floor and a dynamic range.
    """
    x = jnp.asarray(x, dtype=jnp.float32)
    safe_x = jnp.where(x <= 0.0, eps, x)
    return jnp.log(safe_x)


# Unit conversions ------------------------------------------------------------------------------------------------
def midi_to_hz(notes: Float[AnyArray, "*shape"]) -> Float[Array, "*shape"]:
    """Convert MIDI note numbers (fractional allowed) to frequency in Hz.

    .. math:: f = 440 \\cdot 2^{(m - 69) / 12}

    Parameters
    ----------
    notes : array, any shape
        MIDI pitch (69 = A4 = 440 Hz).

    Returns
    -------
    Array, same shape
        Frequency in Hz (MIDI 0 -> 8.18 Hz; there is no silence convention here).

    Notes
    -----
    Source: magenta ddsp ``core.midi_to_hz`` (with ``midi_zero_silence=False``).

    Examples
    --------
    >>> midi_to_hz(jnp.array([69.0, 81.0]))
    Array([440., 880.], dtype=float32)

    See also
    --------
    hz_to_midi : the inverse.
    """
    notes = jnp.asarray(notes, dtype=jnp.float32)
    return 440.0 * (2.0 ** ((notes - 69.0) / 12.0))


def hz_to_midi(frequencies_hz: Float[AnyArray, "*shape"]) -> Float[Array, "*shape"]:
    """Convert frequency in Hz to (fractional) MIDI note numbers; 0 Hz and below map to MIDI 0.

    .. math:: m = 12 (\\log_2 f - \\log_2 440) + 69 \\quad (f > 0), \\qquad m = 0 \\quad (f \\le 0)

    The logarithm goes through :func:`safe_log`, so neither the value nor the gradient is NaN/inf at ``f <= 0``
    (the gradient there is 0).

    Parameters
    ----------
    frequencies_hz : array, any shape
        Frequency in Hz (unvoiced frames are often 0).

    Returns
    -------
    Array, same shape
        MIDI pitch.

    Notes
    -----
    Source: magenta ddsp ``core.hz_to_midi`` (logs base 2 as ``safe_log(x) / safe_log(2)``).

    Examples
    --------
    >>> hz_to_midi(jnp.array([440.0, 0.0]))
    Array([69.,  0.], dtype=float32)

    See also
    --------
    midi_to_hz : the inverse.
    """
    frequencies_hz = jnp.asarray(frequencies_hz, dtype=jnp.float32)
    log2 = math.log(2.0)
    notes = 12.0 * (safe_log(frequencies_hz) / log2 - math.log(440.0) / log2) + 69.0
    return jnp.where(frequencies_hz <= 0.0, 0.0, notes)


def power_to_db(
    power: Float[AnyArray, "*shape"],
    ref_db: float | Float[AnyArray, ""] = 0.0,
    range_db: float | Float[AnyArray, ""] = 80.0,
) -> Float[Array, "*shape"]:
    """Convert linear power to decibels, relative to ``ref_db`` and floored at ``-range_db``.

    In this order (magenta's):

    1. floor the power at :math:`p_{min} = 10^{-\\text{range\\_db}/10}` (1e-8 for 80 dB);
    2. :math:`\\text{db} = 10 \\log_{10} p` (the log as ``safe_log(p) / safe_log(10)``);
    3. subtract ``ref_db``;
    4. floor at ``-range_db``.

    So with ``ref_db = 0`` the output lies in ``[-range_db, +inf)``; with ``ref_db > 0`` the floor of step 1
    maps to ``-range_db - ref_db`` and step 4 lifts it back to ``-range_db``.

    Parameters
    ----------
    power : array, any shape
        Non-negative power (e.g. ``|STFT|**2``, optionally A-weighted).
    ref_db : float
        Reference level in dB, subtracted after the conversion (default 0).
    range_db : float
        Dynamic range in dB: both the power floor and the output floor (default 80).

    Returns
    -------
    Array, same shape
        Power in dB.

    Notes
    -----
    Source: magenta ddsp 3.7.0 ``core.power_to_db`` (the ``use_tf=True`` path); ``compute_loudness`` uses it on
    the mean A-weighted power.

    Examples
    --------
    >>> jnp.round(power_to_db(jnp.array([1.0, 0.01, 0.0])), 3)
    Array([  0., -20., -80.], dtype=float32)

    See also
    --------
    amplitude_to_db : the same for magnitudes; db_to_power : the inverse (without the floor).
    """
    power = jnp.asarray(power, dtype=jnp.float32)
    power_min = 10.0 ** -(range_db / 10.0)
    db = 10.0 * (safe_log(jnp.maximum(power_min, power)) / math.log(10.0))
    return jnp.maximum(db - ref_db, -range_db)


def amplitude_to_db(
    amplitude: Float[AnyArray, "*shape"],
    ref_db: float = 0.0,
    range_db: float = 80.0,
) -> Float[Array, "*shape"]:
    """Convert a linear amplitude (magnitude) to decibels: ``power_to_db(amplitude ** 2, ref_db, range_db)``.

    .. math:: \\text{db} = \\max(10 \\log_{10} \\max(a^2, 10^{-\\text{range\\_db}/10}) - \\text{ref\\_db},
              -\\text{range\\_db})

    Parameters
    ----------
    amplitude : array, any shape
        Linear amplitude (e.g. ``|STFT|``).
    ref_db : float
        Reference level in dB (default 0).
    range_db : float
        Dynamic range in dB (default 80).

    Returns
    -------
    Array, same shape
        Level in dB (``20 log10 |a|`` above the floor).

    Notes
    -----
    Source: magenta ddsp 3.7.0 ``core.amplitude_to_db`` (squares, then ``power_to_db``).

    Examples
    --------
    >>> jnp.round(amplitude_to_db(jnp.array([1.0, 0.1])), 3)
    Array([  0., -20.], dtype=float32)

    See also
    --------
    power_to_db; db_to_amplitude : the inverse (without the floor).
    """
    amplitude = jnp.asarray(amplitude, dtype=jnp.float32)
    return power_to_db(amplitude**2.0, ref_db=ref_db, range_db=range_db)


def db_to_power(db: Float[AnyArray, "*shape"]) -> Float[Array, "*shape"]:
    """Convert decibels to linear power: :math:`p = 10^{\\text{db}/10}`.

    Parameters
    ----------
    db : array, any shape
        Level in dB.

    Returns
    -------
    Array, same shape
        Linear power.

    Notes
    -----
    Source: magenta ddsp ``core.db_to_power``.

    Examples
    --------
    >>> db_to_power(jnp.array([0.0, -10.0]))
    Array([1. , 0.1], dtype=float32)

    See also
    --------
    power_to_db : the inverse (with a floor).
    """
    db = jnp.asarray(db, dtype=jnp.float32)
    return 10.0 ** (db / 10.0)


def db_to_amplitude(db: Float[AnyArray, "*shape"]) -> Float[Array, "*shape"]:
    """Convert decibels to linear amplitude: :math:`a = 10^{\\text{db}/20}` (``db_to_power(db / 2)``).

    Parameters
    ----------
    db : array, any shape
        Level in dB.

    Returns
    -------
    Array, same shape
        Linear amplitude.

    Notes
    -----
    Source: magenta ddsp ``core.db_to_amplitude``.

    Examples
    --------
    >>> db_to_amplitude(jnp.array([0.0, -20.0]))
    Array([1. , 0.1], dtype=float32)

    See also
    --------
    amplitude_to_db : the inverse (with a floor).
    """
    return db_to_power(jnp.asarray(db, dtype=jnp.float32) / 2.0)


# Harmonics and Nyquist -------------------------------------------------------------------------------------------
def harmonic_frequencies(f0_hz: Float[AnyArray, "n_frames"], n_harmonics: int) -> Float[Array, "n_frames n_harmonics"]:
    """Frequencies of the harmonics of ``f0_hz``: harmonic ``k`` (1-based) is at ``k * f0``.

    Parameters
    ----------
    f0_hz : array, shape (n_frames,)
        Fundamental frequency per frame, Hz.
    n_harmonics : int
        Number of harmonics (>= 1).

    Returns
    -------
    Array, shape (n_frames, n_harmonics)
        ``f0_hz[:, None] * [1, 2, ..., n_harmonics]``, Hz.

    Notes
    -----
    Source: magenta ddsp ``core.get_harmonic_frequencies``.

    Examples
    --------
    >>> harmonic_frequencies(jnp.array([100.0]), n_harmonics=3)
    Array([[100., 200., 300.]], dtype=float32)

    See also
    --------
    remove_above_nyquist, normalize_harmonics.
    """
    if n_harmonics < 1:
        raise ValueError(f"n_harmonics must be >= 1, got {n_harmonics}")
    f0_hz = jnp.asarray(f0_hz, dtype=jnp.float32)
    ratios = jnp.arange(1, n_harmonics + 1, dtype=jnp.float32)  # [n_harmonics]
    return f0_hz[:, None] * ratios[None, :]  # [n_frames, n_harmonics]


def remove_above_nyquist(
    frequency_envelopes_hz: Float[AnyArray, "*shape"],
    amplitude_envelopes: Float[AnyArray, "*shape"],
    sample_rate: int,
) -> Float[Array, "*shape"]:
    """Zero the amplitude of every oscillator whose frequency is at or above Nyquist (``sample_rate / 2``).

    A negative or NaN frequency is not a valid oscillator either (it would alias), so its amplitude is zeroed too.

    .. math:: a' = \\begin{cases} 0 & f \\ge \\text{sample\\_rate}/2 \\\\ a & \\text{otherwise} \\end{cases}

    Parameters
    ----------
    frequency_envelopes_hz : array, any shape
        Oscillator frequencies, Hz (frame-wise or sample-wise).
    amplitude_envelopes : array, same shape
        Oscillator amplitudes (linear).
    sample_rate : int
        Audio sample rate, Hz (> 0).

    Returns
    -------
    Array, same shape
        The amplitudes, zeroed at and above Nyquist. The gradient w.r.t. a zeroed amplitude is 0.

    Notes
    -----
    Source: magenta ddsp ``core.remove_above_nyquist`` (``>=``: a harmonic exactly at Nyquist is removed).

    Examples
    --------
    >>> remove_above_nyquist(jnp.array([4000.0, 8000.0]), jnp.array([1.0, 1.0]), sample_rate=16000)
    Array([1., 0.], dtype=float32)

    See also
    --------
    normalize_harmonics : masks then renormalises a harmonic distribution.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of samples per second, got {sample_rate}")
    frequency_envelopes_hz = jnp.asarray(frequency_envelopes_hz, dtype=jnp.float32)
    amplitude_envelopes = jnp.asarray(amplitude_envelopes, dtype=jnp.float32)
    valid = (frequency_envelopes_hz >= 0.0) & (frequency_envelopes_hz < sample_rate / 2.0)  # False for NaN
    return jnp.where(valid, amplitude_envelopes, 0.0)


def normalize_harmonics(
    harmonic_distribution: Float[AnyArray, "n_frames n_harmonics"],
    f0_hz: Float[AnyArray, "n_frames"],
    sample_rate: int,
) -> Float[Array, "n_frames n_harmonics"]:
    """Remove harmonics at/above Nyquist, then normalise each frame's distribution to sum to 1.

    .. math:: d'_k = \\frac{d_k [k f_0 < sr/2]}{\\sum_j d_j [j f_0 < sr/2]}

    A frame whose masked distribution sums to exactly 0 (all harmonics above Nyquist, or an all-zero input)
    becomes all zeros, with finite gradients (:func:`safe_divide`).

    Parameters
    ----------
    harmonic_distribution : array, shape (n_frames, n_harmonics)
        Non-negative relative harmonic amplitudes (e.g. after :func:`exp_sigmoid`); need not sum to 1.
    f0_hz : array, shape (n_frames,)
        Fundamental frequency per frame, Hz.
    sample_rate : int
        Audio sample rate, Hz.

    Returns
    -------
    Array, shape (n_frames, n_harmonics)
        The normalised distribution; each row sums to 1 (or is all zero).

    Notes
    -----
    Source: magenta ddsp ``core.normalize_harmonics`` with ``sample_rate`` given (what ``synths.Harmonic`` does
    with ``normalize_below_nyquist=True``).

    Examples
    --------
    >>> normalize_harmonics(jnp.ones((1, 3)), jnp.array([3000.0]), sample_rate=16000)  # 9 kHz is removed
    Array([[0.5, 0.5, 0. ]], dtype=float32)

    See also
    --------
    remove_above_nyquist, exp_sigmoid, ddsp_core.synths.harmonic_controls.
    """
    harmonic_distribution = jnp.asarray(harmonic_distribution, dtype=jnp.float32)
    frequencies_hz = harmonic_frequencies(f0_hz, harmonic_distribution.shape[-1])  # [n_frames, n_harmonics]
    masked = remove_above_nyquist(frequencies_hz, harmonic_distribution, sample_rate)
    total = jnp.sum(masked, axis=-1, keepdims=True)  # [n_frames, 1]
    return safe_divide(masked, jnp.broadcast_to(total, masked.shape))


# Upsampling ------------------------------------------------------------------------------------------------------
def _check_upsample_sizes(n_frames: int, n_samples: int) -> None:
    if n_frames < 1:
        raise ValueError(f"inputs must have at least one frame, got n_frames={n_frames}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")


def upsample_linear(inputs: Float[AnyArray, "n_frames n_channels"], n_samples: int) -> Float[Array, "n_samples n_channels"]:
    """Upsample frame-wise controls to ``n_samples`` by linear interpolation, holding the last frame.

    Output sample ``t`` reads the input at position :math:`s = t \\cdot n_\\text{frames} / n_\\text{samples}`
    (float32, as TensorFlow computes it) and interpolates between frames ``floor(s)`` and
    ``min(floor(s) + 1, n_frames - 1)``. This is ``tf.compat.v1.image.resize(..., BILINEAR, align_corners=False)``
    with legacy (not half-pixel) centres: frame ``i`` sits at the start of its hop, and the last hop holds the last
    frame (magenta's ``add_endpoint=True``). Any ``n_samples >= 1`` works (no divisibility needed).

    Parameters
    ----------
    inputs : array, shape (n_frames, n_channels)
        Frame-wise values (e.g. f0 in Hz, amplitudes).
    n_samples : int
        Number of output samples (>= 1).

    Returns
    -------
    Array, shape (n_samples, n_channels)
        Sample-wise values.

    Notes
    -----
    Source: magenta ddsp ``core.resample(inputs, n_samples, method='linear')``, used for f0 in
    ``harmonic_synthesis``.

    Examples
    --------
    >>> upsample_linear(jnp.array([[0.0], [4.0]]), n_samples=4)[:, 0]
    Array([0., 2., 4., 4.], dtype=float32)

    See also
    --------
    upsample_with_windows : smoother, for amplitude envelopes.
    """
    n_frames = inputs.shape[0]
    _check_upsample_sizes(n_frames, n_samples)
    # Static interpolation positions, computed exactly as TF's legacy scaler does (float32 product).
    scale = np.float32(n_frames) / np.float32(n_samples)
    position = np.arange(n_samples, dtype=np.float32) * scale  # [n_samples]
    lower = np.floor(position)
    lerp = (position - lower).astype(np.float32)[:, None]  # [n_samples, 1]
    lower_index = lower.astype(np.int32)
    upper_index = np.minimum(np.ceil(position).astype(np.int32), n_frames - 1)
    with jax.named_scope("upsample_linear"):
        inputs = jnp.asarray(inputs, dtype=jnp.float32)
        below = inputs[lower_index]  # [n_samples, n_channels]
        above = inputs[upper_index]  # [n_samples, n_channels]
        return below + (above - below) * lerp


def hann_window(size: int, *, periodic: bool = True) -> np.ndarray:
    """Hann window as a NumPy float64 constant: ``0.5 - 0.5 cos(2 pi n / D)``, ``n = 0 .. size - 1``.

    ``D = size`` for the periodic window (``periodic=True``, the default: the DFT-even window of spectral analysis,
    ``scipy.signal.get_window("hann", size)``) and ``D = size - 1`` for the symmetric one (``numpy.hanning``).
    Built at trace time, so under ``jit`` it is a constant.

    Parameters
    ----------
    size : int
        Window length in samples, >= 1 (a symmetric window of length 1 is ``[1.0]``).
    periodic : bool
        Periodic (default) or symmetric.

    Returns
    -------
    numpy.ndarray, shape (size,), float64
        The window.

    Raises
    ------
    ValueError
        If ``size < 1``.

    Notes
    -----
    ``tf.signal.hann_window(size, periodic=True)`` is periodic only for even ``size``; for odd ``size`` it returns
    the symmetric window. Code that must match TensorFlow passes ``periodic=size % 2 == 0``.

    Examples
    --------
    >>> hann_window(4)
    array([0. , 0.5, 1. , 0.5])
    >>> hann_window(3, periodic=False)
    array([0., 1., 0.])
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of samples, got {size}")
    if not periodic and size == 1:
        return np.ones(1)
    period = size if periodic else size - 1
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / period)


def _hann_crossfade(hop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Falling and rising halves of a periodic Hann window of length ``2 * hop_size`` (float32, sum to 1)."""
    window = hann_window(2 * hop_size).astype(np.float32)
    return window[hop_size:], window[:hop_size]


def upsample_with_windows(
    inputs: Float[AnyArray, "n_frames n_channels"], n_samples: int
) -> Float[Array, "n_samples n_channels"]:
    """Upsample frame-wise controls to ``n_samples`` by overlap-adding half-overlapping Hann windows.

    With hop :math:`H = n_\\text{samples} / n_\\text{frames}` and the last frame repeated once
    (``add_endpoint=True``), frame ``i`` is multiplied by a periodic Hann window of length ``2H`` centred on the
    start of hop ``i``; the windows sum to 1. Equivalently, within hop ``i`` (``t = iH + j``, ``0 <= j < H``):

    .. math:: y[t] = x_i \\cos^2\\!\\left(\\frac{\\pi j}{2H}\\right) + x_{i+1} \\sin^2\\!\\left(\\frac{\\pi j}{2H}\\right)

    a raised-cosine crossfade, smoother than linear interpolation (no corners at the frame boundaries).

    Parameters
    ----------
    inputs : array, shape (n_frames, n_channels)
        Frame-wise values (e.g. harmonic amplitudes).
    n_samples : int
        Number of output samples; must be a positive multiple of ``n_frames``.

    Returns
    -------
    Array, shape (n_samples, n_channels)
        Sample-wise values.

    Raises
    ------
    ValueError
        If ``n_samples`` is not a positive multiple of ``n_frames``.

    Notes
    -----
    Source: magenta ddsp ``core.upsample_with_windows(..., add_endpoint=True)`` (``resample(..., 'window')``),
    the default amplitude upsampler of ``synths.Harmonic``.

    Examples
    --------
    >>> upsample_with_windows(jnp.array([[0.0], [1.0]]), n_samples=4)[:, 0]
    Array([0. , 0.5, 1. , 1. ], dtype=float32)

    See also
    --------
    upsample_linear.
    """
    n_frames, n_channels = inputs.shape
    _check_upsample_sizes(n_frames, n_samples)
    if n_samples % n_frames != 0:
        raise ValueError(
            f"n_samples must be a multiple of the number of frames for window upsampling, "
            f"got n_samples={n_samples}, n_frames={n_frames}"
        )
    hop_size = n_samples // n_frames
    falling, rising = _hann_crossfade(hop_size)  # [hop_size] each
    with jax.named_scope("upsample_with_windows"):
        inputs = jnp.asarray(inputs, dtype=jnp.float32)
        following = jnp.concatenate([inputs[1:], inputs[-1:]], axis=0)  # [n_frames, n_channels], endpoint held
        # [n_frames, hop_size, n_channels]
        out = inputs[:, None, :] * falling[None, :, None] + following[:, None, :] * rising[None, :, None]
        return out.reshape(n_samples, n_channels)
