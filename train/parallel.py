"""Data parallelism over every local device with ``jax.sharding``, and multi-host start-up.

The training step is one ``jax.jit`` program. Its batch is placed with a ``NamedSharding`` that splits the leading
(batch) axis over a one-axis ``Mesh`` named ``"data"``; parameters and optimiser state are replicated. XLA inserts
the gradient all-reduce, so the same code runs on one CPU, on all GPUs of a host, and across hosts.

Multi-host: call :func:`initialize_distributed` before anything touches a device. With no arguments it reads the
standard variables ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` (and on SLURM/TPU/Kubernetes, JAX discovers them itself). Each process then feeds the shard of
the data whose index is ``jax.process_index()`` of ``jax.process_count()``.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Start ``jax.distributed`` for multi-host runs, from the ``JAX_*`` environment variables.

    Does nothing when ``JAX_COORDINATOR_ADDRESS`` is unset and no cluster is detected (single host).
    """
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address is None:
        return
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    process_id = int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(address, num_processes=num_processes, process_id=process_id)
    logger.info("jax.distributed: process %d of %d (coordinator %s)", process_id, num_processes, address)


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
    """Refuse a global batch that does not divide evenly over the devices."""
    n_devices = mesh.devices.size
    if batch_size % n_devices:
        raise ValueError(
            f"train.batch_size={batch_size} must be a multiple of the number of devices ({n_devices})"
        )


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Place a host batch on the mesh, split along the batch axis.

    For multi-host runs each process passes its own slice; the global array is assembled from the local ones.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return {name: jax.device_put(value, sharding) for name, value in batch.items()}
    return {
        name: jax.make_array_from_process_local_data(sharding, value) for name, value in batch.items()
    }
