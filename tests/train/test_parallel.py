"""Multi-process training on localhost (train/parallel.py): ``jax.distributed`` with gloo CPU collectives.

Each process is a real ``python -m train fit`` with one CPU device. Two processes sharing a global batch of 4 must
train the ``tiny`` model to the parameters one process gets with the same global batch; a kill -9 of one process
followed by a restart of both must end where an uninterrupted two-process run ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from train.data import SPLITS, load_manifest, load_split, prepare_offline
from train.data.dataset import write_prepared

REPO = Path(__file__).resolve().parents[2]
STEPS = ["train.batch_size=4", "train.eval_every=1000", "train.log_every=1", "train.checkpoint_every=2",
         "train.keep_checkpoints=10"]


@pytest.fixture(scope="module")
def four_note_dataset(tmp_path_factory) -> Path:
    """The tiny offline set with its train split doubled (4 notes, one shard each)."""
    tiny = prepare_offline("tiny", tmp_path_factory.mktemp("data") / "tiny", crepe_model="tiny", progress=False)
    splits = {name: load_split(tiny, name) for name in SPLITS}
    splits["train"] = {key: np.concatenate([value, value]) for key, value in splits["train"].items()}
    return write_prepared(tmp_path_factory.mktemp("data") / "four", splits, load_manifest(tiny), shard_size=1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fit(run_dir: Path, dataset: Path, *extra: str, process: tuple[int, int, int] | None = None,
         resume: bool = False, set_also: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m train fit`` on the tiny preset; ``process = (id, count, port)`` joins a distributed run."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "DDSP_HEARTBEAT_TIMEOUT_S": "5",
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


def _final_params(run_dir: Path) -> list[np.ndarray]:
    import jax

    from train.fit import load_trained

    _, params, _ = load_trained(run_dir)
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(params)]


def test_two_processes_train_the_parameters_of_one_process_with_the_same_global_batch(tmp_path, four_note_dataset):
    _finish(_fit(tmp_path / "one", four_note_dataset, "train.n_steps=4"))
    _finish(*_two_processes(tmp_path / "two", four_note_dataset, "train.n_steps=4"))
    for two, one in zip(_final_params(tmp_path / "two"), _final_params(tmp_path / "one"), strict=True):
        np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    steps_logged = [line for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(steps_logged) == 4  # one writer (process 0), one line per step


def test_kill_9_of_one_process_then_restarting_both_resumes_to_the_uninterrupted_result(tmp_path, four_note_dataset):
    steps = "train.n_steps=12"
    _finish(*_two_processes(tmp_path / "straight", four_note_dataset, steps))

    run_dir = tmp_path / "killed"
    first, second = _two_processes(run_dir, four_note_dataset, steps)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "4").is_dir() and time.time() < deadline:
        time.sleep(0.05)
    second.send_signal(signal.SIGKILL)
    second.communicate()
    try:
        first.communicate(timeout=120)  # its peer is gone: it must stop by itself (heartbeat), not hang
    except subprocess.TimeoutExpired:
        first.kill()
        first.communicate()
        pytest.fail("the surviving process did not stop within 120 s of its peer's kill -9")
    assert second.returncode == -signal.SIGKILL and first.returncode != 0
    saved = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and 4 <= saved[-1] < 12

    _finish(*_two_processes(run_dir, four_note_dataset, steps, resume=True))
    for ours, reference in zip(_final_params(run_dir), _final_params(tmp_path / "straight"), strict=True):
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
