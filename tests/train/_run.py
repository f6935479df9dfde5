"""Helpers of the training-application tests: run the CLI in a subprocess, tiny-run arguments, saved parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m train ARGS`` on the CPU in a subprocess."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "train", *args], capture_output=True, text=True,
                          env=environment, timeout=timeout, cwd=REPO)


def tiny_args(run_dir: Path, dataset: Path, *extra: str) -> list[str]:
    """``--preset tiny`` arguments for ``run_dir`` on ``dataset``, with ``section.key=value`` overrides."""
    return ["--preset", "tiny", "--set", f"run_dir={run_dir}", "--set", f"data.dataset_dir={dataset}", *
            [item for override in extra for item in ("--set", override)]]


def final_params(run_dir: Path, step: str | int = "newest") -> list[np.ndarray]:
    """The parameter leaves of a run's checkpoint, as numpy arrays."""
    import jax

    from train.checkpoint import load_trained

    _, params, _, _ = load_trained(run_dir, step)
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(params)]
