"""Tests for ddsp_core/_conv.py: the DFT, Toeplitz and im2col convolutions equal XLA's direct convolution."""

import jax
import jax.numpy as jnp
import pytest

from ddsp_core import _conv


@pytest.mark.parametrize(
    ("width", "taps", "pad", "c_in", "c_out"),
    [(128, 64, (31, 32), 24, 8), (64, 64, (31, 32), 8, 8), (33, 64, (31, 32), 4, 4), (16, 64, (31, 32), 8, 16),
     (8, 64, (31, 32), 8, 16), (5, 3, (1, 1), 2, 3), (40, 7, (0, 0), 3, 2), (9, 4, (2, 1), 2, 2)],
)  # fmt: skip
def test_dft_and_toeplitz_convolutions_match_the_direct_convolution(width, taps, pad, c_in, c_out):
    key_x, key_k = jax.random.split(jax.random.key(width * 1000 + taps))
    x = jax.random.normal(key_x, (3, width, c_in))
    kernel = jax.random.normal(key_k, (taps, c_in, c_out))
    highest = jax.lax.Precision.HIGHEST
    direct = jax.lax.conv_general_dilated(
        x, kernel, (1,), (pad,), dimension_numbers=("NWC", "WIO", "NWC"), precision=highest
    )
    peak = float(jnp.abs(direct).max())
    for fast in (_conv.dft_conv1d, _conv.toeplitz_conv1d):
        out = fast(x, kernel, pad, highest)
        assert out.shape == direct.shape
        error = float(jnp.abs(out - direct).max()) / peak
        assert error < 2e-6, f"{fast.__name__}: {error:.1e} of peak"
        low = fast(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), pad, jax.lax.Precision.DEFAULT)
        assert low.dtype == jnp.float32 and float(jnp.abs(low - direct).max()) / peak < 3e-2


@pytest.mark.parametrize(("width", "taps", "stride", "pad"), [(64, 512, 4, (254, 254)), (100, 128, 2, (10, 20))])
def test_direct_convolution_by_im2col_or_xla_matches_xla(width, taps, stride, pad):
    # a kernel wider than the input takes the im2col gather + matmul instead of XLA's convolution
    key_x, key_k = jax.random.split(jax.random.key(width))
    x = jax.random.normal(key_x, (2, width, 1))
    kernel = jax.random.normal(key_k, (taps, 1, 3))
    highest = jax.lax.Precision.HIGHEST
    expected = jax.lax.conv_general_dilated(
        x, kernel, (stride,), (pad,), dimension_numbers=("NWC", "WIO", "NWC"), precision=highest
    )
    out = _conv.direct_conv1d(x, kernel, stride, pad, highest)
    assert out.shape == expected.shape == (2, (width + sum(pad) - taps) // stride + 1, 3)
    assert float(jnp.abs(out - expected).max()) / float(jnp.abs(expected).max()) < 2e-6
    assert float(jnp.abs(_conv.conv1d(x, kernel, stride, pad, highest, "auto") - out).max()) == 0.0
