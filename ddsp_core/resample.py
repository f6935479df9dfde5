"""Band-limited resampling between any two integer sample rates, inside ``jit`` and ``vmap``.

A polyphase Kaiser-windowed sinc filter evaluated with ``lax.map``, so it runs on device in traced code (soxr and
resampy are host-side numpy only). :func:`ddsp_core.crepe.resample_to_crepe_rate` is this with a 16 kHz target.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from ddsp_core._checks import check_positive_int
from ddsp_core._typing import AnyArray

__all__ = ["resample", "resampled_length"]

_ZERO_CROSSINGS = 24
"""Zero crossings of the windowed sinc on each side of its centre."""
_KAISER_BETA = 10.0
_CUTOFF = 0.94
"""Pass-band edge as a fraction of the lower of the two Nyquist frequencies."""
_BLOCK_SAMPLES = 8192
"""Output samples computed per ``lax.map`` step (bounds memory on long audio)."""


def _polyphase_filter(sample_rate: int, target_sample_rate: int) -> tuple[int, int, int, np.ndarray]:
    """Polyphase table for ``sample_rate -> target_sample_rate``: (up, down, half_width, taps[up, 2 half_width])."""
    common = math.gcd(sample_rate, target_sample_rate)
    up, down = target_sample_rate // common, sample_rate // common
    cutoff = _CUTOFF * min(1.0, up / down)  # of the input Nyquist
    half_width = math.ceil(_ZERO_CROSSINGS / cutoff)
    offsets = np.arange(-half_width + 1, half_width + 1)[None, :] - np.arange(up)[:, None] / up  # [phase, tap]
    kaiser = np.i0(_KAISER_BETA * np.sqrt(np.clip(1 - (offsets / half_width) ** 2, 0, 1))) / np.i0(_KAISER_BETA)
    taps = cutoff * np.sinc(cutoff * offsets) * kaiser
    taps /= taps.sum(axis=1, keepdims=True)
    return up, down, half_width, taps.astype(np.float32)


def resampled_length(n_samples: int, *, sample_rate: int, target_sample_rate: int) -> int:
    """Samples :func:`resample` returns: ``ceil(n_samples * target_sample_rate / sample_rate)``.

    Examples
    --------
    >>> resampled_length(44100, sample_rate=44100, target_sample_rate=16000)
    16000
    """
    check_positive_int(sample_rate=sample_rate, target_sample_rate=target_sample_rate)
    return -(-n_samples * target_sample_rate // sample_rate)


def resample(
    audio: Float[AnyArray, " n_samples"], *, sample_rate: int, target_sample_rate: int
) -> Float[Array, " n_out"]:
    """Resample audio from ``sample_rate`` to ``target_sample_rate`` with a polyphase Kaiser-windowed sinc filter.

    Output sample ``n`` sits at input time ``tau = n * sample_rate / target_sample_rate`` and is
    ``sum_k x[k] h(k - tau)``, ``h(t) = fc sinc(fc t) kaiser(t / W, beta=10)``, ``fc = 0.94 min(1,
    target_sample_rate / sample_rate)`` of the input Nyquist, 24 zero crossings each side (``W = ceil(24 / fc)``
    input samples), each of the ``up`` phases (``target_sample_rate / gcd``) normalised to unit DC gain; zeros
    outside the signal. The stop-band is ~-90 dB: tones resampled between 44.1/48/22.05/16/8 kHz agree with
    ``soxr``'s "VHQ" to ~1e-5 (the tests allow 1e-4). Memory is bounded by computing output in blocks of 8192
    samples.

    Parameters
    ----------
    audio
        ``(n_samples,)`` audio at ``sample_rate``; batches through ``jax.vmap``.
    sample_rate, target_sample_rate
        Input and output rates in Hz, positive Python ints (they fix the filter, so they are not traced). Equal
        rates return the audio unchanged.

    Returns
    -------
    Float[Array, "n_out"]
        :func:`resampled_length` samples at ``target_sample_rate``.

    Raises
    ------
    ValueError
        A rate that is not a positive integer.

    Examples
    --------
    >>> t = jnp.arange(4410) / 44100
    >>> resample(jnp.sin(2 * jnp.pi * 440 * t), sample_rate=44100, target_sample_rate=16000).shape
    (1600,)
    """
    n_out = resampled_length(audio.shape[0], sample_rate=sample_rate, target_sample_rate=target_sample_rate)
    audio = jnp.asarray(audio, jnp.float32)
    if sample_rate == target_sample_rate:
        return audio
    with jax.named_scope("resample"):
        up, down, half_width, taps = _polyphase_filter(sample_rate, target_sample_rate)
        padded = jnp.pad(audio, (half_width, half_width + 1))
        taps = jnp.asarray(taps)
        tap_index = jnp.arange(2 * half_width)

        def one_sample(n: Int[Array, ""]) -> Float[Array, ""]:
            # tau = n * down / up, split to stay inside int32 for hours of audio
            q, r = n // up, n % up
            base = q * down + (r * down) // up
            phase = (r * down) % up
            return jnp.dot(padded[base + 1 + tap_index], taps[phase], precision=lax.Precision.HIGHEST)

        return lax.map(one_sample, jnp.arange(n_out), batch_size=min(n_out, _BLOCK_SAMPLES))
