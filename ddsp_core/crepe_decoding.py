"""Decoding CREPE's 360 bin activations into pitch: local weighted average, Viterbi smoothing, voicing gates.

As the original marl/crepe (which magenta ddsp's ``compute_f0`` calls): f0 is the activation-weighted mean of the
cents of the +-4 bins around the argmax bin (:func:`decode_local_average`), or around the bin of the most likely
Viterbi path through the per-frame argmax bins (:func:`decode_viterbi`); confidence is the largest activation of the
frame. Bin ``i`` sits at ``1997.3794 + 20 i`` cents above 10 Hz (31.70 Hz to 2005.5 Hz, :func:`bin_cents`).

Every function works on ONE example (``(n_frames, 360)`` activations); batches come from ``jax.vmap``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from ddsp_core._crepe_architecture import CENTS_OFFSET, CENTS_PER_BIN, N_BINS
from ddsp_core._typing import AnyArray

__all__ = [
    "VOICED_CONFIDENCE",
    "bin_cents",
    "decode_local_average",
    "decode_viterbi",
    "gate_by_confidence",
    "gate_by_loudness",
]

VOICED_CONFIDENCE = 0.5
"""CREPE confidence at and above which a frame counts as voiced (marl/crepe's plots; torchcrepe's examples use
0.21). The default threshold of :func:`gate_by_confidence`."""
_LOCAL_HALF_WIDTH = 4
"""The local average uses bins argmax-4 .. argmax+4."""
_VITERBI_SELF_EMISSION = 0.1
_VITERBI_MAX_JUMP = 12


def bin_cents() -> Float[Array, " 360"]:
    """Cents above 10 Hz of each of the 360 bins: ``1997.3794084376191 + 20 * i`` (marl/crepe ``cents_mapping``).

    ``f_hz = 10 * 2 ** (cents / 1200)``: bin 0 is 31.70 Hz, bin 359 is 2005.5 Hz.

    Examples
    --------
    >>> cents = bin_cents()
    >>> round(float(10 * 2 ** (cents[0] / 1200)), 2), round(float(10 * 2 ** (cents[-1] / 1200)), 1)
    (31.7, 2005.5)
    """
    return jnp.asarray(CENTS_OFFSET + CENTS_PER_BIN * np.arange(N_BINS), jnp.float32)


def _cents_to_hz(cents: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    return 10.0 * 2.0 ** (cents / 1200.0)


def _local_average_cents(
    activations: Float[Array, "n_frames 360"], center_bin: Int[Array, " n_frames"]
) -> Float[Array, " n_frames"]:
    """Activation-weighted mean of the bin cents over ``center_bin - 4 .. center_bin + 4`` (clipped to 0..359)."""
    near = jnp.abs(jnp.arange(N_BINS)[None, :] - center_bin[:, None]) <= _LOCAL_HALF_WIDTH
    weights = jnp.where(near, activations, 0.0)
    total = jnp.sum(weights, axis=-1)
    cents = jnp.sum(weights * bin_cents(), axis=-1) / jnp.where(total > 0, total, 1.0)
    # all-zero activations near the centre (sigmoid underflow) fall back to the centre bin
    return jnp.where(total > 0, cents, bin_cents()[center_bin])


def decode_local_average(activations: Float[AnyArray, "n_frames 360"]) -> Float[Array, " n_frames"]:
    """f0 of each frame by the local weighted average around the argmax bin (marl/crepe ``to_local_average_cents``).

    ``c = argmax_i a_i``; ``cents = sum_{|i - c| <= 4} a_i cents_i / sum_{|i - c| <= 4} a_i``;
    ``f0_hz = 10 * 2 ** (cents / 1200)``. No fmin/fmax masking; gate unvoiced frames afterwards
    (:func:`gate_by_confidence`). torchcrepe's ``weighted_argmax`` differs (it applies a second sigmoid to the
    activations) and is ~5 cents less accurate.

    Returns
    -------
    Float[Array, "n_frames"]
        f0 in Hz, within 31.70 .. 2005.5 Hz.

    See also
    --------
    decode_viterbi
    """
    activations = jnp.asarray(activations, jnp.float32)
    return _cents_to_hz(_local_average_cents(activations, jnp.argmax(activations, axis=-1)))


def _viterbi_tables() -> tuple[np.ndarray, np.ndarray, float]:
    """log transition (from, to), log emission of (state, observed) when equal / unequal, log start."""
    distance = np.abs(np.arange(N_BINS)[:, None] - np.arange(N_BINS)[None, :])
    transition = np.maximum(_VITERBI_MAX_JUMP - distance, 0).astype(np.float64)
    transition /= transition.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_transition = np.log(transition)
    off = (1.0 - _VITERBI_SELF_EMISSION) / N_BINS
    log_emission = np.log([_VITERBI_SELF_EMISSION + off, off])
    return log_transition.astype(np.float32), log_emission.astype(np.float32), -math.log(N_BINS)


def _viterbi_path(observed: Int[Array, " n_frames"]) -> Int[Array, " n_frames"]:
    log_transition, (log_hit, log_miss), log_start = _viterbi_tables()
    # The transition matrix is banded (|i - j| < 12): each state j only looks at the 23 states i = j - 11 .. j + 11,
    # laid out as band[d, j] = log p(j | j + d - 11) (-inf off the matrix), 16x less work per frame than 360 x 360.
    reach = _VITERBI_MAX_JUMP - 1
    offsets = np.arange(2 * reach + 1)[:, None] - reach  # [23, 1]
    source = np.arange(N_BINS)[None, :] + offsets  # [23, 360]: i = j + d - 11
    inside = (source >= 0) & (source < N_BINS)
    band = np.where(inside, log_transition[np.clip(source, 0, N_BINS - 1), np.arange(N_BINS)[None, :]], -np.inf)
    band = jnp.asarray(band.astype(np.float32))
    states = jnp.arange(N_BINS)

    def emission(obs: Int[Array, ""]) -> Float[Array, " 360"]:
        return jnp.where(states == obs, log_hit, log_miss)

    def forward(score: Float[Array, " 360"], obs: Int[Array, ""]) -> tuple[Float[Array, " 360"], Int[Array, " 360"]]:
        padded = jnp.pad(score, reach, constant_values=-jnp.inf)
        candidates = jnp.stack([padded[d : d + N_BINS] for d in range(2 * reach + 1)]) + band  # [23, 360]
        best = jnp.argmax(candidates, axis=0)  # first maximum = lowest source state, as a full argmax would pick
        best_from = (states + best - reach).astype(jnp.int16)
        return jnp.max(candidates, axis=0) + emission(obs), best_from

    last_score, back_pointers = lax.scan(forward, log_start + emission(observed[0]), observed[1:])

    def backward(state: Int[Array, ""], pointers: Int[Array, " 360"]) -> tuple[Int[Array, ""], Int[Array, ""]]:
        previous = pointers[state].astype(jnp.int32)
        return previous, previous

    last_state = jnp.argmax(last_score).astype(jnp.int32)
    _, earlier = lax.scan(backward, last_state, back_pointers, reverse=True)
    return jnp.concatenate([earlier, last_state[None]])


def decode_viterbi(activations: Float[AnyArray, "n_frames 360"]) -> Float[Array, " n_frames"]:
    """f0 of each frame by Viterbi smoothing of the argmax bins, then the local average around the path bin.

    The marl/crepe ``to_viterbi_cents`` HMM: 360 hidden states (bins), uniform start, transition
    ``p(j | i) ∝ max(12 - |i - j|, 0)`` (at most 11 bins = 220 cents per frame), observations the per-frame argmax
    bin with emission ``p(o | s) = 0.1 [o = s] + 0.9 / 360``. The most likely state path (``lax.scan`` forward with
    back-pointers, then a reverse scan) picks the centre bin of each frame's +-4-bin local average, as in
    :func:`decode_local_average`. Unlike torchcrepe's ``viterbi`` decoder, which returns the 20-cent bin centres,
    this keeps sub-bin resolution.

    Parameters
    ----------
    activations
        ``(n_frames, 360)`` from :func:`crepe_activations`.

    Returns
    -------
    Float[Array, "n_frames"]
        f0 in Hz. Memory: ``2 * 360`` bytes of back-pointers per frame.

    See also
    --------
    decode_local_average
    """
    with jax.named_scope("crepe_decode_viterbi"):
        activations = jnp.asarray(activations, jnp.float32)
        path = _viterbi_path(jnp.argmax(activations, axis=-1).astype(jnp.int32))
        return _cents_to_hz(_local_average_cents(activations, path))


def gate_by_confidence(
    f0_hz: Float[AnyArray, " n_frames"],
    confidence: Float[AnyArray, " n_frames"],
    *,
    threshold: float = VOICED_CONFIDENCE,
    unvoiced_hz: float = 0.0,
) -> Float[Array, " n_frames"]:
    """Set f0 to ``unvoiced_hz`` on frames whose CREPE confidence is below ``threshold``.

    CREPE's confidence (max activation) is near 1 on clear pitched notes and below ~0.3 on noise and silence;
    torchcrepe's examples use 0.21, marl/crepe's plots 0.5 (:data:`VOICED_CONFIDENCE`, the default).
    """
    return jnp.where(jnp.asarray(confidence) >= threshold, jnp.asarray(f0_hz, jnp.float32), unvoiced_hz)


def gate_by_loudness(
    f0_hz: Float[AnyArray, " n_frames"],
    loudness_db: Float[AnyArray, " n_frames"],
    *,
    threshold_db: float = -60.0,
    unvoiced_hz: float = 0.0,
) -> Float[Array, " n_frames"]:
    """Set f0 to ``unvoiced_hz`` on frames quieter than ``threshold_db`` (loudness on the same frame grid)."""
    return jnp.where(jnp.asarray(loudness_db) >= threshold_db, jnp.asarray(f0_hz, jnp.float32), unvoiced_hz)
