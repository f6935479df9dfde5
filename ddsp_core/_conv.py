"""1-D convolution of channels-last signals by three algorithms: direct, through the DFT, and as a Toeplitz matmul.

All three compute the deep-learning "convolution" (a cross-correlation),
``y[n, w, o] = sum_{k, c} x_pad[n, w * stride + k, c] kernel[k, c, o]``, on ``[n, width, c_in]`` inputs with
``[taps, c_in, c_out]`` kernels (``NWC``/``WIO``), accumulating in float32. :func:`conv1d` picks one per layer;
:func:`ddsp_core.crepe.crepe_activations` runs CREPE's six layers through it (its ``conv=`` argument).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

__all__ = ["ConvAlgorithm", "conv1d", "dft_conv1d", "direct_conv1d", "toeplitz_conv1d"]

ConvAlgorithm = Literal["auto", "direct"]
"""``"auto"``: stride-1 layers as dense matmuls (DFT or Toeplitz); ``"direct"``: :func:`direct_conv1d` always."""

_IM2COL_MAX_PATCH = 1 << 20
"""Largest per-frame patch tensor (output width x kernel taps x input channels) built for an im2col convolution."""

_TOEPLITZ_MAX_WIDTH = 16
"""``algorithm="auto"``: stride-1 layers with inputs at most this wide run as one Toeplitz matmul, wider ones via
the DFT."""


def conv1d(
    x: Float[Array, "n width c_in"],
    kernel: Float[Array, "taps c_in c_out"],
    stride: int,
    pad: tuple[int, int],
    precision: lax.Precision,
    algorithm: ConvAlgorithm,
) -> Float[Array, "n width_out c_out"]:
    """Convolve with the fastest of the three algorithms for this layer (float32 accumulation).

    ``algorithm="auto"`` runs every stride-1 layer as dense matrix products, which is where CPUs and GPUs are
    fastest, and does fewer multiply-adds than the direct convolution:

    - inputs wider than 16 samples: through the DFT (:func:`dft_conv1d`), 13x fewer multiply-adds for CREPE full's
      1024-channel second layer, which made it 4x faster on a 2-core CPU;
    - narrower inputs: a Toeplitz matmul (:func:`toeplitz_conv1d`), which skips the kernel taps that only ever
      meet padding (with 8 input samples, 49 of the 64 taps).

    Strided layers (CREPE's first: 512 taps, stride 4, one input channel) and ``algorithm="direct"`` use
    :func:`direct_conv1d`. All agree with each other to ~1e-6 of the output's peak in float32.

    Parameters
    ----------
    x
        ``[n, width, c_in]`` signals, channels last.
    kernel
        ``[taps, c_in, c_out]``.
    stride
        Output step in input samples.
    pad
        Zeros added before and after the time axis.
    precision
        ``lax.Precision`` of every matmul/convolution.
    algorithm
        ``"auto"`` or ``"direct"``.

    Returns
    -------
    Float[Array, "n width_out c_out"]
        float32, ``width_out = (width + pad[0] + pad[1] - taps) // stride + 1``.
    """
    if algorithm == "auto" and stride == 1:
        if x.shape[1] <= _TOEPLITZ_MAX_WIDTH:
            return toeplitz_conv1d(x, kernel, pad, precision)
        return dft_conv1d(x, kernel, pad, precision)
    return direct_conv1d(x, kernel, stride, pad, precision)


def direct_conv1d(
    x: Float[Array, "n width c_in"],
    kernel: Float[Array, "taps c_in c_out"],
    stride: int,
    pad: tuple[int, int],
    precision: lax.Precision,
) -> Float[Array, "n width_out c_out"]:
    """The reference convolution: ``lax.conv_general_dilated``, or an im2col gather + one matmul.

    im2col is used where the kernel is wider than the input (there XLA's CPU convolution runs at 1-2 GMAC/s) and
    the patch tensor stays below 2**20 elements per signal.
    """
    taps, c_in = kernel.shape[0], kernel.shape[1]
    width_out = (x.shape[1] + pad[0] + pad[1] - taps) // stride + 1
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
    return jnp.einsum("nwkc,kco->nwo", patches, kernel, precision=precision, preferred_element_type=jnp.float32)


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


def dft_conv1d(
    x: Float[Array, "n width c_in"],
    kernel: Float[Array, "taps c_in c_out"],
    pad: tuple[int, int],
    precision: lax.Precision,
) -> Float[Array, "n width_out c_out"]:
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


def toeplitz_conv1d(
    x: Float[Array, "n width c_in"],
    kernel: Float[Array, "taps c_in c_out"],
    pad: tuple[int, int],
    precision: lax.Precision,
) -> Float[Array, "n width_out c_out"]:
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
