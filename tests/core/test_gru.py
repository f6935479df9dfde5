"""Tests for ddsp_core/gru.py: the GRU recurrence with its hand-written backward pass, and the folded input gates."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core.gru import gru_input_gates, gru_recurrence, linear_then_gru_input_gates

N_FRAMES, D_IN, HIDDEN = 23, 5, 7


def _stepped_equinox(cell: eqx.nn.GRUCell, inputs: jax.Array) -> jax.Array:
    """The reference: ``equinox.nn.GRUCell`` stepped by ``lax.scan``, differentiated by JAX."""

    def step(hidden, x):
        hidden = cell(x, hidden)
        return hidden, hidden

    return jax.lax.scan(step, jnp.zeros(cell.hidden_size), inputs)[1]


def _ours(cell: eqx.nn.GRUCell, inputs: jax.Array, unroll: int = 1) -> jax.Array:
    return gru_recurrence(cell, gru_input_gates(cell, inputs), unroll=unroll)


@pytest.fixture(scope="module")
def cell_and_inputs() -> tuple[eqx.nn.GRUCell, jax.Array]:
    cell = eqx.nn.GRUCell(D_IN, HIDDEN, key=jax.random.key(1))
    # Large inputs drive gates into saturation somewhere, small ones leave them near 0.5: both regimes are covered.
    inputs = 3.0 * jax.random.normal(jax.random.key(2), (3, N_FRAMES, D_IN))
    return cell, inputs


@pytest.mark.parametrize("unroll", [1, 4])
def test_recurrence_equals_stepping_equinox_grucell(cell_and_inputs, unroll):
    cell, inputs = cell_and_inputs
    expected = jax.vmap(lambda x: _stepped_equinox(cell, x))(inputs)
    got = jax.jit(jax.vmap(lambda x: _ours(cell, x, unroll)))(inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_bias", [True, False])
def test_gradients_equal_automatic_differentiation_of_the_stepped_cell(cell_and_inputs, use_bias):
    """Every parameter's and every input's gradient, batched with vmap, for a loss that weighs each step."""
    cell, inputs = cell_and_inputs
    if not use_bias:
        cell = eqx.nn.GRUCell(D_IN, HIDDEN, use_bias=False, key=jax.random.key(1))
    weights = jax.random.normal(jax.random.key(3), (3, N_FRAMES, HIDDEN))

    def loss(run, cell, inputs):
        return jnp.sum(weights * jnp.tanh(jax.vmap(lambda x: run(cell, x))(inputs)))

    expected_cell, expected_inputs = jax.grad(loss, argnums=(1, 2))(_stepped_equinox, cell, inputs)
    got_cell, got_inputs = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)(_ours, cell, inputs)
    np.testing.assert_allclose(got_inputs, expected_inputs, rtol=1e-4, atol=1e-6)
    for name in ("weight_ih", "weight_hh", "bias", "bias_n"):
        expected = getattr(expected_cell, name)
        if expected is None:
            assert getattr(got_cell, name) is None
            continue
        got = getattr(got_cell, name)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()), err_msg=name)


def test_folded_linear_and_input_gates_equal_the_two_products(cell_and_inputs):
    cell, _ = cell_and_inputs
    layer = eqx.nn.Linear(2, D_IN, key=jax.random.key(4))
    features = jax.random.normal(jax.random.key(5), (N_FRAMES, 2))
    expected = gru_input_gates(cell, jax.vmap(layer)(features))
    np.testing.assert_allclose(linear_then_gru_input_gates(layer, cell, features), expected, rtol=1e-5, atol=1e-6)

    def loss(gates_fn, layer, cell):
        return jnp.sum(jnp.sin(gates_fn(layer, cell)))

    folded = jax.grad(loss, argnums=(1, 2))(lambda l, c: linear_then_gru_input_gates(l, c, features), layer, cell)
    separate = jax.grad(loss, argnums=(1, 2))(lambda l, c: gru_input_gates(c, jax.vmap(l)(features)), layer, cell)
    for got, expected in zip(jax.tree.leaves(folded), jax.tree.leaves(separate)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_gradient_through_a_given_initial_state_equals_automatic_differentiation(cell_and_inputs):
    """Streaming hands one block's last state to the next: its gradient must flow like the stepped cell's."""
    cell, inputs = cell_and_inputs
    initial = jnp.tanh(jax.random.normal(jax.random.key(6), (HIDDEN,)))

    def stepped(cell, h0, x):
        return jax.lax.scan(lambda h, xt: (cell(xt, h), cell(xt, h)), h0, x)[1]

    def loss(run, cell, h0):
        return jnp.sum(jnp.sin(run(cell, h0, inputs[0])))

    ours = lambda c, h0, x: gru_recurrence(c, gru_input_gates(c, x), initial=h0)  # noqa: E731
    np.testing.assert_allclose(ours(cell, initial, inputs[0]), stepped(cell, initial, inputs[0]), rtol=1e-5, atol=1e-6)
    expected = jax.grad(loss, argnums=(1, 2))(stepped, cell, initial)
    got = jax.grad(loss, argnums=(1, 2))(ours, cell, initial)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_bfloat16_products_keep_the_custom_gradient_equal_to_automatic_differentiation(cell_and_inputs):
    """Mixed precision: the recurrence with bfloat16 operands against ``jax.grad`` of a scan of the same steps."""
    from ddsp_core.gru import _step

    cell, inputs = cell_and_inputs
    gates = gru_input_gates(cell, inputs[0])
    bias_n = cell.bias_n

    def reference(weight_hh, gates):
        step = lambda h, g: (_step(weight_hh, bias_n, h, g, jnp.dtype("bfloat16"))[0],) * 2  # noqa: E731
        return jax.lax.scan(step, jnp.zeros(HIDDEN), gates)[1]

    def ours(weight_hh, gates):
        return gru_recurrence(eqx.tree_at(lambda c: c.weight_hh, cell, weight_hh), gates, matmul_dtype="bfloat16")

    def loss(run, weight_hh, gates):
        return jnp.sum(jnp.sin(run(weight_hh, gates)))

    got_values, expected_values = ours(cell.weight_hh, gates), reference(cell.weight_hh, gates)
    assert got_values.dtype == jnp.float32
    np.testing.assert_allclose(got_values, expected_values, rtol=1e-5, atol=1e-6)
    # bfloat16 operands round the products to about 3 significant digits: close to, but not equal to, float32
    float32 = gru_recurrence(cell, gates)
    assert 1e-4 < float(jnp.max(jnp.abs(got_values - float32))) < 5e-2
    got = jax.grad(loss, argnums=(1, 2))(ours, cell.weight_hh, gates)
    expected = jax.grad(loss, argnums=(1, 2))(reference, cell.weight_hh, gates)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == jnp.float32
        assert float(jnp.linalg.norm(g - e) / jnp.linalg.norm(e)) < 2e-2
