"""The GRU recurrence as one fused Pallas kernel: all frames of a block of sequences in one kernel launch.

Same maths, inputs and outputs as :func:`ddsp_core.gru.gru_recurrence` (``equinox.nn.GRUCell``'s convention, from
precomputed input gates ``a_t = W_ih x_t + b``):

    r_t = sigmoid(a_t^r + W_hr h_{t-1})
    u_t = sigmoid(a_t^u + W_hu h_{t-1})
    n_t = tanh(a_t^n + r_t * (W_hn h_{t-1} + b_hn))
    h_t = n_t + u_t * (h_{t-1} - n_t)

Why a kernel: on a GPU, ``lax.scan`` runs every one of the 1000 steps of a 4 s example as separate launches (a
matrix product and a few element-wise kernels), so a batch-32 training step spends most of its time in launch
latency. Here one program handles ``block_rows`` sequences for every step: it reads the recurrent weight once, keeps
the hidden state in registers across the steps, and writes ``h_t`` and the values the backward pass needs (``r``,
``u``, ``n``, ``W_hn h + b_hn``). The backward pass is :func:`ddsp_core.gru.gru_recurrence`'s own reverse scan over
those saved values (only ``dL/dh`` crosses steps there, the weight gradient is one product after the loop).

Batching: the kernel works on a batch ``[rows, n_frames, 3 hidden]``; :func:`gru_recurrence_pallas` takes ONE
sequence like the rest of ``ddsp_core`` and, under ``jax.vmap``, hands the whole batch to one kernel call
(``jax.custom_batching.custom_vmap``), so the product inside a step is a ``[block_rows, hidden] x [hidden, 3 hidden]``
matrix product rather than ``rows`` matrix-vector products.

Status: tested on CPU in Pallas's interpret mode (same values and gradients as the scan to float32 rounding). It
has not been compiled or timed on a GPU here; ``benchmarks/gpu.sh train`` times it (``--gru-impl pallas``) beside the
scan when a GPU is available. ``interpret`` defaults to True on every platform but GPU.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jaxtyping import Array, Float

from ddsp_core.gru import _recurrence_bwd

__all__ = ["gru_recurrence_pallas"]


def _kernel(
    gates_ref, weight_ref, bias_n_ref, initial_ref, hidden_ref, reset_ref, update_ref, candidate_ref, hidden_n_ref
):
    """One program: ``block_rows`` sequences, every step. Refs are time-major: ``gates_ref`` ``[n_frames, rows,
    3 hidden]``, the outputs ``[n_frames, rows, hidden]``; ``weight_ref`` is ``W_hh^T`` ``[hidden, 3 hidden]``."""
    hidden_size = initial_ref.shape[-1]
    weight = weight_ref[...]  # [hidden, 3 * hidden], read once for all steps
    bias_n = bias_n_ref[...].astype(jnp.float32)  # [1, hidden]

    def step(t, hidden):
        gates_x = gates_ref[t].astype(jnp.float32)  # [rows, 3 * hidden]
        gates_h = jnp.dot(hidden.astype(weight.dtype), weight, preferred_element_type=jnp.float32)
        x_r, x_u, x_n = (gates_x[:, i * hidden_size : (i + 1) * hidden_size] for i in range(3))
        h_r, h_u, h_n = (gates_h[:, i * hidden_size : (i + 1) * hidden_size] for i in range(3))
        reset = jax.nn.sigmoid(x_r + h_r)
        update = jax.nn.sigmoid(x_u + h_u)
        hidden_n = h_n + bias_n
        candidate = jnp.tanh(x_n + reset * hidden_n)
        new_hidden = candidate + update * (hidden - candidate)
        for ref, value in (
            (hidden_ref, new_hidden), (reset_ref, reset), (update_ref, update), (candidate_ref, candidate),
            (hidden_n_ref, hidden_n),
        ):
            ref[t] = value.astype(ref.dtype)
        return new_hidden

    jax.lax.fori_loop(0, gates_ref.shape[0], step, initial_ref[...].astype(jnp.float32))


def _batched_forward(
    weight_hh: Array, bias_n: Array, initial: Array, input_gates: Array, *, matmul_dtype, block_rows: int,
    interpret: bool,
) -> tuple[Array, tuple[Array, Array, Array, Array]]:
    """The kernel over a batch: ``input_gates`` ``[rows, n_frames, 3 hidden]``, ``initial`` ``[rows, hidden]`` ->
    hidden states ``[rows, n_frames, hidden]`` and the saved ``(r, u, n, W_hn h + b_hn)``, each of that shape."""
    rows, n_frames, three_hidden = input_gates.shape
    hidden_size = three_hidden // 3
    block = min(block_rows, rows)
    padded_rows = -(-rows // block) * block
    pad = padded_rows - rows
    gates = jnp.pad(jnp.swapaxes(input_gates, 0, 1), ((0, 0), (0, pad), (0, 0)))  # [n_frames, rows', 3 hidden]
    initial = jnp.pad(initial, ((0, pad), (0, 0)))  # [rows', hidden]
    weight = weight_hh.T.astype(matmul_dtype or weight_hh.dtype)  # [hidden, 3 hidden]
    out_shape = jax.ShapeDtypeStruct((n_frames, padded_rows, hidden_size), input_gates.dtype)
    out_spec = pl.BlockSpec((n_frames, block, hidden_size), lambda i: (0, i, 0))
    outputs = pl.pallas_call(
        _kernel,
        grid=(padded_rows // block,),
        in_specs=[
            pl.BlockSpec((n_frames, block, three_hidden), lambda i: (0, i, 0)),
            pl.BlockSpec((hidden_size, three_hidden), lambda i: (0, 0)),
            pl.BlockSpec((1, hidden_size), lambda i: (0, 0)),
            pl.BlockSpec((block, hidden_size), lambda i: (i, 0)),
        ],
        out_specs=[out_spec] * 5,
        out_shape=[out_shape] * 5,
        interpret=interpret,
        name="gru_recurrence",
    )(gates, weight, bias_n[None, :], initial)
    hidden_states, *saved = (jnp.swapaxes(out[:, :rows], 0, 1) for out in outputs)  # [rows, n_frames, hidden] each
    return hidden_states, tuple(saved)


def _single_forward(matmul_dtype, block_rows: int, interpret: bool):
    """``(weight_hh, bias_n, initial, input_gates) -> (hidden_states, saved)`` for ONE sequence, whose ``vmap`` over
    sequences is one batched kernel call."""
    batched = functools.partial(
        _batched_forward, matmul_dtype=matmul_dtype, block_rows=block_rows, interpret=interpret
    )

    @jax.custom_batching.custom_vmap
    def forward(weight_hh, bias_n, initial, input_gates):
        hidden_states, saved = batched(weight_hh, bias_n, initial[None], input_gates[None])
        return hidden_states[0], tuple(s[0] for s in saved)

    @forward.def_vmap
    def forward_vmap(axis_size, in_batched, weight_hh, bias_n, initial, input_gates):
        weight_batched, bias_batched, initial_batched, gates_batched = in_batched
        if weight_batched or bias_batched:  # several GRUs at once (e.g. vmap over models): one call per GRU
            weights = weight_hh if weight_batched else jnp.broadcast_to(weight_hh, (axis_size, *weight_hh.shape))
            biases = bias_n if bias_batched else jnp.broadcast_to(bias_n, (axis_size, *bias_n.shape))
            initials = initial if initial_batched else jnp.broadcast_to(initial, (axis_size, *initial.shape))
            gates = input_gates if gates_batched else jnp.broadcast_to(input_gates, (axis_size, *input_gates.shape))
            out = jax.lax.map(lambda args: forward(*args), (weights, biases, initials, gates))
            return out, jax.tree.map(lambda _: True, out)
        if not initial_batched:
            initial = jnp.broadcast_to(initial, (axis_size, *initial.shape))
        if not gates_batched:
            input_gates = jnp.broadcast_to(input_gates, (axis_size, *input_gates.shape))
        out = batched(weight_hh, bias_n, initial, input_gates)
        return out, jax.tree.map(lambda _: True, out)

    return forward


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _recurrence(matmul_dtype, block_rows, interpret, weight_hh, bias_n, initial, input_gates):
    return _single_forward(matmul_dtype, block_rows, interpret)(weight_hh, bias_n, initial, input_gates)[0]


def _recurrence_fwd(matmul_dtype, block_rows, interpret, weight_hh, bias_n, initial, input_gates):
    hidden_states, saved = _single_forward(matmul_dtype, block_rows, interpret)(
        weight_hh, bias_n, initial, input_gates
    )
    return hidden_states, (weight_hh, initial, hidden_states, saved)


def _recurrence_backward(matmul_dtype, block_rows, interpret, residuals, d_hidden_states):
    del block_rows, interpret
    return _recurrence_bwd(1, matmul_dtype, residuals, d_hidden_states)


_recurrence.defvjp(_recurrence_fwd, _recurrence_backward)


def gru_recurrence_pallas(
    cell: eqx.nn.GRUCell,
    input_gates: Float[Array, "n_frames three_hidden"],
    *,
    initial: Float[Array, " hidden"] | None = None,
    matmul_dtype: jnp.dtype | str | None = None,
    block_rows: int = 16,
    interpret: bool | None = None,
) -> Float[Array, "n_frames hidden"]:
    """Run the GRU over precomputed input gates with the fused Pallas kernel; returns ``h_1 .. h_T``.

    A drop-in for :func:`ddsp_core.gru.gru_recurrence` (same arguments, same result to float32 rounding, same
    gradients, which come from that function's reverse scan).

    Parameters
    ----------
    cell : equinox.nn.GRUCell
        The GRU's parameters (only ``weight_hh`` and ``bias_n`` are read here).
    input_gates : Float[Array, "n_frames three_hidden"]
        From :func:`ddsp_core.gru.gru_input_gates` or :func:`ddsp_core.gru.linear_then_gru_input_gates`.
    initial : Float[Array, "hidden"] or None
        ``h_0`` (``None``: zeros).
    matmul_dtype : dtype or None
        Operand type of the recurrent product (e.g. ``"bfloat16"``; accumulation and gate maths stay float32).
        ``None``: the weight's own type.
    block_rows : int
        Sequences per kernel program under ``vmap`` (the rows of each step's matrix product).
    interpret : bool or None
        Run the kernel with Pallas's interpreter (``None``: everywhere but on a GPU).

    Returns
    -------
    Float[Array, "n_frames hidden"]
        ``h_t`` for every frame.

    Examples
    --------
    >>> from ddsp_core.gru import gru_input_gates
    >>> cell = eqx.nn.GRUCell(4, 8, key=jax.random.key(0))
    >>> gru_recurrence_pallas(cell, gru_input_gates(cell, jnp.ones((10, 4)))).shape
    (10, 8)
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer, got {block_rows}")
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    bias_n = cell.bias_n if cell.use_bias else jnp.zeros((cell.hidden_size,), input_gates.dtype)
    if initial is None:
        initial = jnp.zeros((cell.hidden_size,), dtype=input_gates.dtype)
    dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)
    return _recurrence(dtype, block_rows, bool(interpret), cell.weight_hh, bias_n, initial, input_gates)
