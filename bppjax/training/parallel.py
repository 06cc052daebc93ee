"""Data parallelism over every device of every host, one code path for 1..N devices.

Single host: nothing to do, ``jax.devices()`` are all local. Multi-host (several
machines, each with its own devices): start the same command on every host with
``--config.train.distributed=True``; ``jax.distributed.initialize()`` reads the
coordinator address, process count and index from the cluster environment
(SLURM, Open MPI, Kubernetes/GKE, TPU pods) or from ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Every host then draws the same
global batch from the (seed, step) sampler and feeds its own slice.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
_initialized = False


def maybe_initialize_distributed(enabled: bool) -> None:
    """``jax.distributed.initialize()`` once, when the config asks for multi-host training."""
    global _initialized
    if enabled and not _initialized:
        jax.distributed.initialize()
        _initialized = True


def data_mesh() -> Mesh:
    """A 1-D mesh over all devices (all hosts), axis ``data``."""
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def to_global(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assemble this host's slice of the batch into global arrays sharded over the mesh."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a host pytree on every device (identical copies)."""
    return jax.device_put(tree, replicated(mesh))
