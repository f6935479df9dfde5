"""Fault injection: kill -9 a real training process during checkpoint writes, resume it, and check the result.

Each trial starts ``python -m train fit`` (tiny preset) in a fresh run folder, waits until orbax starts writing the
checkpoint of a randomly chosen step (its ``<step>.orbax-checkpoint-tmp-*`` folder appears), waits a random
0..``--max-delay-ms`` (default 100) more, and sends SIGKILL, so the kill lands before, inside or just after the write. Then
``fit --resume`` runs the rest, and the final parameters and optimiser state are compared bit for bit with an
uninterrupted run of the same config. A kill that lands inside the very first write is the case that used to leave
a run stuck.

Usage::

    python benchmarks/faults.py                      # 20 kills (builds the tiny offline dataset if needed)
    python benchmarks/faults.py --kills 5 --dataset data/offline-tiny-tiny --seed 1

Prints one line per trial and, last, the count of kills, of kills inside a write and of identical resumes.
Exits 1 if any resume differs from the uninterrupted run.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEMPORARY_MARKER = ".orbax-checkpoint-tmp"


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


def _fit_command(run_dir: Path, dataset: Path, n_steps: int, *, resume: bool) -> list[str]:
    overrides = [f"run_dir={run_dir}", f"data.dataset_dir={dataset}", f"train.n_steps={n_steps}",
                 "train.checkpoint_every=2", "train.eval_every=5", "train.log_every=1000"]
    return [sys.executable, "-m", "train", "fit", "--preset", "tiny", *(["--resume"] if resume else []),
            *[item for override in overrides for item in ("--set", override)]]


def _run_to_end(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(), cwd=REPO, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")


def _writing(checkpoints: Path, step: int) -> bool:
    try:
        return any(entry.name.startswith(f"{step}{TEMPORARY_MARKER}") for entry in os.scandir(checkpoints))
    except FileNotFoundError:
        return False


def kill_during_write(run_dir: Path, dataset: Path, n_steps: int, step: int, delay_s: float) -> str:
    """Start a fresh fit, SIGKILL it ``delay_s`` after checkpoint ``step`` starts being written.

    Returns where the kill landed: ``inside write``, ``after write`` or ``not killed`` (the run ended first).
    """
    process = subprocess.Popen(_fit_command(run_dir, dataset, n_steps, resume=False), env=_environment(), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = run_dir / "checkpoints"
    while process.poll() is None and not _writing(checkpoints, step):
        time.sleep(0.0005)
    if process.poll() is not None:
        return "not killed"
    time.sleep(delay_s)
    landed = "inside write" if _writing(checkpoints, step) else "after write"
    process.send_signal(signal.SIGKILL)
    process.wait()
    return landed if process.returncode == -signal.SIGKILL else "not killed"


def final_state(run_dir: Path) -> list[np.ndarray]:
    """Every leaf of the newest checkpoint's parameters and optimiser state."""
    from train.checkpoint import load

    loaded = load(run_dir, "newest")
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(loaded.state)]


def identical(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Whether two states are equal bit for bit."""
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def tiny_dataset(root: Path) -> Path:
    """The tiny offline dataset (rendered and labelled once; reused when already there)."""
    from train.data import prepare_offline

    return prepare_offline("tiny", root / "offline-tiny", crepe_model="tiny", progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to land (default 20)")
    parser.add_argument("--steps", type=int, default=12, help="training steps per run (default 12)")
    parser.add_argument("--max-delay-ms", type=float, default=100.0, help="random delay after a write starts")
    parser.add_argument("--dataset", type=Path, help="prepared tiny dataset (default: build one in a temp folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's notes on opening checkpoints read-only
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ddsp-faults-") as scratch:
        root = Path(scratch)
        dataset = args.dataset or tiny_dataset(root)
        _run_to_end(_fit_command(root / "reference", dataset, args.steps, resume=False))
        reference = final_state(root / "reference")
        counts = {"kills": 0, "inside write": 0, "identical": 0}
        trial = 0
        while counts["kills"] < args.kills and trial < 3 * args.kills:
            trial += 1
            run_dir = root / f"trial{trial}"
            step = rng.choice(range(2, args.steps, 2))
            delay_s = rng.uniform(0.0, args.max_delay_ms / 1000.0)
            landed = kill_during_write(run_dir, dataset, args.steps, step, delay_s)
            if landed == "not killed":
                print(f"trial {trial:2d}: checkpoint {step:2d}: the run ended before the kill", flush=True)
                continue
            counts["kills"] += 1
            counts["inside write"] += landed == "inside write"
            _run_to_end(_fit_command(run_dir, dataset, args.steps, resume=True))
            same = identical(final_state(run_dir), reference)
            counts["identical"] += same
            print(f"trial {trial:2d}: checkpoint {step:2d}, kill {1000 * delay_s:5.1f} ms after the write began "
                  f"({landed}): resume {'identical' if same else 'DIFFERS'}", flush=True)
    print(f"kills: {counts['kills']} ({counts['inside write']} inside a checkpoint write); "
          f"identical resumes: {counts['identical']}/{counts['kills']}")
    return 0 if counts["identical"] == counts["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
