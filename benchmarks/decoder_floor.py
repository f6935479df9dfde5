"""How fast the decoder's forward+backward can be on this machine: its FLOPs against the rate of a plain matrix product.

Usage::

    PYTHONPATH=. python benchmarks/decoder_floor.py [--batch 8] [--frames 1000] [--dtypes float32 bfloat16]

Prints, for our default decoder (``linear``: one input layer, folded into the GRU's input gates) and magenta's
architecture (``rnn_fc``: an MLP per input, their skip into the output MLP), the multiply-adds of one forward pass
counted from the layer sizes, the forward+backward FLOPs (3x the forward: the backward pass does a product for the
inputs' gradient and one for the weights'), the measured time of a jitted ``jax.grad`` of the decoder alone, and the
time those FLOPs would take at the rate XLA reaches on one large ``[batch * frames, 512] x [512, 1536]`` product on
this machine (the floor: no decoder can do its products faster than the machine's best product). XLA's own
``cost_analysis`` is not used for the count: it counts a ``while`` loop's body once, not once per step.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ddsp_core.model import build_autoencoder
from train.config import DEFAULT_PROCESSORS


def _best_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - start) * 1e3)
    return min(times), statistics.median(times)


def forward_macs_per_frame(decoder: str, hidden: int, n_out: int, n_layers: int = 3) -> int:
    """Multiply-adds of one frame's forward pass (matrix products only; biases and norms are negligible)."""
    gru = 3 * hidden * hidden  # recurrent product
    if decoder == "linear":
        return 2 * 3 * hidden + gru + n_layers * hidden * hidden + hidden * n_out  # folded input, GRU, MLP, head
    inputs = 2 * (hidden + (n_layers - 1) * hidden * hidden)  # two input stacks (the first layer reads 1 value)
    gru_in = 2 * hidden * 3 * hidden  # input gates from the two stacks' outputs
    out_stack = 3 * hidden * hidden + (n_layers - 1) * hidden * hidden  # reads [h_f, h_l, gru]
    return inputs + gru_in + gru + out_stack + hidden * n_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    rows = args.batch * args.frames
    a, w = jnp.ones((rows, 512)), jnp.ones((512, 1536))
    rates = {}
    for dtype in args.dtypes:
        product = jax.jit(
            lambda a, w, d=dtype: jnp.matmul(a.astype(d), w.astype(d), preferred_element_type=jnp.float32)
        )
        best, _ = _best_ms(lambda product=product: product(a, w), args.repeats * 2)
        rates[dtype] = 2 * rows * 512 * 1536 / best / 1e6  # GFLOP/s
        print(f"product [{rows}, 512] x [512, 1536], {dtype} operands: {best:.1f} ms, {rates[dtype]:.0f} GFLOP/s")
    f0 = jnp.full((args.batch, args.frames), 440.0)
    loudness = jnp.full((args.batch, args.frames), -30.0)
    print("| decoder | operands | forward GFLOP | fwd+bwd GFLOP | fwd+bwd ms (best / median) | achieved GFLOP/s | "
          "floor ms at the product's rate |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for decoder in ("linear", "rnn_fc"):
        for dtype in args.dtypes:
            model = build_autoencoder(DEFAULT_PROCESSORS, decoder=decoder, decoder_dtype=dtype, key=jax.random.key(0))
            params, static = eqx.partition(model.decoder, eqx.is_inexact_array)
            n_out = sum(size for _, size in model.decoder.output_splits)

            def loss(params, f0, loudness, static=static):
                outputs = jax.vmap(eqx.combine(params, static))(f0, loudness)
                return sum(jnp.sum(jnp.square(value)) for value in outputs.values())

            grad = jax.jit(jax.grad(loss))
            best, median = _best_ms(lambda grad=grad, params=params: grad(params, f0, loudness), args.repeats)
            forward = 2 * forward_macs_per_frame(decoder, 512, n_out) * rows / 1e9
            total = 3 * forward
            print(f"| {decoder} | {dtype} | {forward:.1f} | {total:.1f} | {best:.0f} / {median:.0f} | "
                  f"{total / best * 1e3:.0f} | {total / rates[dtype] * 1e3:.0f} |")


if __name__ == "__main__":
    main()
