"""Time one DDSP training step through the pure path and the datarax path, side by side.

A step is: decoder (GRU scan + MLP) -> harmonic synth + filtered noise -> reverb -> multi-scale spectral loss ->
gradients -> clip + Adam update, jitted, on a fixed batch of random features and audio (the timing does not depend on
the values). The decoder GRU is also timed alone (forward + backward) for each ``--unroll`` value, which is where the
scan cost shows.

Usage::

    python benchmarks/train_step.py                      # batch 8 x 4 s (a CPU-sized run)
    python benchmarks/train_step.py --batch 32           # the seed configuration (GPU machines)
    python benchmarks/train_step.py --unroll 1 4 --paths            # decoder and GRU only (hoisted vs per-step)
    python benchmarks/train_step.py --gru-impl scan pallas --decoder-dtype float32 bfloat16 --paths pure
        # the fused Pallas GRU (ddsp_core.gru_pallas; interpreted, so slow, off a GPU) and the bfloat16 decoder

Prints one table: path, GRU unroll, ms per step (median of ``--steps`` timed calls after one warm-up), compile time.
"""

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from ddsp_core.decoder import gru_over_frames
from ddsp_core.model import build_autoencoder, reconstruction_loss
from train import parallel
from train.config import DEFAULT_PROCESSORS as PAPER_PROCESSORS


def _time_calls(fn: Callable[[], object], steps: int) -> tuple[float, float]:
    """(compile + first call seconds, median ms of ``steps`` further calls)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - start) * 1e3)
    return first, statistics.median(times)


def _make_step(
    loss_of: Callable, params: object, batch: tuple[jax.Array, ...], mesh: Mesh
) -> Callable[[], object]:
    """A jitted clip(3.0) + Adam(3e-4) step over the inexact leaves of ``params``, and a closure that calls it.

    The batch is an ARGUMENT of the jitted step: closed-over arrays would become compile-time constants, and XLA
    would constant-fold the f0-dependent phase accumulation (slow to compile and not what training runs). It is
    split over the mesh's devices along the batch axis, the parameters and optimiser state are replicated (as
    ``train.fit`` places them).
    """
    trainable, static = eqx.partition(params, eqx.is_inexact_array)
    optimizer = optax.chain(optax.clip_by_global_norm(3.0), optax.adam(3e-4))
    trainable = jax.device_put(trainable, parallel.replicated(mesh))
    opt_state = jax.device_put(optimizer.init(trainable), parallel.replicated(mesh))
    batch = jax.device_put(batch, parallel.batch_sharding(mesh))

    @jax.jit
    def step(trainable, opt_state, key, batch):
        loss, grads = jax.value_and_grad(lambda t: loss_of(eqx.combine(t, static), batch, key))(trainable)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss

    key = jax.random.key(0)
    return lambda: step(trainable, opt_state, key, batch)


def _gru_in_cell_steps(cell: eqx.nn.GRUCell, inputs: jax.Array, *, unroll: int) -> jax.Array:
    """The straightforward port: ``eqx.nn.GRUCell`` per step, its input projection inside the scan."""
    step = lambda h, x: (cell(x, h), cell(x, h))  # noqa: E731  (XLA CSEs the duplicate call)
    return jax.lax.scan(step, jnp.zeros(cell.hidden_size, inputs.dtype), inputs, unroll=unroll)[1]


def _time_gru_only(cell: eqx.nn.GRUCell, inputs: jax.Array, unroll: int, steps: int) -> list[tuple]:
    """GRU alone (forward + backward), hoisted input projection vs per-step cell, batch via vmap."""
    rows = []
    for name, run in (("GRU only, hoisted input", gru_over_frames), ("GRU only, per-step cell", _gru_in_cell_steps)):
        grad = eqx.filter_jit(
            eqx.filter_grad(lambda c, x, run=run: jnp.sum(jax.vmap(lambda s: run(c, s, unroll=unroll))(x)))
        )
        compile_s, ms = _time_calls(lambda grad=grad: grad(cell, inputs), steps)
        rows.append((name, unroll, ms, compile_s))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="examples per step (seed config: 32)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length per example")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    parser.add_argument("--unroll", type=int, nargs="+", default=[1, 8], help="GRU lax.scan unroll values to time")
    parser.add_argument("--paths", nargs="*", default=["pure", "datarax"], choices=["pure", "datarax"], help="none: GRU only")
    parser.add_argument("--skip-gru", action="store_true", help="do not time the GRU alone")
    parser.add_argument("--gru-impl", nargs="+", default=["scan"], choices=["scan", "pallas"],
                        help="decoder GRU implementations to time (pallas: one fused kernel; unroll is scan-only)")
    parser.add_argument("--decoder-dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                        help="decoder matrix-product precisions to time (bfloat16: mixed precision)")
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="split the batch over this many devices (data parallel, as training does); on a CPU-only machine the "
        "CPU is presented as this many devices (default: the CPU cores, as `python -m train` does; 1: no split)",
    )
    args = parser.parse_args(argv)
    devices = parallel.use_cpu_cores_as_devices(args.devices)
    mesh = Mesh(np.array(jax.devices()[:devices]), (parallel.DATA_AXIS,))
    parallel.check_batch_size(args.batch, mesh)

    sample_rate, hop_size = 16000, 64
    n_frames = int(args.seconds * sample_rate) // hop_size
    n_samples = n_frames * hop_size
    key_f0, key_ld, key_audio = jax.random.split(jax.random.key(1), 3)
    f0_hz = jax.random.uniform(key_f0, (args.batch, n_frames), minval=80.0, maxval=800.0)
    loudness_db = jax.random.uniform(key_ld, (args.batch, n_frames), minval=-80.0, maxval=0.0)
    audio = jax.random.uniform(key_audio, (args.batch, n_samples), minval=-0.5, maxval=0.5)
    batch = (audio, f0_hz, loudness_db)

    print(
        f"device: {devices} x {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    print(
        f"batch {args.batch} x {n_samples} samples ({n_frames} frames), 100 harmonics, 65 noise bands, IR 16000, "
        f"float32 synthesis and loss, {args.steps} timed steps after warm-up"
    )
    rows = []
    variants = [
        (unroll, impl, dtype)
        for impl in args.gru_impl
        for dtype in args.decoder_dtype
        for unroll in (args.unroll if impl == "scan" else args.unroll[:1])
    ]
    for unroll, impl, dtype in variants:
        model = build_autoencoder(
            PAPER_PROCESSORS, scan_unroll=unroll, gru_impl=impl, decoder_dtype=dtype, key=jax.random.key(0)
        )
        variant = "" if (impl, dtype) == ("scan", "float32") else f" ({impl} GRU, {dtype})"
        unroll_label = unroll if impl == "scan" else "-"
        if not args.skip_gru:
            decoder = model.decoder
            gru_grad = eqx.filter_jit(
                eqx.filter_grad(lambda d, f, l: sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(jax.vmap(d)(f, l))))
            )
            compile_s, ms = _time_calls(lambda: gru_grad(decoder, f0_hz, loudness_db), args.steps)
            rows.append((f"decoder fwd+bwd only{variant}", unroll_label, ms, compile_s))
            if not variant:
                gru_inputs = jax.random.normal(jax.random.key(2), (args.batch, n_frames, decoder.hidden_size))
                rows.extend(_time_gru_only(decoder.gru, gru_inputs, unroll, args.steps))
        for path in args.paths:
            if path == "pure":
                run = _make_step(lambda m, b, k: reconstruction_loss(m, *b, key=k), model, batch, mesh)
            else:
                from flax import nnx  # the datarax path only, so the pure path runs where datarax is not installed

                from ddsp_datarax.pipeline import make_datarax_loss

                loss_fn, params = make_datarax_loss(model, rngs=nnx.Rngs(0))
                run = _make_step(lambda p, b, k: loss_fn(p, *b, key=k), params, batch, mesh)
            compile_s, ms = _time_calls(run, args.steps)
            rows.append((f"train step, {path} path{variant}", unroll_label, ms, compile_s))
            print(f"  ... {rows[-1][0]}, unroll {unroll_label}: {ms:.1f} ms", flush=True)

    print()
    width = max(30, *(len(row[0]) for row in rows)) if rows else 30
    print(f"{'what':<{width}} {'unroll':>6} {'ms/step':>10} {'compile+1st (s)':>16}")
    for what, unroll, ms, compile_s in rows:
        print(f"{what:<{width}} {unroll!s:>6} {ms:>10.1f} {compile_s:>16.1f}")


if __name__ == "__main__":
    main()
