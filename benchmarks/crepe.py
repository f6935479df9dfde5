"""CREPE throughput: ddsp_core.crepe (tiny, full; float32 and bfloat16) beside datarax 0.1.4's CrepeModel.

Usage::

    python benchmarks/crepe.py                      # 8000 frames per model, as in the issue
    python benchmarks/crepe.py --frames 512         # quicker on a small CPU
    python benchmarks/crepe.py --hour-memory        # also XLA's memory estimate for one hour of audio

Prints a table of frames/s (wall clock, best of ``--repeats`` after a warm-up call, compile excluded), with the
CPU time per frame beside it (useful on a shared machine), the time for 4 s of audio (1001 frames, full extractor
with Viterbi) and the max |activation difference| between the peer and ours on the same frames. datarax's
``CrepeModel`` is given the same pretrained weights (its layout, ``(width, in, out)`` kernels, is ours) and run in
eval mode (running batch-norm statistics) under ``nnx.jit``. torchcrepe is timed when importable (it is not a
dependency; install ``torch`` and ``torchcrepe==0.0.24`` in the environment to include it).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from ddsp_core import crepe, crepe_weights


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """Best wall seconds and the CPU seconds of that run, after one warm-up (compile) call."""
    jax.block_until_ready(fn(*args))
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def _ours(params: crepe.CrepeParams, precision: str, conv: str, batch: int):
    @jax.jit
    def run(params, frames):  # params as an argument, not 88 MB of constants folded into the program
        chunks = frames.reshape(-1, batch, crepe.FRAME_SIZE)
        return jax.lax.map(
            lambda f: crepe.crepe_activations(params, f, precision=precision, conv=conv), chunks
        ).reshape(-1, 360)

    return lambda frames: run(params, frames)


def _datarax(model_name: str, batch: int):
    from datarax.operators.modality.audio.crepe_model import CrepeModel
    from flax import nnx

    arrays = crepe_weights.load_cached_weights(model_name)
    model = CrepeModel(model_name, rngs=nnx.Rngs(0))
    for i in range(6):
        conv, norm = model.conv_layers[i], model.batch_norms[i]
        conv.kernel[...] = jnp.asarray(arrays[f"conv{i + 1}.kernel"])
        conv.bias[...] = jnp.asarray(arrays[f"conv{i + 1}.bias"])
        norm.scale[...] = jnp.asarray(arrays[f"conv{i + 1}.bn_gamma"])
        norm.bias[...] = jnp.asarray(arrays[f"conv{i + 1}.bn_beta"])
        norm.mean[...] = jnp.asarray(arrays[f"conv{i + 1}.bn_mean"])
        norm.var[...] = jnp.asarray(arrays[f"conv{i + 1}.bn_var"])
    model.classifier.kernel[...] = jnp.asarray(arrays["dense.kernel"])
    model.classifier.bias[...] = jnp.asarray(arrays["dense.bias"])
    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, frames):
        net = nnx.merge(graphdef, state)
        chunks = frames.reshape(-1, batch, crepe.FRAME_SIZE, 1)
        return jax.lax.map(net, chunks).reshape(-1, 360)

    return lambda frames: run(state, frames)


def _torchcrepe(model_name: str, batch: int):
    import torch

    for name in ("torchaudio", "resampy", "librosa"):  # torchcrepe imports them at the top, for file I/O and decoding;
        try:  # the network does not use them, so an empty stand-in lets it load where they are missing or broken
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (torchaudio raises OSError when its build does not match torch's)
            sys.modules[name] = types.ModuleType(name)
    import torchcrepe

    device = "cuda" if torch.cuda.is_available() else "cpu"  # torch's defaults: TF32 convolutions on NVIDIA GPUs

    def run(frames):
        with torch.no_grad():
            chunks = torch.from_numpy(np.asarray(frames)).to(device).split(batch)
            out = torch.cat([torchcrepe.infer(chunk, model=model_name, device=device) for chunk in chunks])
        return out.cpu().numpy()

    return run


def _tones() -> np.ndarray:
    """1 s harmonic tones (8 partials) at 55 .. 1320 Hz, for the pitch deviation of the fast modes."""
    t = np.arange(16000) / 16000
    tones = [sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 9) if k * f0 < 8000) for f0 in _TONE_HZ]
    return np.stack([0.5 * tone / np.abs(tone).max() for tone in tones]).astype(np.float32)


_TONE_HZ = (55.0, 110.0, 220.0, 440.0, 880.0, 1320.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8000, help="frames per timed call (multiple of --batch)")
    parser.add_argument("--batch", type=int, default=500, help="frames per network call inside the jitted map")
    parser.add_argument("--models", nargs="+", default=["tiny", "full"], choices=crepe_weights.MODELS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-peers", action="store_true", help="skip datarax's CrepeModel and torchcrepe")
    parser.add_argument("--hour-memory", action="store_true", help="XLA memory estimate for 1 hour of audio")
    args = parser.parse_args()
    if args.frames % args.batch:
        parser.error("--frames must be a multiple of --batch")

    rng = np.random.default_rng(0)
    frames = crepe.normalize_frames(rng.standard_normal((args.frames, crepe.FRAME_SIZE)).astype(np.float32))
    t = np.arange(64000) / 16000
    audio_4s = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    tones = _tones()
    device = jax.devices()[0]
    gpu = device.platform == "gpu"
    modes = [("float32", "direct"), ("float32", "auto"), ("bfloat16", "auto")]
    if gpu:
        modes += [("tf32", "direct"), ("tf32", "auto"), ("bfloat16", "direct")]
    print(f"device: {device.device_kind} ({device.platform}), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"jax {jax.__version__}")  # fmt: skip
    print(f"{args.frames} frames per call, {args.batch} per network call; max |diff|: activations against float32 "
          f"direct; cents: f0 against float32 auto on {len(_TONE_HZ)} 1 s tones "
          f"{_TONE_HZ[0]:.0f}-{_TONE_HZ[-1]:.0f} Hz\n")  # fmt: skip
    print(f"{'implementation':44s} {'frames/s':>10s} {'cpu ms/frame':>13s} {'4 s audio (s)':>14s} {'max |diff|':>11s} "
          f"{'max cents':>10s}")  # fmt: skip
    for model_name in args.models:
        params = crepe.load_crepe_params(model_name)
        reference, reference_f0 = None, None
        for precision, conv in modes:
            run = _ours(params, precision, conv, args.batch)
            wall, cpu = _timed(run, frames, repeats=args.repeats)
            out = np.asarray(run(frames))
            reference = out if reference is None else reference
            diff = np.abs(out - reference).max()
            label = f"ddsp_core.crepe {model_name} {precision} {conv}"
            if conv == "direct" and precision != "float32":
                print(f"{label:44s} {args.frames / wall:10.0f} {1e3 * cpu / args.frames:13.2f} {'':>14s} {diff:11.1e}")
                continue
            extract = jax.jit(lambda p, a, q=precision, c=conv: crepe.estimate_f0(p, a, precision=q, conv=c))
            wall_4s, _ = _timed(extract, params, audio_4s, repeats=1)
            f0, confidence = jax.vmap(lambda a, p=params: extract(p, a))(jnp.asarray(tones))
            f0 = np.where(np.asarray(confidence) > 0.5, np.asarray(f0, np.float64), np.nan)
            reference_f0 = f0 if conv == "auto" and reference_f0 is None else reference_f0
            cents = np.nanmax(1200 * np.abs(np.log2(f0 / reference_f0))) if reference_f0 is not None else np.nan
            print(f"{label:44s} {args.frames / wall:10.0f} {1e3 * cpu / args.frames:13.2f} {wall_4s:14.2f} "
                  f"{diff:11.1e} {cents:10.3f}")  # fmt: skip
        if args.no_peers:
            continue
        peers = []
        if importlib.util.find_spec("datarax") is not None:
            peers.append(("datarax 0.1.4 CrepeModel " + model_name + " (same weights)", _datarax))
        if importlib.util.find_spec("torchcrepe") is not None and importlib.util.find_spec("torch") is not None:
            peers.append(("torchcrepe 0.0.24 " + model_name, _torchcrepe))
        else:
            print(f"{'torchcrepe ' + model_name:44s} {'not installed':>10s}")
        for label, build in peers:
            run = build(model_name, args.batch)
            wall, cpu = _timed(run, frames, repeats=args.repeats)
            diff = np.abs(np.asarray(run(frames)) - reference).max()
            print(f"{label:44s} {args.frames / wall:10.0f} {1e3 * cpu / args.frames:13.2f} {'':>14s} {diff:11.1e}")

    if args.hour_memory:
        hour = jax.ShapeDtypeStruct((3600 * 16000,), jnp.float32)
        for model_name in args.models:
            params = crepe.load_crepe_params(model_name)
            compiled = (
                jax.jit(lambda p, a: crepe.estimate_f0(p, a, decoder="local_average", chunk_frames=512))
                .lower(params, hour)
                .compile()
            )
            memory = compiled.memory_analysis()
            total = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
            print(f"1 hour, {model_name}, local_average, chunk 512: XLA estimate {total / 2**30:.2f} GiB "
                  f"(args {memory.argument_size_in_bytes / 2**20:.0f} MiB, "
                  f"out {memory.output_size_in_bytes / 2**20:.0f} MiB, "
                  f"temp {memory.temp_size_in_bytes / 2**20:.0f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
