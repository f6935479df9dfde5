"""Data parallelism over every device of every process with ``jax.sharding``, and multi-process start-up.

The training step is one ``jax.jit`` program. Its batch is placed with a ``NamedSharding`` that splits the leading
(batch) axis over a one-axis ``Mesh`` named ``"data"``; parameters and optimiser state are replicated. XLA inserts
the gradient all-reduce, so the same code runs on one CPU, on all GPUs of a host, and across hosts.

Several processes: :func:`initialize_distributed` (called by the CLI before anything touches a device) reads
``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, selects
gloo collectives on CPU, and starts ``jax.distributed`` with a bounded wait (``DDSP_DISTRIBUTED_TIMEOUT_S``, default
300 s) and heartbeat (``DDSP_HEARTBEAT_TIMEOUT_S``, default 100 s: a process whose peer died exits instead of
waiting forever). Each process then reads only its part of every global batch (``jax.process_index()`` of
``jax.process_count()``) and hands it to :func:`shard_batch`, which assembles the global array.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

DATA_AXIS = "data"
ENVIRONMENT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class DistributedError(ValueError):
    """Multi-process settings that cannot work (bad variables, unreachable coordinator, processes that disagree)."""


def _int_variable(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None and default is not None:
        return default
    try:
        value = int(text or "")
    except ValueError:
        raise DistributedError(f"{name}={text!r}: expected an integer") from None
    return value


def initialize_distributed() -> None:
    """Start ``jax.distributed`` from the ``JAX_*`` environment variables; nothing when they are unset.

    Raises
    ------
    DistributedError
        If only some variables are set, they are not integers, ``JAX_PROCESS_ID`` is outside
        ``[0, JAX_NUM_PROCESSES)``, or the coordinator cannot be reached within ``DDSP_DISTRIBUTED_TIMEOUT_S``.
    """
    present = [name for name in ENVIRONMENT if os.environ.get(name)]
    if not present:
        return
    if len(present) != len(ENVIRONMENT):
        missing = sorted(set(ENVIRONMENT) - set(present))
        raise DistributedError(f"multi-process run: {', '.join(present)} set but {', '.join(missing)} missing")
    address = os.environ["JAX_COORDINATOR_ADDRESS"]
    num_processes, process_id = _int_variable("JAX_NUM_PROCESSES"), _int_variable("JAX_PROCESS_ID")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise DistributedError(f"JAX_PROCESS_ID={process_id} must lie in [0, JAX_NUM_PROCESSES={num_processes})")
    timeout_s = _int_variable("DDSP_DISTRIBUTED_TIMEOUT_S", 300)
    heartbeat_s = _int_variable("DDSP_HEARTBEAT_TIMEOUT_S", 100)
    if process_id != 0:  # jax.distributed aborts the process when it cannot connect; fail in one line first
        _wait_for_coordinator(address, timeout_s, process_id=process_id, num_processes=num_processes)
    if os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(address, num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=timeout_s, heartbeat_timeout_seconds=heartbeat_s)
    except Exception as error:  # jaxlib raises XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE...)
        reason = str(error).splitlines()[0][:200]
        raise DistributedError(
            f"process {process_id} of {num_processes} could not start jax.distributed with the coordinator at "
            f"{address} within {timeout_s} s: {reason}"
        ) from None
    logger.info("jax.distributed: process %d of %d (coordinator %s)", process_id, num_processes, address)


def _wait_for_coordinator(address: str, timeout_s: int, *, process_id: int, num_processes: int) -> None:
    """Return once a TCP connection to ``address`` (``host:port``) opens; raise after ``timeout_s`` seconds."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"JAX_COORDINATOR_ADDRESS={address!r}: expected host:port")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"process {process_id} of {num_processes} could not join the coordinator at {address} within "
                    f"{timeout_s} s (JAX_COORDINATOR_ADDRESS; is process 0 running and the port open?): {error}"
                ) from None
            time.sleep(0.2)


def check_same_config(config_json: str) -> None:
    """Refuse to train when the processes were given different configurations (compared by sha256).

    Every process calls this with its own config; all of them raise the same one-line error naming the processes
    that differ from process 0.
    """
    if jax.process_count() == 1:
        return
    digest = np.frombuffer(hashlib.sha256(config_json.encode()).digest(), np.uint32)
    digests = np.asarray(multihost_utils.process_allgather(digest))  # (process_count, 8)
    differing = [index for index in range(len(digests)) if not np.array_equal(digests[index], digests[0])]
    if differing:
        raise DistributedError(
            f"processes {differing} were given a different config than process 0; start every process with the "
            f"same --preset and --set options"
        )


def is_writer() -> bool:
    """Whether this process writes run files (config, metrics, reports): process 0 only."""
    return jax.process_index() == 0


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_cpu_cores_as_devices(count: int | None = None) -> int:
    """Present the CPU to JAX as ``count`` devices (default: one per core), so data parallelism uses every core.

    XLA runs some operations (FFTs, the GRU's small per-step products) on one core; with the batch split over one
    CPU device per core, each core runs its own part of the step. It only changes the CPU backend: on a machine
    with an accelerator, JAX's default devices stay the accelerators. Call it before any JAX operation. It leaves
    the device count alone when JAX has already started, or when ``XLA_FLAGS`` sets
    ``--xla_force_host_platform_device_count`` (the user's choice wins).

    Parameters
    ----------
    count : int or None
        CPU devices wanted, >= 1; ``None`` means one per available core.

    Returns
    -------
    int
        How many devices of the default backend to use: ``count`` (or all) of them, at most as many as exist.

    Raises
    ------
    ValueError
        If ``count`` is below 1.
    """
    if count is not None and count < 1:
        raise ValueError(f"the number of devices must be at least 1, got {count}")
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", _cpu_cores() if count is None else count)
        except RuntimeError:  # JAX has started: its devices are fixed for this process
            logger.info("JAX has already started; keeping its %d devices", len(jax.devices()))
    available = len(jax.devices())
    return available if count is None else min(count, available)


def data_mesh() -> Mesh:
    """A one-axis mesh (``"data"``) over every device of every process."""
    return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading axis over the mesh's data axis; other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Same value on every device."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Refuse a global batch that does not divide evenly over the devices (and so over the processes)."""
    n_devices = mesh.devices.size
    if batch_size % n_devices:
        raise ValueError(
            f"train.batch_size={batch_size} must be a multiple of the number of devices ({n_devices})"
        )


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Place this process's part of a global batch on the mesh, split along the batch axis.

    With one process ``batch`` is the whole global batch; with several, each passes its own rows and the global
    array is assembled from the local ones.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return {name: jax.device_put(value, sharding) for name, value in batch.items()}
    return {
        name: jax.make_array_from_process_local_data(sharding, value) for name, value in batch.items()
    }


def place_whole_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Place a batch that every process holds in full: split over the devices when it divides evenly, else
    replicated."""
    n_examples = len(next(iter(batch.values())))
    sharding = batch_sharding(mesh) if n_examples % mesh.devices.size == 0 else replicated(mesh)
    return {
        name: jax.make_array_from_callback(value.shape, sharding, lambda index, value=value: value[index])
        for name, value in batch.items()
    }


def replicate_tree(tree, mesh: Mesh):
    """Place a pytree that every process holds in full (parameters, optimiser state) replicated on the mesh."""
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(
        lambda leaf: jax.make_array_from_callback(np.shape(leaf), sharding, lambda index: np.asarray(leaf)[index]),
        tree,
    )
