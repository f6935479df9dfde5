"""Block-by-block f0 (CREPE) and loudness: the features a live instrument reads from its input.

Both analyses look at a window around each frame's time ``m * hop_size``: loudness an ``n_fft``-point window
(2048 at 16 kHz), CREPE 1024 samples, each centred on the frame (``padding="center"``, as the training features).
A stream cannot read the future, so a frame can be computed only once its window's last sample has arrived. How
far past ``m * hop_size`` the window of frame ``m`` reaches is the *lookahead*; the exact (centred) analysis needs
``window / 2``: 1024 samples for loudness, 512 for CREPE.

:func:`loudness_block` and :func:`crepe_block` compute, for each hop of a block, the window that ends with that
hop. :func:`features_block` labels and aligns them with one ``lookahead_samples`` for both, a whole number of hops:

* **exact** (``lookahead_samples = 1024``, the larger window's half): every frame is the offline frame (the CREPE
  frames wait in a delay line for the loudness ones); the features, hence the instrument, trail the input by
  1024 samples (64 ms at 16 kHz).
* **low latency** (down to one hop): frame ``m`` is computed on windows ending ``lookahead_samples`` after
  ``m * hop_size``, i.e. centred analyses of a point ``window / 2 - lookahead_samples`` earlier: the features lag by
  that much and the output differs from the offline render (measured in ``benchmarks/stream.py``).

State: the last ``window - hop_size`` input samples of each analysis (zeros before the stream starts, which is the
centred framing's zero padding) and the aligning delay lines. Works on one example; batch with ``jax.vmap``.
"""

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from ddsp_core._typing import AnyArray
from ddsp_core.crepe import CREPE_SAMPLE_RATE, FRAME_SIZE, CrepeParams, estimate_f0
from ddsp_core.spectral import compute_loudness
from ddsp_core.stream import DelayState, delay_block, delay_init

__all__ = [
    "FeatureState",
    "WindowState",
    "crepe_block",
    "crepe_init",
    "exact_lookahead",
    "features_block",
    "features_init",
    "features_delay_frames",
    "loudness_block",
    "loudness_init",
]


class WindowState(NamedTuple):
    """The last ``window - hop_size`` input samples (zeros before the stream starts: the centred zero padding)."""

    history: Float[Array, " n_history"]


def exact_lookahead(*, n_fft: int = 2048) -> int:
    """Lookahead of the exact setting of :func:`features_block`: half the larger window, ``max(n_fft, 1024) // 2``."""
    return max(n_fft, FRAME_SIZE) // 2


def features_delay_frames(lookahead_samples: int, hop_size: int) -> int:
    """Frames by which :func:`features_block`'s frames trail the blocks: ``lookahead_samples / hop_size - 1``.

    The ``j``-th frame of the stream is frame ``j - features_delay_frames`` of the input (the first ones are
    computed on the zero history and stand for no input frame).
    """
    return lookahead_samples // hop_size - 1


def _window_init(window: int, hop_size: int) -> WindowState:
    if not 1 <= hop_size <= window:
        raise ValueError(f"hop_size must be in [1, {window}], got {hop_size}")
    return WindowState(jnp.zeros((window - hop_size,), jnp.float32))


def _slide(state: WindowState, audio: AnyArray, *, window: int, hop_size: int) -> tuple[Array, WindowState]:
    """The segment ``[history, audio]`` and the new state (its last ``window - hop_size`` samples).

    With ``k`` hops of audio the segment holds exactly ``k`` windows: window ``j`` is
    ``segment[j * hop_size : j * hop_size + window]``, ending where hop ``j`` of the block ends.
    """
    segment = jnp.concatenate([state.history, jnp.asarray(audio, jnp.float32)])
    return segment, WindowState(segment[segment.shape[0] - (window - hop_size) :])


def loudness_init(*, n_fft: int = 2048, hop_size: int) -> WindowState:
    """Initial state of :func:`loudness_block`."""
    return _window_init(n_fft, hop_size)


def loudness_block(
    state: WindowState,
    audio: Float[AnyArray, " k_hop"],
    *,
    sample_rate: int,
    hop_size: int,
    n_fft: int = 2048,
    ref_db: float = 0.0,
    range_db: float = 80.0,
) -> tuple[WindowState, Float[Array, " k"]]:
    """Block form of :func:`ddsp_core.spectral.compute_loudness` (centred frames): ``k`` hops in, ``k`` frames out.

    Output frame ``j`` of a call whose block starts at hop ``b`` is the loudness of the ``n_fft`` samples ending
    with hop ``b + j``: offline frame ``b + j + 1 - n_fft // (2 * hop_size)``.

    Parameters
    ----------
    state : WindowState
        From :func:`loudness_init` or the previous call.
    audio : array, shape (k * hop_size,)
        The block's input audio.
    sample_rate, hop_size, n_fft, ref_db, range_db
        As in ``compute_loudness`` (``frame_rate = sample_rate / hop_size``).

    Returns
    -------
    state : WindowState
    loudness_db : Array, shape (k,)
    """
    segment, new_state = _slide(state, audio, window=n_fft, hop_size=hop_size)
    loudness_db = compute_loudness(
        segment,
        sample_rate=sample_rate,
        frame_rate=sample_rate // hop_size,
        n_fft=n_fft,
        ref_db=ref_db,
        range_db=range_db,
        padding="valid",
    )
    return new_state, loudness_db


def crepe_init(*, hop_size: int) -> WindowState:
    """Initial state of :func:`crepe_block` (``hop_size`` in 16 kHz samples)."""
    return _window_init(FRAME_SIZE, hop_size)


def crepe_block(
    state: WindowState,
    params: CrepeParams,
    audio: Float[AnyArray, " k_hop"],
    *,
    hop_size: int,
) -> tuple[WindowState, tuple[Float[Array, " k"], Float[Array, " k"]]]:
    """Block form of :func:`ddsp_core.crepe.estimate_f0` (centred frames, local-average decoding).

    Output frame ``j`` of a call whose block starts at hop ``b`` is CREPE on the 1024 samples ending with hop
    ``b + j``: offline frame ``b + j + 1 - 512 // hop_size``. Decoding is
    the local weighted average around the most active bin, frame by frame; offline Viterbi decoding needs the
    whole sequence and cannot stream, so compare with ``estimate_f0(..., decoder="local_average")``.

    Parameters
    ----------
    state : WindowState
        From :func:`crepe_init` or the previous call.
    params : CrepeParams
        CREPE weights.
    audio : array, shape (k * hop_size,)
        The block's audio at 16 kHz.
    hop_size : int
        Samples per frame at 16 kHz.

    Returns
    -------
    state : WindowState
    (f0_hz, confidence) : Arrays, shape (k,)
    """
    segment, new_state = _slide(state, audio, window=FRAME_SIZE, hop_size=hop_size)
    f0_hz, confidence = estimate_f0(
        params, segment, sample_rate=CREPE_SAMPLE_RATE, hop_size=hop_size, padding="valid", decoder="local_average"
    )
    return new_state, (f0_hz, confidence)


class FeatureState(NamedTuple):
    """What :func:`features_block` carries: each analysis's input history and the frames waiting to be aligned."""

    loudness_window: WindowState
    crepe_window: WindowState | None
    loudness_delay: DelayState
    f0_delay: DelayState
    confidence_delay: DelayState


def _analysis_delay(lookahead_samples: int, window: int, hop_size: int) -> int:
    """Frames an analysis waits so that its frames line up with the common lookahead (0 for the larger window)."""
    return (lookahead_samples - min(lookahead_samples, window // 2)) // hop_size


def features_init(
    *, hop_size: int, lookahead_samples: int, n_fft: int = 2048, with_f0: bool = True
) -> FeatureState:
    """Initial state of :func:`features_block`.

    Parameters
    ----------
    hop_size : int
        Samples per frame (at 16 kHz when ``with_f0``).
    lookahead_samples : int
        How far past each frame's time its analyses may read: a whole number of hops from ``hop_size`` (lowest
        latency) to :func:`exact_lookahead` (1024 for the default ``n_fft``: frames equal to the offline ones).
    n_fft : int
        Loudness FFT size (default 2048, the training features').
    with_f0 : bool
        Also run CREPE (False: loudness only, e.g. when f0 comes from MIDI).

    Raises
    ------
    ValueError
        If ``lookahead_samples`` is not a whole number of hops in that range.
    """
    exact = exact_lookahead(n_fft=n_fft)
    if lookahead_samples % hop_size != 0 or not hop_size <= lookahead_samples <= exact:
        raise ValueError(
            f"lookahead_samples must be a whole number of hops ({hop_size} samples) from {hop_size} (lowest latency) "
            f"to {exact} (exact), got {lookahead_samples}"
        )
    crepe_delay = _analysis_delay(lookahead_samples, FRAME_SIZE, hop_size)
    return FeatureState(
        loudness_window=loudness_init(n_fft=n_fft, hop_size=hop_size),
        crepe_window=crepe_init(hop_size=hop_size) if with_f0 else None,
        loudness_delay=delay_init(_analysis_delay(lookahead_samples, n_fft, hop_size)),
        f0_delay=delay_init(crepe_delay if with_f0 else 0),
        confidence_delay=delay_init(crepe_delay if with_f0 else 0),
    )


def features_block(
    state: FeatureState,
    audio: Float[AnyArray, " k_hop"],
    *,
    crepe_params: CrepeParams | None,
    sample_rate: int,
    hop_size: int,
    n_fft: int = 2048,
) -> tuple[FeatureState, dict[str, Float[Array, " k"]]]:
    """f0, confidence and loudness of a block of ``k`` hops, aligned to one lookahead (see the module notes).

    Frame ``j`` of the concatenated stream is input frame ``j - features_delay_frames(lookahead_samples,
    hop_size)``; with the exact lookahead it equals the offline ``compute_loudness`` (centred) and
    ``estimate_f0(padding="center", decoder="local_average")`` of that frame.

    Parameters
    ----------
    state : FeatureState
        From :func:`features_init` or the previous call.
    audio : array, shape (k * hop_size,)
        The block's input audio at ``sample_rate``.
    crepe_params : CrepeParams or None
        CREPE weights; None when the state was made ``with_f0=False``.
    sample_rate : int
        Audio sample rate, Hz; 16000 when f0 is estimated (CREPE's rate).
    hop_size, n_fft
        As given to :func:`features_init`.

    Returns
    -------
    state : FeatureState
    features : dict
        ``"loudness_db"`` and, with f0, ``"f0_hz"`` and ``"f0_confidence"``, each ``(k,)``.
    """
    if state.crepe_window is not None and sample_rate != CREPE_SAMPLE_RATE:
        raise ValueError(f"streaming f0 needs {CREPE_SAMPLE_RATE} Hz audio (CREPE's rate), got {sample_rate} Hz")
    loudness_window, loudness_db = loudness_block(
        state.loudness_window, audio, sample_rate=sample_rate, hop_size=hop_size, n_fft=n_fft
    )
    loudness_delay, loudness_db = delay_block(state.loudness_delay, loudness_db)
    features = {"loudness_db": loudness_db}
    crepe_window, f0_delay, confidence_delay = state.crepe_window, state.f0_delay, state.confidence_delay
    if crepe_window is not None:
        crepe_window, (f0_hz, confidence) = crepe_block(crepe_window, crepe_params, audio, hop_size=hop_size)
        f0_delay, features["f0_hz"] = delay_block(f0_delay, f0_hz)
        confidence_delay, features["f0_confidence"] = delay_block(confidence_delay, confidence)
    return FeatureState(loudness_window, crepe_window, loudness_delay, f0_delay, confidence_delay), features
