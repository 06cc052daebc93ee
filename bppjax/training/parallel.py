"""Data parallelism over every device of every host, one code path for 1..N devices.

Single host: nothing to do, ``jax.devices()`` are all local. Multi-host (several
machines, each with its own devices): start the same command on every host with
``--config.train.distributed=True``. The coordinator address, process count and
this process's index come from ``train.coordinator_address``,
``train.num_processes`` and ``train.process_id`` when set, else from the
environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID``, else from jax's auto-detection (SLURM, Open MPI,
Kubernetes/GKE, TPU pods). Every host then draws the same global batch from the
(seed, step) sampler and feeds its own slice.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
_initialized = False


ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES", "process_id": "JAX_PROCESS_ID"}


def cluster_settings(train: Any) -> dict[str, Any]:
    """Coordinator address, process count and index: config keys, else environment variables, else None (auto-detect).

    Raises ValueError naming the key or variable for a value that is not a number.
    """
    out: dict[str, Any] = {}
    for key, var in ENV.items():
        value = train.get(key) if hasattr(train, "get") else None
        unset = value in (None, "", -1) or (key == "num_processes" and value == 0)
        source = f"train.{key}"
        if unset and os.environ.get(var, "").strip():
            value, source, unset = os.environ[var].strip(), var, False
        if unset:
            out[key] = None
        elif key == "coordinator_address":
            out[key] = str(value)
        else:
            try:
                out[key] = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"{source} must be an integer; got {value!r}") from None
    return out


def maybe_initialize_distributed(enabled: bool, train: Any = None) -> None:
    """``jax.distributed.initialize()`` once, when the config asks for multi-host training (see ``cluster_settings``)."""
    global _initialized
    if enabled and not _initialized:
        jax.distributed.initialize(**cluster_settings(train or {}))
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
