"""Ours and magenta/ddsp 3.7.0 side by side in one run: every DDSP block and the paper-size training step.

Run (magenta in its own venv, see ``benchmarks/magenta_peer.py`` for the two-line setup)::

    python benchmarks/versus_magenta.py --peer-python /tmp/magenta-venv/bin/python [--rounds 2] [--repeats 5]

Both sides get the same inputs (written to a temporary ``.npz``: batch 8 x 4 s at 16 kHz, 1000 frames, 100
harmonics, 65 noise bands, IR 16000, as ``benchmarks/synthesis.py``) and the same sizes. Magenta runs in its own
process, which builds its cases and then times one on request; the two sides are interleaved case by case: for
each case and round, ours (jitted) and magenta's (``tf.function``) each take the median of ``--repeats`` calls
(after 2 warm-up calls the first time), seconds apart, the side going first alternating from round to round. On a
machine shared with other work the timings drift, so the table shows the range of the per-round medians, and the
ratio's range is taken round by round, from the two measurements made back to back.

Our training step is timed with the batch split over one CPU device per core and on one device (``--devices 1``:
one device only), with our default decoder, and once more with magenta's decoder architecture (``decoder="rnn_fc"``,
the model magenta's own step trains) on one device; TensorFlow uses all cores through its own thread pools. With
``--split-blocks`` the FFT-bound blocks (``SPLIT_BLOCKS``) are also timed with the batch split over those devices
("..., 2 devices" rows), each beside the same magenta case. On the 2-core machine of 2026-12-01 the split was slower
than one device for every block but the loss's backward pass (XLA already spreads one device's work over both
cores, and these blocks are bound by memory traffic), so blocks are timed on one device unless asked.
"""

import argparse
import dataclasses
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train import parallel  # noqa: E402  (before JAX starts: the CPU's device count is fixed then)


@dataclasses.dataclass(frozen=True)
class Case:
    block: str
    mode: str
    fn: Callable[..., object]
    args: tuple
    peer_block: str | None = None  # magenta's case to compare with, when its name differs

    @property
    def peer_key(self) -> tuple[str, str]:
        return (self.peer_block or self.block, self.mode)


SPLIT_BLOCKS = ("filtered noise", "reverb", "loudness", "MFCC", "spectral loss")
"""Blocks also timed with the batch split over the CPU devices with ``--split-blocks``: the FFT-bound ones."""


def _median_ms(fn: Callable[..., object], args: tuple, repeats: int, warm_up: bool) -> float:
    import jax

    for _ in range(2 if warm_up else 0):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _inputs(batch: int, n_samples: int) -> dict:
    """The controls of ``benchmarks/synthesis.py`` plus loudness, as NumPy arrays (what the peer reads)."""
    import numpy as np
    import synthesis

    controls = synthesis._controls(batch, n_samples)
    inputs = {name: np.asarray(value) for name, value in controls.items() if name != "keys"}
    rng = np.random.default_rng(7)
    inputs["loudness_db"] = rng.uniform(-80.0, 0.0, inputs["f0_hz"].shape).astype(np.float32)
    inputs.update(sample_rate=np.array(synthesis.SAMPLE_RATE), noise_window_size=np.array(257),
                  hidden_size=np.array(512))
    return inputs


def our_cases(inputs: dict, devices: int, split_blocks: bool = False) -> list[Case]:
    """Every block (jitted, vmapped over the batch) and the training step, on ``inputs``."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import synthesis
    import train_step
    from jax.sharding import Mesh

    from ddsp_core.effects import reverb
    from ddsp_core.model import build_autoencoder, reconstruction_loss
    from ddsp_core.noise import filtered_noise
    from ddsp_core.spectral import compute_loudness, mfcc, multiscale_spectral_loss

    c = {name: jnp.asarray(value) for name, value in inputs.items() if value.ndim > 0}
    batch, n_samples = c["audio"].shape
    sample_rate = int(inputs["sample_rate"])
    keys = jax.random.split(jax.random.key(1), batch)
    square_sum = synthesis._sum_of_squares
    harmonic = jax.vmap(functools.partial(synthesis.harmonic, n_samples=n_samples, sample_rate=sample_rate))
    noise = jax.vmap(lambda m, k: filtered_noise(m, n_samples=n_samples, key=k))
    loudness = jax.vmap(lambda x: compute_loudness(x, sample_rate=sample_rate, frame_rate=250, n_fft=2048))
    coefficients = jax.vmap(lambda x: mfcc(x, sample_rate=sample_rate))
    harmonic_args = (c["amplitude"], c["harmonic_distribution"], c["f0_hz"])
    cases = [
        Case("harmonic", "fwd", jax.jit(harmonic), harmonic_args),
        Case("harmonic", "fwd+bwd", jax.jit(jax.grad(square_sum(harmonic), argnums=(0, 1, 2))), harmonic_args),
        Case("filtered noise", "fwd", jax.jit(noise), (c["noise_magnitudes"], keys)),
        Case("filtered noise", "fwd+bwd", jax.jit(jax.grad(square_sum(noise))), (c["noise_magnitudes"], keys)),
        Case("reverb", "fwd", jax.jit(jax.vmap(reverb)), (c["audio"], c["impulse_response"])),
        Case("reverb", "fwd+bwd", jax.jit(jax.grad(square_sum(jax.vmap(reverb)), argnums=(0, 1))),
             (c["audio"], c["impulse_response"])),
        Case("loudness", "fwd", jax.jit(loudness), (c["audio"],)),
        Case("loudness", "fwd+bwd", jax.jit(jax.grad(square_sum(loudness))), (c["audio"],)),
        Case("MFCC", "fwd", jax.jit(coefficients), (c["audio"],)),
        Case("spectral loss", "fwd", jax.jit(multiscale_spectral_loss), (c["target"], c["audio"])),
        Case("spectral loss", "fwd+bwd", jax.jit(jax.grad(multiscale_spectral_loss, argnums=1)),
             (c["target"], c["audio"])),
    ]
    if devices > 1 and split_blocks:
        # The FFT-bound blocks again with the batch split over one CPU device per core (as the training step runs):
        # XLA's CPU FFT uses one core per call, TensorFlow's uses all of them.
        mesh = Mesh(np.array(jax.devices()[:devices]), (parallel.DATA_AXIS,))
        split = functools.partial(jax.device_put, device=parallel.batch_sharding(mesh))
        cases = [
            variant
            for case in cases
            for variant in (case, dataclasses.replace(
                case, block=f"{case.block}, {devices} devices", args=split(case.args), peer_block=case.block
            ))[: 2 if case.block in SPLIT_BLOCKS else 1]
        ]
    # Our default decoder (one input layer before the GRU), on every device count, then magenta's architecture
    # (``decoder="rnn_fc"``: an MLP per input and their skip into the output MLP, the model magenta's step trains).
    steps = [("linear", n_devices, "") for n_devices in sorted({devices, 1}, reverse=True)]
    steps.append(("rnn_fc", 1, ", magenta's decoder"))
    for decoder, n_devices, label in steps:
        model = build_autoencoder(train_step.PAPER_PROCESSORS, decoder=decoder, key=jax.random.key(0))
        mesh = Mesh(np.array(jax.devices()[:n_devices]), (parallel.DATA_AXIS,))
        step = train_step._make_step(
            lambda m, b, k: reconstruction_loss(m, *b, key=k), model, (c["audio"], c["f0_hz"], c["loudness_db"]), mesh
        )
        cases.append(Case(f"train step{label}, {n_devices} device{'s' if n_devices > 1 else ''}", "fwd+bwd+Adam",
                          step, (), peer_block="train step"))
    return cases


class _Peer:
    """magenta_peer.py serving timing requests from its own process (see its docstring for the protocol)."""

    def __init__(self, peer_python: str, inputs_path: Path):
        self.process = subprocess.Popen(
            [peer_python, str(HERE / "magenta_peer.py"), str(inputs_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        ready = json.loads(self._read_line())
        self.cases = {tuple(key) for key in ready["ready"]}
        self.versions = ready["versions"]

    def _read_line(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"magenta_peer.py exited with status {self.process.wait()} (its errors are above)")
        return line

    def median_ms(self, block: str, mode: str, repeats: int) -> float:
        self.process.stdin.write(json.dumps({"block": block, "pass": mode, "repeats": repeats}) + "\n")
        self.process.stdin.flush()
        return statistics.median(json.loads(self._read_line())["ms"])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def _range(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"


def format_table(ours: list[dict], theirs: list[dict]) -> str:
    """Markdown table: per case the range over rounds of our and magenta's medians, and of their ratio."""
    lines = ["| block | pass | ours ms | magenta ms | magenta / ours |", "|---|---|---:|---:|---:|"]
    for key in ours[0]:
        if not all(key in t for t in theirs):
            continue
        ratios = [t[key] / o[key] for o, t in zip(ours, theirs)]
        lines.append(
            f"| {key[0]} | {key[1]} | {_range([o[key] for o in ours])} | {_range([t[key] for t in theirs])} | "
            f"{_range(ratios)}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", required=True, help="python of the venv with magenta ddsp 3.7.0")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both sides (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case after 2 warm-up calls")
    parser.add_argument("--devices", type=int, default=None, help="devices for our training step (default: cores)")
    parser.add_argument("--split-blocks", action="store_true",
                        help="also time the FFT-bound blocks with the batch split over --devices")
    args = parser.parse_args(argv)
    devices = parallel.use_cpu_cores_as_devices(args.devices)

    import jax
    import numpy as np

    inputs = _inputs(batch=8, n_samples=64000)
    cases = our_cases(inputs, devices, args.split_blocks)
    ours = [{} for _ in range(args.rounds)]
    theirs = [{} for _ in range(args.rounds)]
    with tempfile.TemporaryDirectory() as tmp:
        inputs_path = Path(tmp) / "inputs.npz"
        np.savez(inputs_path, **inputs)
        peer = _Peer(args.peer_python, inputs_path)
        try:
            warmed = set()
            for case in cases:
                key = (case.block, case.mode)
                if case.peer_key not in peer.cases:
                    continue
                for round_index in range(args.rounds):
                    def run_ours(case=case, key=key, round_index=round_index):
                        ours[round_index][key] = _median_ms(case.fn, case.args, args.repeats, key not in warmed)
                        warmed.add(key)

                    def run_theirs(case=case, key=key, round_index=round_index):
                        theirs[round_index][key] = peer.median_ms(*case.peer_key, args.repeats)

                    for run in (run_ours, run_theirs) if round_index % 2 == 0 else (run_theirs, run_ours):
                        run()
        finally:
            peer.close()
    print(
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"jax {jax.__version__} ({devices} CPU devices; each train-step row names the ones it used); "
        f"magenta: {peer.versions}; batch 8 x 4 s at 16 kHz; {args.rounds} rounds, each the median of "
        f"{args.repeats} calls after 2 warm-up calls"
    )
    print(format_table(ours, theirs))


if __name__ == "__main__":
    main()
