"""Streaming speed: compute time per block of the engine's step, on ONE CPU thread, for several block sizes.

Run ``python benchmarks/stream.py`` (``--quick``: fewer blocks and sizes). For the ``demo`` preset's model and the
paper-size model (hidden 512, 100 harmonics, 65 noise bands, 16000-tap reverb; untrained weights: the time does
not depend on their values) and each block size (64 ... 2048 samples), it runs the block step

* in process: ``jax.jit`` of :func:`ddsp_core.stream_engine.process_block` (weights as constants);
* exported: the same step through ``jax.export`` (serialized, deserialized, called);
* onnxruntime: the same step as ONNX (:func:`ddsp_core.stream_onnx.export_onnx`, serialized), in an onnxruntime
  CPU session with one intra-op and one inter-op thread (as ``ddsp_player.OnnxInstrument`` runs it).

warms up, then times ``--blocks`` consecutive blocks (each with its own state, as a host calls it) and prints the
median and 99th-percentile block time, the 99th percentile as a share of the block's duration, and the real-time
factor (compute time / audio time; below 1 keeps up). The latency budget column is block + synthesis latency
(one hop) + the features' wait past the block (exact lookahead: 960 samples at hop 64; lowest: 0).

``--quality RUN`` instead measures what the feature lookahead costs in sound: for the first ``--examples`` clips of
the run's test split it renders each clip offline (``autoencode`` on the dataset's features) and streamed with the
exact and the lowest lookahead (``train.live.stream_audio``, 128-sample blocks, features computed from the audio
block by block), and prints the multi-scale spectral distance of each stream to the offline render (and, for scale,
of the offline render to the input audio).

Single thread: ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` is set before jax is
imported. The machine's load average (``os.getloadavg``) is printed before and after the table: on a shared machine
the 99th percentiles measure the other jobs as much as the step.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
from jax import export  # noqa: E402

from ddsp_core import stream_engine, stream_export, stream_onnx  # noqa: E402
from ddsp_core.model import build_autoencoder  # noqa: E402

logger = logging.getLogger("benchmarks.stream")

BLOCK_SIZES = (64, 128, 256, 512, 1024, 2048)
EXACT_WAIT = 1024 - 64  # the exact features' wait past the block at hop 64


def paper_model():
    """The paper-size autoencoder: GRU 512, 100 harmonics, 65 noise bands, 16000-tap learned reverb."""
    return build_autoencoder(
        [{"type": "harmonic", "n_harmonics": 100, "weight": 1.0},
         {"type": "filtered_noise", "n_bands": 65, "weight": 0.1},
         {"type": "reverb", "ir_length": 16000}],
        hidden_size=512, n_mlp_layers=3, key=jax.random.key(0))


def demo_model():
    """The ``demo`` preset's model (as ``ddsp-train demo`` trains it)."""
    from train.config import preset
    from train.modeling import build_model

    return build_model(preset("demo"), jax.random.key(0))


def _inputs(n_blocks: int, frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f0_hz = (220.0 * 2.0 ** rng.normal(0.0, 0.1, (n_blocks, frames))).astype(np.float32)
    loudness_db = rng.uniform(-50.0, -10.0, (n_blocks, frames)).astype(np.float32)
    return f0_hz, loudness_db


def _time_blocks(call: Callable, state: list, f0_hz: np.ndarray, loudness_db: np.ndarray, warmup: int) -> np.ndarray:
    """Seconds per block of ``state, audio = call(state, f0, loudness)`` over consecutive blocks."""
    for index in range(warmup):
        state, audio = call(state, f0_hz[index], loudness_db[index])
    jax.block_until_ready(audio)
    seconds = []
    for index in range(len(f0_hz)):
        start = time.perf_counter()
        state, audio = call(state, f0_hz[index], loudness_db[index])
        jax.block_until_ready(audio)
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds)


def runtimes(model, frames: int) -> dict[str, Callable]:
    """The ways to call the step: name -> ``call(state_list, f0, loudness) -> (state_list, audio)``."""
    key = jax.random.key(0)
    treedef = jax.tree_util.tree_structure(stream_engine.init_state(model, key=key))

    @jax.jit
    def in_process(state, f0_hz, loudness_db):
        new_state, audio = stream_engine.process_block(model, jax.tree_util.tree_unflatten(treedef, state), f0_hz,
                                                       loudness_db)
        return jax.tree_util.tree_leaves(new_state), audio

    exported = export.deserialize(stream_export.export_step(model, block_frames=frames, key=key).serialize())
    call = jax.jit(exported.call)  # as ddsp_player.py calls it

    def exported_call(state, f0_hz, loudness_db):
        outputs = call(*state, f0_hz, loudness_db)
        return list(outputs[:-1]), outputs[-1]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    proto = stream_onnx.export_onnx(model, block_frames=frames, key=key)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = stream_export.state_names(model)

    def onnx_call(state, f0_hz, loudness_db):
        outputs = session.run(None, {**dict(zip(names, state)), "f0_hz": f0_hz, "loudness_db": loudness_db})
        return outputs[:-1], outputs[-1]

    return {"in-process jit": in_process, "jax.export": exported_call, "onnxruntime": onnx_call}


def _load() -> str:
    return "load average " + " / ".join(f"{value:.1f}" for value in os.getloadavg()) + " (1 / 5 / 15 min)"


def quality(run_dir: str, n_examples: int) -> None:
    """Spectral distance of the exact and lowest-latency streams to the offline render, on the test split."""
    from ddsp_core.model import autoencode
    from ddsp_core.spectral import multiscale_spectral_loss
    from train.cli import dataset_dir
    from train.data import load_split
    from train.live import load_model, stream_audio

    config, model, loaded = load_model(run_dir)
    test = load_split(dataset_dir(config), "test")
    count = min(n_examples, len(test["audio"]))
    render = jax.jit(lambda f0, loudness: autoencode(model, f0, loudness, key=jax.random.key(0)).audio)
    distances: dict[str, list[float]] = {"offline vs input": [], "exact stream vs offline": [],
                                         "lowest-latency stream vs offline": []}
    for index in range(count):
        audio = test["audio"][index]
        offline = np.asarray(render(test["f0_hz"][index], test["loudness_db"][index]))
        distances["offline vs input"].append(float(multiscale_spectral_loss(audio, offline)))
        for name, lookahead in (("exact stream vs offline", 1024), ("lowest-latency stream vs offline", model.hop_size)):
            streamed, _ = stream_audio(model, audio, block_samples=128, lookahead_samples=lookahead,
                                       crepe_model=config.data.crepe_model)
            distances[name].append(float(multiscale_spectral_loss(offline, streamed)))
    print(f"# feature lookahead cost: {run_dir} ({loaded.describe()}), {count} test clips, 128-sample blocks")
    print("| comparison | multi-scale spectral distance (mean over clips) |")
    print("|---|---|")
    for name, values in distances.items():
        print(f"| {name} | {np.mean(values):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer blocks, block sizes 128 and 1024 only")
    parser.add_argument("--blocks", type=int, default=200, help="timed blocks per row (default 200)")
    parser.add_argument("--models", default="demo,paper", help="comma-separated: demo, paper")
    parser.add_argument("--quality", metavar="RUN", help="measure the lookahead's cost in sound on RUN's test split")
    parser.add_argument("--examples", type=int, default=8, help="test clips for --quality (default 8)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quality:
        quality(args.quality, args.examples)
        return
    sizes = (128, 1024) if args.quick else BLOCK_SIZES
    n_blocks = 30 if args.quick else args.blocks
    print(f"# stream step, one CPU thread: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"{n_blocks} blocks per row, {os.cpu_count()} cores, {_load()}")
    print("| model | block (samples / ms) | runtime | median ms | p99 ms | p99 / block | real-time factor | "
          "latency budget ms (exact / lowest features) |")
    print("|---|---|---|---|---|---|---|---|")
    builders = {"demo": demo_model, "paper": paper_model}
    for name in args.models.split(","):
        model = builders[name]()
        rate, hop = model.sample_rate, model.hop_size
        synthesis = stream_engine.latency_samples(model)
        for block in sizes:
            frames = block // hop
            block_ms = 1000.0 * block / rate
            budget = (f"{1000.0 * (block + synthesis + EXACT_WAIT) / rate:.1f} / "
                      f"{1000.0 * (block + synthesis) / rate:.1f}")
            f0_hz, loudness_db = _inputs(n_blocks, frames)
            for runtime, call in runtimes(model, frames).items():
                state = stream_export.initial_state_arrays(model, key=jax.random.key(0))
                seconds = _time_blocks(call, state, f0_hz, loudness_db, warmup=3)
                p50, p99 = np.percentile(seconds, [50, 99]) * 1000.0
                rtf = seconds.sum() / (n_blocks * block / rate)
                print(f"| {name} | {block} / {block_ms:.1f} | {runtime} | {p50:.3f} | {p99:.3f} | "
                      f"{100.0 * p99 / block_ms:.0f}% | {rtf:.3f} | {budget} |", flush=True)
    print(f"# after: {_load()}")


if __name__ == "__main__":
    main()
