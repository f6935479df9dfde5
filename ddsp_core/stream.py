"""Block-by-block (streaming) forms of the DSP: synthesisers, filtered noise, reverb and a delay line.

Each block form is a pure, jit-able step ``state, out = step(state, inputs_for_k_frames, ...)`` over a block of
``k >= 1`` whole frames (``k * hop_size`` samples), with everything that crosses a block boundary in an explicit
``NamedTuple`` state made by the matching ``*_init`` function (optax's init/update pattern). Blocks may have any
number of frames, also changing from block to block: the concatenated outputs are the offline render of the whole
clip, delayed by a fixed number of samples (the block form's *latency*), to float32 rounding.

Latencies (what the offline render needs from the future, and so what the stream must wait for):

* **Oscillators** (:func:`harmonic_block`, :func:`sinusoidal_block`, :func:`wavetable_block`): hop ``i`` of the
  offline render crossfades frame ``i``'s controls into frame ``i + 1``'s (Hann or linear amplitude crossfade,
  linear f0). That is one frame of lookahead, so the stream renders hop ``i`` when frame ``i + 1`` arrives: the
  output is the offline render delayed by exactly ``hop_size`` samples (:data:`OSCILLATOR_LATENCY_FRAMES`). A
  causal variant without the delay would have to hold each frame's controls flat through its hop (steps, i.e.
  clicks, at every frame) or extrapolate them; the one-hop delay (4 ms at 16 kHz, hop 64) is the cheaper price.
  The last hop of a clip comes out when one more frame arrives; feed the last frame again to flush it (the offline
  render holds the last frame).
* **Filtered noise** (:func:`filtered_noise_block`): the offline render advances each frame's linear-phase filter
  by ``(ir_size - 1) // 2 - 1`` samples (62 for 65 bands), i.e. it reads that far ahead; the block form delays
  its output by any ``latency_samples`` at least that large (the model engine uses the oscillators' one hop).
  Noise is drawn per frame from ``fold_in(key, frame_index)``, exactly as :func:`ddsp_core.noise.filtered_noise`.
* **Reverb** (:func:`reverb_block`): causal, no latency; a uniformly partitioned convolution (frequency-domain
  delay line, partitions of one hop) equal to :func:`ddsp_core.effects.reverb`.
* The decoder's GRU is causal: :func:`ddsp_core.gru.gru_recurrence` continues from a carried ``initial``
  hidden state (see :mod:`ddsp_core.stream_engine`).

Every function works on one example; batch (e.g. polyphonic voices) with ``jax.vmap``.

Source: uniformly partitioned convolution: W. G. Gardner, "Efficient Convolution without Input-Output Delay",
JAES 43(3), 1995, and F. Wefers, "Partitioned convolution algorithms for real-time auralization", 2015 (ch. 5,
frequency-domain delay line).
"""

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, Int

from ddsp_core._typing import AnyArray, Key
from ddsp_core.effects import fft_convolve
from ddsp_core.noise import frame_noise, frequency_impulse_response
from ddsp_core.core import remove_above_nyquist
from ddsp_core.synths import _crossfade_weights, _cycles_from, _harmonic_bank, as_frequency_hz

__all__ = [
    "OSCILLATOR_LATENCY_FRAMES",
    "DelayState",
    "FilteredNoiseState",
    "OscillatorState",
    "ReverbState",
    "delay_block",
    "delay_init",
    "filtered_noise_block",
    "filtered_noise_init",
    "filtered_noise_lookahead",
    "harmonic_block",
    "harmonic_init",
    "oscillator_delay_init",
    "reverb_block",
    "reverb_init",
    "sinusoidal_block",
    "sinusoidal_init",
    "wavetable_block",
    "wavetable_init",
]

OSCILLATOR_LATENCY_FRAMES = 1
"""The oscillators' block forms output the offline render delayed by this many hops (the crossfade's lookahead)."""

_TWO_PI = 2.0 * math.pi


# Oscillators -------------------------------------------------------------------------------------------------------
class OscillatorState(NamedTuple):
    """What an oscillator carries between blocks.

    Attributes
    ----------
    controls : tuple of arrays
        The controls of the last frame received, not yet rendered (its hop is crossfaded into the next frame).
    phase_coarse, phase_fine : Float[Array, "*n_oscillators"]
        Phase at the end of the rendered audio, in Hz x samples (one cycle = ``sample_rate``), as an exact coarse
        part and a small remainder (see ``ddsp_core.synths._cycles_from``), so it stays exact over any length.
    n_frames : Int[Array, ""]
        Frames received so far (0 before the first block: the first rendered hop is then silence).
    """

    controls: tuple[Array, ...]
    phase_coarse: Array
    phase_fine: Array
    n_frames: Int[Array, ""]


def _oscillator_init(controls: tuple[Array, ...], phase_shape: tuple[int, ...]) -> OscillatorState:
    zero = jnp.zeros(phase_shape, jnp.float32)
    return OscillatorState(controls, zero, zero, jnp.zeros((), jnp.int32))


def _with_previous(previous: Array, block: Array) -> tuple[Array, Array]:
    """Frame pairs ``(this, next)`` of the hops to render: ``([previous, block[:-1]], block)``, both ``(k, ...)``."""
    block = jnp.asarray(block, jnp.float32)
    return jnp.concatenate([previous[None], block[:-1]], axis=0), block


def _frequency_envelope(this_hz: Array, next_hz: Array, hop_size: int) -> Array:
    """Frequencies ramped linearly from each frame to the next across its hop: ``(k, hop_size, ...)``."""
    lerp = np.arange(hop_size, dtype=np.float32) * np.float32(1.0 / hop_size)  # as core.upsample_linear
    lerp = lerp.reshape((1, hop_size) + (1,) * (this_hz.ndim - 1))
    return this_hz[:, None] + (next_hz - this_hz)[:, None] * lerp


def _advance(state: OscillatorState, frequency_hz: Array, sample_rate: int, exclusive: bool, started: Array):
    """Phase (cycles) of the hops to render and the state's new phase; hops before the first frame stay at 0."""
    frequency_hz = jnp.where(started.reshape((-1,) + (1,) * (frequency_hz.ndim - 1)), frequency_hz, 0.0)
    cycles, (coarse, fine) = _cycles_from(frequency_hz, (state.phase_coarse, state.phase_fine), sample_rate, exclusive)
    return frequency_hz, cycles, coarse, fine


def _hops_started(state: OscillatorState, n_block_frames: int) -> Array:
    """Which of the block's rendered hops lie after the first frame (the very first hop renders nothing)."""
    return state.n_frames + jnp.arange(n_block_frames) >= 1


def _silence_before_start(audio: Array, started: Array) -> Array:
    """The block's ``(k, hop_size)`` audio as ``(k * hop_size,)``, the hop before the first frame silenced."""
    return jnp.where(started[:, None], audio, 0.0).reshape(-1)


def harmonic_init(n_harmonics: int) -> OscillatorState:
    """Initial state of :func:`harmonic_block`: silence before the first frame, phase 0.

    Parameters
    ----------
    n_harmonics : int
        Number of harmonics of the controls that will be streamed.

    Returns
    -------
    OscillatorState
        ``controls = (harmonic amplitudes (n_harmonics,), f0_hz ())``, zeros.
    """
    return _oscillator_init((jnp.zeros((n_harmonics,), jnp.float32), jnp.zeros((), jnp.float32)), ())


def harmonic_block(
    state: OscillatorState,
    amplitude: Float[AnyArray, " k"],
    harmonic_distribution: Float[AnyArray, "k n_harmonics"],
    f0_hz: Float[AnyArray, " k"],
    *,
    sample_rate: int,
    hop_size: int,
    amp_resample: str = "window",
) -> tuple[OscillatorState, Float[Array, " k_hop"]]:
    """Block form of :func:`ddsp_core.synths.harmonic_synthesis`: ``k`` frames of controls in, ``k`` hops out.

    The output of each call is hops ``n - 1 .. n + k - 2`` of the offline render, ``n`` the number of frames
    received before the call: the offline render delayed by ``hop_size`` samples (the first hop of the stream is
    silence). Concatenated over any sequence of blocks it equals ``harmonic_synthesis`` of all the frames, delayed
    by one hop, to float32 rounding (the phase is carried exactly, see :class:`OscillatorState`).

    Parameters
    ----------
    state : OscillatorState
        From :func:`harmonic_init` or the previous call.
    amplitude : array, shape (k,)
        Overall linear amplitude per frame.
    harmonic_distribution : array, shape (k, n_harmonics)
        Relative harmonic amplitudes per frame (used as given, as in ``harmonic_synthesis``).
    f0_hz : array, shape (k,)
        Fundamental frequency per frame, Hz.
    sample_rate : int
        Audio sample rate, Hz.
    hop_size : int
        Samples per frame.
    amp_resample : {"window", "linear"}
        Amplitude crossfade between frames, as in ``harmonic_synthesis``.

    Returns
    -------
    state : OscillatorState
        The state after the block.
    audio : Array, shape (k * hop_size,)
        The block's audio.

    Examples
    --------
    >>> state = harmonic_init(8)
    >>> state, audio = harmonic_block(state, jnp.ones(4), jnp.ones((4, 8)) / 8, jnp.full(4, 220.0),
    ...                               sample_rate=16000, hop_size=64)
    >>> audio.shape
    (256,)
    """
    previous_amplitudes, previous_f0_hz = state.controls
    distribution = jnp.asarray(harmonic_distribution, jnp.float32)
    harmonic_amplitudes = jnp.asarray(amplitude, jnp.float32)[:, None] * distribution  # [k, n_harmonics]
    amps_start, amps_end = _with_previous(previous_amplitudes, harmonic_amplitudes)  # [k, n_harmonics] each
    f0_start, f0_end = _with_previous(previous_f0_hz, as_frequency_hz(f0_hz))  # [k] each; NaN/negative: 0 Hz
    started = _hops_started(state, f0_start.shape[0])
    f0_envelope_hz, cycles, coarse, fine = _advance(
        state, _frequency_envelope(f0_start, f0_end, hop_size), sample_rate, False, started
    )  # [k, hop_size]
    with jax.named_scope("harmonic_block"):
        if _DIRECT_HARMONIC_SINES.get():
            audio = _harmonic_sum(sample_rate / 2.0, amp_resample, cycles, f0_envelope_hz, amps_start, amps_end)
        else:
            audio = _harmonic_bank(
                sample_rate / 2.0, amp_resample, _TWO_PI * cycles, f0_envelope_hz, amps_start, amps_end
            )  # [k, hop_size]
    new_state = OscillatorState((amps_end[-1], f0_end[-1]), coarse, fine, state.n_frames + f0_end.shape[0])
    return new_state, _silence_before_start(audio, started)


def _harmonic_sum(
    nyquist_hz: float, amp_resample: str, cycles: Array, f0_envelope_hz: Array, amps_start: Array, amps_end: Array
) -> Array:
    """``sum_k A_k(t) [k f0(t) < nyquist] sin(2 pi k cycles(t))`` per hop, every harmonic's sine computed directly.

    ``cycles``, ``f0_envelope_hz``: ``(k, hop_size)``, the fundamental's phase in cycles (``[0, 1)``) and its
    frequency; ``amps_start``, ``amps_end``: ``(k, n_harmonics)``. Harmonic ``k``'s phase ``k cycles mod 1`` is
    exact: ``cycles`` is split into ``hi`` on a 2**-12 grid (``k hi`` is exact in float32 for ``k < 2**11``) and a
    remainder below 2**-13. The offline bank (``synths._harmonic_bank``) gets the sines by the angle-addition
    recurrence, which suits XLA and which :func:`harmonic_block` uses by default, so that the stream equals the
    offline render to float32 rounding; this form differs from it by the recurrence's own rounding (1.7e-5 of the
    peak with 100 harmonics). It is what the ONNX export traces (:func:`direct_harmonic_sines`): the recurrence
    would unroll into ~20 graph nodes per harmonic, which ONNX runtimes run one by one. Returns ``(k, hop_size)``.
    """
    w_start, w_end = _crossfade_weights(cycles.shape[1], amp_resample)
    numbers = np.arange(1, amps_start.shape[1] + 1, dtype=np.float32)
    coarse = jnp.round(cycles * 4096.0) / 4096.0
    fine = cycles - coarse
    harmonic_cycles = jnp.mod(coarse[..., None] * numbers, 1.0) + fine[..., None] * numbers  # [k, hop_size, n]
    sines = jnp.where(f0_envelope_hz[..., None] * numbers < nyquist_hz, jnp.sin(_TWO_PI * harmonic_cycles), 0.0)
    return jnp.einsum("thn,tn->th", sines, amps_start) * w_start + jnp.einsum("thn,tn->th", sines, amps_end) * w_end


_DIRECT_HARMONIC_SINES = contextvars.ContextVar("direct_harmonic_sines", default=False)


@contextlib.contextmanager
def direct_harmonic_sines() -> Iterator[None]:
    """Within this context, :func:`harmonic_block` traces each harmonic's sine directly (``_harmonic_sum``) instead
    of the offline bank's recurrence: for exporters whose runtimes pay per operation (ONNX). Affects tracing only;
    a function jitted outside the context keeps the recurrence."""
    token = _DIRECT_HARMONIC_SINES.set(True)
    try:
        yield
    finally:
        _DIRECT_HARMONIC_SINES.reset(token)


def sinusoidal_init(n_sinusoids: int) -> OscillatorState:
    """Initial state of :func:`sinusoidal_block` (controls ``(amplitudes, frequencies_hz)``, each ``(n,)``)."""
    zeros = jnp.zeros((n_sinusoids,), jnp.float32)
    return _oscillator_init((zeros, zeros), (n_sinusoids,))


def sinusoidal_block(
    state: OscillatorState,
    amplitudes: Float[AnyArray, "k n_sinusoids"],
    frequencies_hz: Float[AnyArray, "k n_sinusoids"],
    *,
    sample_rate: int,
    hop_size: int,
    amp_resample: str = "window",
) -> tuple[OscillatorState, Float[Array, " k_hop"]]:
    """Block form of :func:`ddsp_core.synths.sinusoidal_synthesis`; output delayed by one hop (see
    :func:`harmonic_block`).

    Parameters
    ----------
    state : OscillatorState
        From :func:`sinusoidal_init` or the previous call.
    amplitudes, frequencies_hz : array, shape (k, n_sinusoids)
        Linear amplitude and frequency (Hz) of each oscillator per frame.
    sample_rate, hop_size, amp_resample
        As in :func:`harmonic_block`.

    Returns
    -------
    state : OscillatorState
    audio : Array, shape (k * hop_size,)
    """
    w_start, w_end = _crossfade_weights(hop_size, amp_resample)
    amps_start, amps_end = _with_previous(state.controls[0], amplitudes)  # [k, n_sinusoids]
    freq_start, freq_end = _with_previous(state.controls[1], as_frequency_hz(frequencies_hz))  # NaN/negative: 0 Hz
    started = _hops_started(state, freq_start.shape[0])
    envelopes_hz, cycles, coarse, fine = _advance(
        state, _frequency_envelope(freq_start, freq_end, hop_size), sample_rate, False, started
    )  # [k, hop_size, n_sinusoids]
    with jax.named_scope("sinusoidal_block"):
        # [k, hop_size, n_sinusoids]
        amplitude_envelopes = amps_start[:, None] * w_start[None, :, None] + amps_end[:, None] * w_end[None, :, None]
        amplitude_envelopes = remove_above_nyquist(envelopes_hz, amplitude_envelopes, sample_rate)
        audio = jnp.sum(amplitude_envelopes * jnp.sin(_TWO_PI * cycles), axis=-1)  # [k, hop_size]
    new_state = OscillatorState((amps_end[-1], freq_end[-1]), coarse, fine, state.n_frames + freq_end.shape[0])
    return new_state, _silence_before_start(audio, started)


def wavetable_init(n_wavetable: int) -> OscillatorState:
    """Initial state of :func:`wavetable_block` (controls ``(amplitude (), wavetable (n_wavetable,), f0_hz ())``)."""
    zero = jnp.zeros((), jnp.float32)
    return _oscillator_init((zero, jnp.zeros((n_wavetable,), jnp.float32), zero), ())


def wavetable_block(
    state: OscillatorState,
    amplitude: Float[AnyArray, " k"],
    wavetables: Float[AnyArray, "k n_wavetable"],
    f0_hz: Float[AnyArray, " k"],
    *,
    sample_rate: int,
    hop_size: int,
) -> tuple[OscillatorState, Float[Array, " k_hop"]]:
    """Block form of :func:`ddsp_core.synths.wavetable_synthesis`; output delayed by one hop (see
    :func:`harmonic_block`).

    Parameters
    ----------
    state : OscillatorState
        From :func:`wavetable_init` or the previous call.
    amplitude : array, shape (k,)
        Linear amplitude per frame.
    wavetables : array, shape (k, n_wavetable)
        One period of the waveform per frame.
    f0_hz : array, shape (k,)
        Playback frequency per frame, Hz.
    sample_rate, hop_size
        As in :func:`harmonic_block`.

    Returns
    -------
    state : OscillatorState
    audio : Array, shape (k * hop_size,)
    """
    w_start, w_end = _crossfade_weights(hop_size, "window")
    time_lerp = np.arange(hop_size, dtype=np.float32) * np.float32(1.0 / hop_size)
    previous_amplitude, previous_table, previous_f0_hz = state.controls
    amp_start, amp_end = _with_previous(previous_amplitude, amplitude)  # [k]
    table_start, table_end = _with_previous(previous_table, wavetables)  # [k, n_wavetable]
    f0_start, f0_end = _with_previous(previous_f0_hz, as_frequency_hz(f0_hz))  # NaN/negative: 0 Hz
    started = _hops_started(state, f0_start.shape[0])
    _, cycles, coarse, fine = _advance(
        state, _frequency_envelope(f0_start, f0_end, hop_size), sample_rate, True, started
    )  # [k, hop_size]
    n_wavetable = table_start.shape[1]
    with jax.named_scope("wavetable_block"):
        position = cycles * n_wavetable
        lower = jnp.clip(jnp.floor(position), 0, n_wavetable - 1)
        frac = position - lower
        lower_index = lower.astype(jnp.int32)
        upper_index = jnp.where(lower_index + 1 == n_wavetable, 0, lower_index + 1)

        def read(tables: Array) -> Array:  # [k, n_wavetable] -> [k, hop_size]
            below = jnp.take_along_axis(tables, lower_index, axis=1)
            above = jnp.take_along_axis(tables, upper_index, axis=1)
            return below + (above - below) * frac

        this_frame, next_frame = read(table_start), read(table_end)
        waveform = this_frame + (next_frame - this_frame) * time_lerp[None, :]
        envelope = amp_start[:, None] * w_start + amp_end[:, None] * w_end
        audio = envelope * waveform  # [k, hop_size]
    new_state = OscillatorState(
        (amp_end[-1], table_end[-1], f0_end[-1]), coarse, fine, state.n_frames + f0_end.shape[0]
    )
    return new_state, _silence_before_start(audio, started)


# Delay line --------------------------------------------------------------------------------------------------------
class DelayState(NamedTuple):
    """The last ``delay_samples`` input samples of :func:`delay_block`, oldest first."""

    buffer: Float[Array, " delay_samples"]


def delay_init(delay_samples: int) -> DelayState:
    """A silent delay line of ``delay_samples >= 0`` samples."""
    if delay_samples < 0:
        raise ValueError(f"delay_samples must be >= 0, got {delay_samples}")
    return DelayState(jnp.zeros((delay_samples,), jnp.float32))


def delay_block(state: DelayState, audio: Float[AnyArray, " n"]) -> tuple[DelayState, Float[Array, " n"]]:
    """Delay a stream by the state's length: ``out[t] = audio[t - delay_samples]`` across blocks (zeros first)."""
    joined = jnp.concatenate([state.buffer, jnp.asarray(audio, jnp.float32)])
    n_samples = audio.shape[0]
    return DelayState(joined[n_samples:]), joined[:n_samples]


# Filtered noise ----------------------------------------------------------------------------------------------------
class FilteredNoiseState(NamedTuple):
    """What :func:`filtered_noise_block` carries between blocks.

    Attributes
    ----------
    pending : Float[Array, "n_pending"]
        The full (causal) convolution's samples not yet output: ``latency_samples - lookahead`` finished samples
        waiting out the delay, then the ``ir_size - 1`` samples of filter tails to be overlap-added with the next
        frames.
    n_frames : Int[Array, ""]
        Frames rendered so far: the index of the next frame, whose noise is drawn from ``fold_in(key, n_frames)``.
    """

    pending: Float[Array, " n_pending"]
    n_frames: Int[Array, ""]


def _noise_ir_size(n_bands: int, window_size: int) -> int:
    magnitudes = jax.ShapeDtypeStruct((1, n_bands), jnp.float32)
    shape = jax.eval_shape(lambda m: frequency_impulse_response(m, window_size=window_size), magnitudes)
    return shape.shape[-1]


def filtered_noise_lookahead(n_bands: int, *, window_size: int = 257) -> int:
    """Samples ahead that the offline filtered noise reads: the delay compensation ``max((ir_size - 1) // 2 - 1, 0)``
    of :func:`ddsp_core.noise.frequency_filter` (62 for 65 bands and the default window)."""
    return max((_noise_ir_size(n_bands, window_size) - 1) // 2 - 1, 0)


def filtered_noise_init(n_bands: int, *, window_size: int = 257, latency_samples: int) -> FilteredNoiseState:
    """Initial state of :func:`filtered_noise_block`.

    Parameters
    ----------
    n_bands : int
        Filter bands per frame.
    window_size : int
        Filter window, as in :func:`ddsp_core.noise.filtered_noise`.
    latency_samples : int
        Delay of the stream behind the offline render; at least :func:`filtered_noise_lookahead`.

    Returns
    -------
    FilteredNoiseState
        Zeros, frame 0 next.

    Raises
    ------
    ValueError
        If ``latency_samples`` is shorter than the filters' lookahead.
    """
    lookahead = filtered_noise_lookahead(n_bands, window_size=window_size)
    if latency_samples < lookahead:
        raise ValueError(
            f"latency_samples must be at least the noise filters' lookahead of {lookahead} samples, "
            f"got {latency_samples}"
        )
    n_pending = latency_samples - lookahead + _noise_ir_size(n_bands, window_size) - 1
    return FilteredNoiseState(jnp.zeros((n_pending,), jnp.float32), jnp.zeros((), jnp.int32))


def filtered_noise_block(
    state: FilteredNoiseState,
    magnitudes: Float[AnyArray, "k n_bands"],
    *,
    hop_size: int,
    window_size: int = 257,
    key: Key,
) -> tuple[FilteredNoiseState, Float[Array, " k_hop"]]:
    """Block form of :func:`ddsp_core.noise.filtered_noise`: ``k`` frames of magnitudes in, ``k`` hops of noise out.

    Frame ``i``'s noise is ``frame_noise(key, i)`` (as offline); it is filtered by the frame's FIR and the results
    are overlap-added, the filter tails carried to the next block. The concatenated output equals the offline
    ``filtered_noise(all magnitudes, key=key)`` delayed by the ``latency_samples`` given to
    :func:`filtered_noise_init`, to float32 rounding.

    Parameters
    ----------
    state : FilteredNoiseState
        From :func:`filtered_noise_init` or the previous call.
    magnitudes : array, shape (k, n_bands)
        Linear filter magnitudes per frame.
    hop_size : int
        Samples per frame.
    window_size : int
        Filter window (the same as given to :func:`filtered_noise_init`).
    key : Key
        The stream's PRNG key (the same key for every block).

    Returns
    -------
    state : FilteredNoiseState
    audio : Array, shape (k * hop_size,)
    """
    n_frames = magnitudes.shape[0]
    with jax.named_scope("filtered_noise_block"):
        noise = frame_noise(key, state.n_frames + jnp.arange(n_frames), frame_size=hop_size).reshape(-1)
        impulse_responses = frequency_impulse_response(magnitudes, window_size=window_size)  # [k, ir_size]
        # Full causal convolution of this block: k * hop + ir_size - 1 samples.
        full = fft_convolve(noise, impulse_responses, padding="valid", delay_compensation=0)
        n_out = n_frames * hop_size
        n_waiting = state.pending.shape[0] - (impulse_responses.shape[1] - 1)
        joined = jnp.pad(state.pending, (0, n_out)) + jnp.pad(full, (n_waiting, 0))
    return FilteredNoiseState(joined[n_out:], state.n_frames + n_frames), joined[:n_out]


# Reverb ------------------------------------------------------------------------------------------------------------
class ReverbState(NamedTuple):
    """What :func:`reverb_block` carries: the last input hop and the spectra of the hops before (newest last).

    Attributes
    ----------
    last_hop : Float[Array, "hop_size"]
        The previous hop of input (the first half of the next overlap-save frame).
    spectra : Float[Array, "n_parts_minus_1 n_bins 2"]
        ``rfft`` (size ``2 * hop_size``) of the overlap-save frames of the last ``n_parts - 1`` hops: the
        frequency-domain delay line, as real and imaginary parts (real arrays, so that every host and ONNX can
        hold the state).
    """

    last_hop: Float[Array, " hop_size"]
    spectra: Float[Array, "n_history n_bins 2"]


def _n_partitions(ir_length: int, hop_size: int) -> int:
    return -(-ir_length // hop_size)


def reverb_init(ir_length: int, *, hop_size: int) -> ReverbState:
    """Initial (silent) state of :func:`reverb_block` for an impulse response of ``ir_length`` taps."""
    if ir_length < 1 or hop_size < 1:
        raise ValueError(f"ir_length and hop_size must be positive, got {ir_length} and {hop_size}")
    n_history = _n_partitions(ir_length, hop_size) - 1
    return ReverbState(
        jnp.zeros((hop_size,), jnp.float32), jnp.zeros((n_history, hop_size + 1, 2), jnp.float32)
    )


def _partition_spectra(impulse_response: Array, hop_size: int) -> Complex[Array, "n_parts n_bins"]:
    """The IR cut into hop-long partitions, each zero-padded to ``2 * hop_size`` and transformed."""
    n_parts = _n_partitions(impulse_response.shape[0], hop_size)
    parts = jnp.pad(impulse_response, (0, n_parts * hop_size - impulse_response.shape[0])).reshape(n_parts, hop_size)
    return jnp.fft.rfft(parts, n=2 * hop_size)  # [n_parts, hop_size + 1]


def reverb_block(
    state: ReverbState,
    audio: Float[AnyArray, " k_hop"],
    impulse_response: Float[AnyArray, " ir_size"],
    *,
    hop_size: int,
    add_dry: bool = True,
) -> tuple[ReverbState, Float[Array, " k_hop"]]:
    """Block form of :func:`ddsp_core.effects.reverb`: uniformly partitioned convolution, no latency.

    Maths (overlap-save with a frequency-domain delay line, partition ``P = hop_size``): the impulse response
    (first tap zeroed, as ``reverb``) is cut into ``J = ceil(ir_size / P)`` partitions ``h_j``, each transformed
    as ``H_j = rfft(h_j, 2P)``. Each input hop ``t`` gives ``X_t = rfft([x_{t-1}, x_t])``, and its output is the
    last ``P`` samples of ``irfft(sum_j X_{t-j} H_j)``: exactly the causal convolution, with no wrap-around, for
    ``J`` complex multiply-adds per frequency bin per hop. The ``J - 1`` previous spectra are the state.

    Parameters
    ----------
    state : ReverbState
        From :func:`reverb_init` or the previous call.
    audio : array, shape (k * hop_size,)
        The block's dry audio.
    impulse_response : array, shape (ir_size,)
        The room response (its first tap is ignored).
    hop_size : int
        Partition size: samples per frame.
    add_dry : bool
        Add the dry signal (as ``reverb``).

    Returns
    -------
    state : ReverbState
    audio : Array, shape (k * hop_size,)
        Equals ``reverb`` of the whole stream, block for block (no delay), to float32 rounding.
    """
    audio = jnp.asarray(audio, jnp.float32)
    n_hops = audio.shape[0] // hop_size
    with jax.named_scope("reverb_block"):
        masked_ir = jnp.asarray(impulse_response, jnp.float32).at[0].set(0.0)
        ir_spectra = _partition_spectra(masked_ir, hop_size)  # [J, P + 1]
        n_parts = ir_spectra.shape[0]
        hops = audio.reshape(n_hops, hop_size)
        previous = jnp.concatenate([state.last_hop[None], hops[:-1]], axis=0)
        spectra = jnp.fft.rfft(jnp.concatenate([previous, hops], axis=1), axis=1)  # [k, P + 1]
        history = jax.lax.complex(state.spectra[..., 0], state.spectra[..., 1])  # [J - 1, P + 1]
        line = jnp.concatenate([history, spectra], axis=0)  # [J - 1 + k, P + 1], oldest first
        # Output hop t reads X_{t-j} (row J - 1 + t - j of the line) times H_j.
        rows = (n_parts - 1) + np.arange(n_hops)[:, None] - np.arange(n_parts)[None, :]  # [k, J]
        wet_spectra = jnp.einsum("tjf,jf->tf", line[rows], ir_spectra)  # [k, P + 1]
        wet = jnp.fft.irfft(wet_spectra, n=2 * hop_size, axis=1)[:, hop_size:].reshape(-1)
        out = audio + wet if add_dry else wet
    kept = line[line.shape[0] - (n_parts - 1) :]
    return ReverbState(hops[-1], jnp.stack([kept.real, kept.imag], axis=-1)), out


def oscillator_delay_init(*, hop_size: int, latency_samples: int) -> DelayState:
    """The delay line that makes an oscillator's block form (one hop behind) trail by ``latency_samples``."""
    minimum = OSCILLATOR_LATENCY_FRAMES * hop_size
    if latency_samples < minimum:
        raise ValueError(
            f"latency_samples must be at least an oscillator's {minimum} samples (one hop), got {latency_samples}"
        )
    return delay_init(latency_samples - minimum)
