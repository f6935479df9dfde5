"""A GRU run over a whole sequence, with a hand-written backward pass that keeps the per-step work minimal.

The maths is that of ``equinox.nn.GRUCell`` (PyTorch convention, reset gate applied after the hidden product), from
a given state ``h_0`` (zeros by default), for ``t = 1 .. T``:

    r_t = sigmoid(a_t^r + W_hr h_{t-1})
    u_t = sigmoid(a_t^u + W_hu h_{t-1})
    n_t = tanh(a_t^n + r_t * (W_hn h_{t-1} + b_hn))
    h_t = n_t + u_t * (h_{t-1} - n_t)

where ``a_t = W_ih x_t + b`` are the *input gates*. They do not depend on the recurrence, so they are one matrix
product over all frames, outside the loop (:func:`gru_input_gates`); when the GRU reads a linear layer's output,
the two products fold into one (:func:`linear_then_gru_input_gates`, ``W_ih (W_1 f + b_1) = (W_ih W_1) f + W_ih
b_1``), which removes a ``hidden x 3 hidden`` product per frame.

Why a custom backward pass (:func:`gru_recurrence`): differentiating ``lax.scan`` accumulates the recurrent weight's
gradient inside the reverse loop, one rank-1 (per example) update of the whole ``hidden x 3 hidden`` matrix per step.
Here the reverse loop only carries ``dL/dh`` and emits the gate gradients of every step; the weight gradient is then
one matrix product over all steps, ``dW_hh = sum_t dG_t^T h_{t-1}``. Same gradient, less work in the sequential part
(tested against automatic differentiation of the plain scan).

Every function works on one sequence; batch with ``jax.vmap``.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["gru_input_gates", "gru_recurrence", "linear_then_gru_input_gates"]


def gru_input_gates(
    cell: eqx.nn.GRUCell, inputs: Float[Array, "n_frames d_in"], matmul_dtype: jnp.dtype | str | None = None
) -> Float[Array, "n_frames three_hidden"]:
    """The input half of every gate for every frame: ``inputs @ W_ih^T + b`` (``[n_frames, 3 * hidden]``).

    Parameters
    ----------
    cell : equinox.nn.GRUCell
        The GRU's parameters.
    inputs : Float[Array, "n_frames d_in"]
        One input vector per frame.
    matmul_dtype : dtype or None
        Operand type of the product (accumulated in float32), e.g. ``"bfloat16"``; ``None``: the inputs' own.

    Returns
    -------
    Float[Array, "n_frames three_hidden"]
        Reset, update and candidate input gates, concatenated in that order (``equinox.nn.GRUCell``'s layout).

    See Also
    --------
    gru_recurrence : runs the GRU on these gates.
    """
    dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)
    gates = _matmul(inputs, cell.weight_ih.T, dtype)  # [n_frames, 3 * hidden]
    return gates + cell.bias if cell.use_bias else gates


def linear_then_gru_input_gates(
    layer: eqx.nn.Linear, cell: eqx.nn.GRUCell, features: Float[Array, "n_frames d_features"]
) -> Float[Array, "n_frames three_hidden"]:
    """:func:`gru_input_gates` of ``layer`` applied to every frame, with the two linear maps folded into one.

    ``W_ih (W_1 f + b_1) + b = (W_ih W_1) f + (W_ih b_1 + b)``: for a layer of ``d_features -> hidden`` the product
    per frame shrinks from ``hidden x 3 hidden`` to ``d_features x 3 hidden`` (2 or 2 + z_dims inputs in the DDSP
    decoder), forward and backward. Equal to ``gru_input_gates(cell, layer(features))`` up to float rounding.

    Parameters
    ----------
    layer : equinox.nn.Linear
        The linear layer before the GRU (``d_features -> hidden``).
    cell : equinox.nn.GRUCell
        The GRU, whose input size is the layer's output size.
    features : Float[Array, "n_frames d_features"]
        The layer's input per frame.

    Returns
    -------
    Float[Array, "n_frames three_hidden"]
        Input gates, as :func:`gru_input_gates`.
    """
    weight = cell.weight_ih @ layer.weight  # [3 * hidden, d_features]
    gates = features @ weight.T  # [n_frames, 3 * hidden]
    offset = cell.weight_ih @ layer.bias if layer.bias is not None else 0.0
    if cell.use_bias:
        offset = offset + cell.bias
    return gates + offset


def gru_recurrence(
    cell: eqx.nn.GRUCell,
    input_gates: Float[Array, "n_frames three_hidden"],
    *,
    unroll: int = 1,
    initial: Float[Array, " hidden"] | None = None,
    matmul_dtype: jnp.dtype | str | None = None,
) -> Float[Array, "n_frames hidden"]:
    """Run the GRU over precomputed input gates; returns every hidden state ``h_1 .. h_T``.

    Parameters
    ----------
    cell : equinox.nn.GRUCell
        The GRU's parameters (only ``weight_hh`` and ``bias_n`` are read here).
    input_gates : Float[Array, "n_frames three_hidden"]
        From :func:`gru_input_gates` or :func:`linear_then_gru_input_gates`.
    unroll : int
        ``lax.scan`` unroll of both loops (a speed knob only; the values are the same).
    initial : Float[Array, "hidden"] or None
        ``h_0``, the state before the first frame (``None``: zeros). Passing the last state of one block as the
        ``initial`` of the next runs a long sequence block by block with the same result (streaming).
    matmul_dtype : dtype or None
        Operand type of the recurrent products, forward and backward (e.g. ``"bfloat16"`` for mixed precision):
        operands are cast to it, products accumulate in float32, and the state and gate maths stay in the gates'
        type. ``None`` (default): plain products in the weight's type.

    Returns
    -------
    Float[Array, "n_frames hidden"]
        ``h_t`` for every frame.

    Notes
    -----
    Differentiable in ``input_gates``, ``initial``, ``weight_hh`` and ``bias_n`` by a custom VJP (see the module
    docstring).
    The forward pass stores ``h``, ``r``, ``u``, ``n`` and ``W_hn h + b_hn`` of every step (5 x n_frames x hidden
    floats per sequence) for the backward pass.

    Examples
    --------
    >>> cell = eqx.nn.GRUCell(4, 8, key=jax.random.key(0))
    >>> gru_recurrence(cell, gru_input_gates(cell, jnp.ones((10, 4)))).shape
    (10, 8)
    """
    bias_n = cell.bias_n if cell.use_bias else jnp.zeros((cell.hidden_size,), input_gates.dtype)
    if initial is None:
        initial = jnp.zeros((cell.hidden_size,), dtype=input_gates.dtype)
    dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)
    return _recurrence(unroll, dtype, cell.weight_hh, bias_n, initial, input_gates)


def _matmul(a: Array, b: Array, matmul_dtype: jnp.dtype | None) -> Array:
    """``a @ b``; with a ``matmul_dtype``, of operands cast to it, accumulated in float32."""
    if matmul_dtype is None:
        return a @ b
    return jnp.matmul(a.astype(matmul_dtype), b.astype(matmul_dtype), preferred_element_type=jnp.float32)


def _step(
    weight_hh: Array, bias_n: Array, hidden: Array, gates_x: Array, matmul_dtype: jnp.dtype | None = None
) -> tuple[Array, tuple[Array, Array, Array, Array]]:
    """One GRU step: ``h_t`` and the values its backward pass needs, ``(r, u, n, W_hn h + b_hn)``."""
    gates_h = _matmul(weight_hh, hidden, matmul_dtype).astype(gates_x.dtype)  # [3 * hidden]
    x_r, x_u, x_n = jnp.split(gates_x, 3)
    h_r, h_u, h_n = jnp.split(gates_h, 3)
    reset = jax.nn.sigmoid(x_r + h_r)
    update = jax.nn.sigmoid(x_u + h_u)
    hidden_n = h_n + bias_n
    candidate = jnp.tanh(x_n + reset * hidden_n)
    new_hidden = candidate + update * (hidden - candidate)
    return new_hidden, (reset, update, candidate, hidden_n)


def _forward(
    unroll: int, matmul_dtype: jnp.dtype | None, weight_hh: Array, bias_n: Array, initial: Array, input_gates: Array
) -> tuple[Array, tuple]:
    weight = weight_hh if matmul_dtype is None else weight_hh.astype(matmul_dtype)  # cast once, not every step

    def step(hidden, gates_x):
        new_hidden, saved = _step(weight, bias_n, hidden, gates_x, matmul_dtype)
        return new_hidden, (new_hidden, *saved)

    _, (hidden_states, *saved) = jax.lax.scan(step, initial, input_gates, unroll=unroll)
    return hidden_states, tuple(saved)  # [n_frames, hidden] and 4 x [n_frames, hidden]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _recurrence(
    unroll: int, matmul_dtype: jnp.dtype | None, weight_hh: Array, bias_n: Array, initial: Array, input_gates: Array
) -> Array:
    return _forward(unroll, matmul_dtype, weight_hh, bias_n, initial, input_gates)[0]


def _recurrence_fwd(
    unroll: int, matmul_dtype: jnp.dtype | None, weight_hh: Array, bias_n: Array, initial: Array, input_gates: Array
) -> tuple[Array, tuple]:
    hidden_states, saved = _forward(unroll, matmul_dtype, weight_hh, bias_n, initial, input_gates)
    return hidden_states, (weight_hh, initial, hidden_states, saved)


def _recurrence_bwd(
    unroll: int, matmul_dtype: jnp.dtype | None, residuals: tuple, d_hidden_states: Array
) -> tuple[Array, Array, Array, Array]:
    """The reverse scan over the saved values (also the backward pass of ``ddsp_core.gru_pallas``)."""
    weight_hh, initial, hidden_states, (reset, update, candidate, hidden_n) = residuals
    previous = jnp.concatenate([initial[None], hidden_states[:-1]])  # h_{t-1}: [n_frames, hidden]
    weight = weight_hh if matmul_dtype is None else weight_hh.astype(matmul_dtype)

    def step(d_hidden, per_step):
        d_out, h_prev, r, u, n, hn = per_step
        d_h = d_hidden + d_out  # dL/dh_t: from the output and from step t + 1
        d_pre_n = d_h * (1.0 - u) * (1.0 - jnp.square(n))  # through n = tanh(pre_n)
        d_pre_r = d_pre_n * hn * r * (1.0 - r)
        d_pre_u = d_h * (h_prev - n) * u * (1.0 - u)
        d_hidden_n = d_pre_n * r  # dL/d(W_hn h + b_hn)
        d_gates_h = jnp.concatenate([d_pre_r, d_pre_u, d_hidden_n])  # [3 * hidden]
        d_gates_x = jnp.concatenate([d_pre_r, d_pre_u, d_pre_n])  # [3 * hidden]
        d_previous = d_h * u + _matmul(d_gates_h, weight, matmul_dtype).astype(d_h.dtype)  # dL/dh_{t-1}
        return d_previous, (d_gates_h, d_gates_x)

    per_step = (d_hidden_states, previous, reset, update, candidate, hidden_n)
    d_initial, (d_gates_h, d_gates_x) = jax.lax.scan(
        step, jnp.zeros_like(initial), per_step, reverse=True, unroll=unroll
    )
    d_weight_hh = _matmul(d_gates_h.T, previous, matmul_dtype).astype(weight_hh.dtype)  # [3 H, H]: one product
    d_bias_n = jnp.sum(jnp.split(d_gates_h, 3, axis=-1)[2], axis=0)  # [hidden]
    return d_weight_hh, d_bias_n, d_initial, d_gates_x


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
