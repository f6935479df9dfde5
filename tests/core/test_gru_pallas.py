"""Tests for ddsp_core/gru_pallas.py: the fused Pallas GRU kernel (interpret mode on CPU) against the scan."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core.gru import gru_input_gates, gru_recurrence
from ddsp_core.gru_pallas import gru_recurrence_pallas

N_FRAMES, D_IN, HIDDEN, BATCH = 13, 5, 8, 3


@pytest.fixture(scope="module")
def cell_and_inputs() -> tuple[eqx.nn.GRUCell, jax.Array]:
    cell = eqx.nn.GRUCell(D_IN, HIDDEN, key=jax.random.key(1))
    # Large inputs saturate some gates, small ones leave others near 0.5: both regimes are covered.
    inputs = 3.0 * jax.random.normal(jax.random.key(2), (BATCH, N_FRAMES, D_IN))
    return cell, inputs


def _scan(cell, inputs, initial=None):
    return gru_recurrence(cell, gru_input_gates(cell, inputs), initial=initial)


def _pallas(cell, inputs, initial=None, block_rows=2):
    # block_rows 2 with 3 sequences: two kernel programs, the second on a zero-padded row
    return gru_recurrence_pallas(cell, gru_input_gates(cell, inputs), initial=initial, block_rows=block_rows)


def test_kernel_under_vmap_equals_the_scan_including_a_padded_block(cell_and_inputs):
    cell, inputs = cell_and_inputs
    initial = 0.5 * jax.random.normal(jax.random.key(4), (BATCH, HIDDEN))
    expected = jax.vmap(lambda x, h: _scan(cell, x, h))(inputs, initial)
    got = jax.jit(jax.vmap(lambda x, h: _pallas(cell, x, h)))(inputs, initial)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_one_sequence_without_vmap_equals_the_scan(cell_and_inputs):
    cell, inputs = cell_and_inputs
    np.testing.assert_allclose(_pallas(cell, inputs[0]), _scan(cell, inputs[0]), rtol=1e-5, atol=1e-6)


def test_gradients_equal_the_scan_for_every_parameter_input_and_initial_state(cell_and_inputs):
    cell, inputs = cell_and_inputs
    initial = 0.5 * jax.random.normal(jax.random.key(4), (BATCH, HIDDEN))
    weights = jax.random.normal(jax.random.key(3), (BATCH, N_FRAMES, HIDDEN))

    def loss(run, cell, inputs, initial):
        return jnp.sum(weights * jnp.tanh(jax.vmap(lambda x, h: run(cell, x, h))(inputs, initial)))

    grad = jax.grad(loss, argnums=(1, 2, 3))
    expected = grad(_scan, cell, inputs, initial)
    got = jax.jit(grad, static_argnums=0)(_pallas, cell, inputs, initial)
    for got_leaf, expected_leaf in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert float(jnp.max(jnp.abs(expected_leaf))) > 0.0
        np.testing.assert_allclose(got_leaf, expected_leaf, rtol=1e-4, atol=1e-6)


def test_bfloat16_products_equal_the_scan_with_bfloat16_products(cell_and_inputs):
    cell, inputs = cell_and_inputs
    gates = jax.vmap(lambda x: gru_input_gates(cell, x))(inputs)
    expected = jax.vmap(lambda g: gru_recurrence(cell, g, matmul_dtype="bfloat16"))(gates)
    got = jax.vmap(lambda g: gru_recurrence_pallas(cell, g, matmul_dtype="bfloat16", block_rows=4))(gates)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # and bfloat16 operands do change the result, so the comparison above is not float32 against float32
    assert float(jnp.max(jnp.abs(expected - jax.vmap(lambda g: gru_recurrence(cell, g))(gates)))) > 1e-4


def test_block_rows_must_be_positive(cell_and_inputs):
    cell, inputs = cell_and_inputs
    with pytest.raises(ValueError, match="block_rows"):
        _pallas(cell, inputs[0], block_rows=0)
