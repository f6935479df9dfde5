"""Multi-process training on localhost (train/parallel.py): ``jax.distributed`` with gloo CPU collectives.

Each process is a real ``python -m train fit`` with one CPU device. Two processes sharing a global batch of 4 must
train the ``tiny`` model to the parameters one process (with two devices) gets with the same global batch; a kill -9
of one process followed by a restart of both must end bit-identical to an uninterrupted two-process run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.train._run import REPO, final_params
from train import parallel
from train.data import SPLITS, load_manifest, load_split
from train.data.dataset import write_prepared

STEPS = ["train.batch_size=4", "train.eval_every=1000", "train.log_every=1", "train.checkpoint_every=2",
         "train.keep_checkpoints=10"]
STEPS_TO_RUN = "train.n_steps=16"


@pytest.fixture(scope="module")
def four_note_dataset(tmp_path_factory, tiny_dataset) -> Path:
    """The tiny offline set with its train split doubled (4 notes, one shard each)."""
    splits = {name: load_split(tiny_dataset, name) for name in SPLITS}
    splits["train"] = {key: np.concatenate([value, value]) for key, value in splits["train"].items()}
    return write_prepared(tmp_path_factory.mktemp("data") / "four", splits, load_manifest(tiny_dataset), shard_size=1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fit(run_dir: Path, dataset: Path, *extra: str, process: tuple[int, int, int] | None = None,
         resume: bool = False, set_also: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m train fit`` on the tiny preset; ``process = (id, count, port)`` joins a distributed run."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "DDSP_HEARTBEAT_TIMEOUT_S": "30",
                   "DDSP_DISTRIBUTED_TIMEOUT_S": "60"}
    environment.pop("XLA_FLAGS", None)
    environment |= env or {}
    if process is not None:
        process_id, count, port = process
        environment |= {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": str(count),
                        "JAX_PROCESS_ID": str(process_id)}
    overrides = [f"run_dir={run_dir}", f"data.dataset_dir={dataset}", *STEPS, *extra, *set_also]
    arguments = ["fit", "--preset", "tiny", *(["--resume"] if resume else []),
                 *[item for override in overrides for item in ("--set", override)]]
    return subprocess.Popen([sys.executable, "-m", "train", *arguments], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, cwd=REPO)


def _finish(*processes: subprocess.Popen, timeout: float = 600) -> list[str]:
    errors = [process.communicate(timeout=timeout)[1] for process in processes]
    for process, error in zip(processes, errors, strict=True):
        assert process.returncode == 0, error[-3000:]
    return errors


def _two_processes(run_dir: Path, dataset: Path, *extra: str, resume: bool = False) -> list[subprocess.Popen]:
    port = _free_port()
    return [_fit(run_dir, dataset, *extra, process=(k, 2, port), resume=resume) for k in (0, 1)]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, four_note_dataset) -> Path:
    """16 steps of the tiny model by two processes (one CPU device each), global batch 4."""
    run_dir = tmp_path_factory.mktemp("runs") / "two"
    _finish(*_two_processes(run_dir, four_note_dataset, STEPS_TO_RUN))
    return run_dir


def test_two_processes_train_the_parameters_of_one_process_with_the_same_global_batch(
        tmp_path, four_note_dataset, two_process_run):
    # One process with two CPU devices runs the same partitioned program; only the all-reduce differs (in-process
    # vs gloo between processes), and a sum of two partial gradients is exact in either order, so the parameters
    # agree to the bit (float32 rounding would allow more). One process with ONE device agrees on the first loss
    # to 4e-6 (reduction order; tests/train/test_app.py), and Adam then maps gradients that are zero up to rounding
    # to +-learning_rate, so it is not the reference for an element-wise comparison after several steps.
    _finish(_fit(tmp_path / "one", four_note_dataset, STEPS_TO_RUN,
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}))
    for two, one in zip(final_params(two_process_run), final_params(tmp_path / "one"), strict=True):
        np.testing.assert_array_equal(two, one)
    logged = [line for line in (two_process_run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(logged) == 16  # one writer (process 0), one line per step


def test_kill_9_of_one_process_then_restarting_both_resumes_to_the_uninterrupted_result(
        tmp_path, four_note_dataset, two_process_run):
    run_dir = tmp_path / "killed"
    first, second = _two_processes(run_dir, four_note_dataset, STEPS_TO_RUN)
    deadline = time.time() + 600
    while not (run_dir / "checkpoints" / "4").is_dir() and time.time() < deadline:
        time.sleep(0.02)
    second.send_signal(signal.SIGKILL)
    second.communicate()
    try:
        first.communicate(timeout=150)  # its peer is gone: it must stop by itself (30 s heartbeat), not hang
    except subprocess.TimeoutExpired:
        first.kill()
        first.communicate()
        pytest.fail("the surviving process did not stop within 150 s of its peer's kill -9")
    assert second.returncode == -signal.SIGKILL and first.returncode != 0
    saved = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and 4 <= saved[-1] < 16

    _finish(*_two_processes(run_dir, four_note_dataset, STEPS_TO_RUN, resume=True))
    for ours, reference in zip(final_params(run_dir), final_params(two_process_run), strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_processes_given_different_configs_stop_with_one_line(tmp_path, four_note_dataset):
    port = _free_port()
    processes = [_fit(tmp_path / "run", four_note_dataset, "train.n_steps=2", process=(k, 2, port),
                      set_also=(f"train.learning_rate={1e-3 * (k + 1)}",)) for k in (0, 1)]
    for process in processes:
        error = process.communicate(timeout=600)[1].strip().splitlines()[-1]
        assert process.returncode == 2
        assert error == ("ddsp-train: error: processes [1] were given a different config than process 0; start "
                         "every process with the same --preset and --set options")


def test_an_unreachable_coordinator_is_a_one_line_error_within_the_timeout(tmp_path, four_note_dataset):
    port = _free_port()  # nobody listens there
    process = _fit(tmp_path / "run", four_note_dataset, process=(1, 2, port), env={"DDSP_DISTRIBUTED_TIMEOUT_S": "3"})
    started = time.time()
    error = process.communicate(timeout=300)[1].strip().splitlines()[-1]
    assert process.returncode == 2
    assert error.startswith(f"ddsp-train: error: process 1 of 2 could not join the coordinator at 127.0.0.1:{port} "
                            f"within 3 s")
    assert time.time() - started < 60  # 3 s of waiting plus start-up, not JAX's default 5 minutes


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, "JAX_PROCESS_ID missing"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
         "JAX_NUM_PROCESSES='two': expected an integer"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
         r"JAX_PROCESS_ID=2 must lie in \[0, JAX_NUM_PROCESSES=2\)"),
        ({"JAX_COORDINATOR_ADDRESS": "nohost", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
         "JAX_COORDINATOR_ADDRESS='nohost': expected host:port"),
    ],
)
def test_bad_cluster_variables_are_refused_before_jax_starts(monkeypatch, variables, message):
    from train.parallel import DistributedError, initialize_distributed

    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedError, match=message):
        initialize_distributed()


# Presenting the CPU cores as devices -----------------------------------------------------------------------------
_SCRIPT = (
    "import json\n"
    "from train import parallel\n"
    "used = parallel.use_cpu_cores_as_devices({count})\n"
    "import jax\n"
    "print(json.dumps([used, len(jax.devices('cpu'))]))\n"
)


def _devices_in_fresh_process(count: int | None, xla_flags: str) -> list[int]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(count=count)], capture_output=True, text=True, env=environment,
        timeout=300, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cpu_is_split_into_the_requested_devices_unless_xla_flags_already_chose():
    assert _devices_in_fresh_process(3, "") == [3, 3]
    # The user's --xla_force_host_platform_device_count wins; the request is capped at what exists.
    assert _devices_in_fresh_process(3, "--xla_force_host_platform_device_count=2") == [2, 2]


def test_after_jax_started_the_devices_are_kept():
    import jax

    existing = len(jax.devices())
    assert parallel.use_cpu_cores_as_devices(None) == existing
    assert len(jax.devices()) == existing


def test_device_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        parallel.use_cpu_cores_as_devices(0)
