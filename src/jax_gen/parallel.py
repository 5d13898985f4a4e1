"""Data parallelism with ``jax.sharding``: one mesh axis over devices, the batch split along it.

Training places its state (weights, EMA, optimizer state, step) *replicated* on every device of
a 1-D mesh whose axis is named ``"data"``, and constrains each batch, drawn inside the compiled
step, to be *sharded* along that axis: device k holds rows k B/n .. (k + 1) B/n - 1 of a batch of
B points on n devices. XLA's SPMD partitioner then runs the vmapped per-point loss on each
device's rows and all-reduces the gradient, so the step computes the same mean loss and the
same update as on one device (up to the order of float additions). The random draws do not
depend on the sharding (JAX's threefry is partitionable), so runs on 1 and n devices see the
same data and noise.

The same code runs on one device (a mesh of one) and on several hosts: after
``jax.distributed.initialize()``, ``jax.devices()`` lists every process's devices and the mesh
spans them all.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"
"""The name of the mesh axis the batch is split along."""


def data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (all of them if None).

    Raises:
        ValueError: ``num_devices`` is not between 1 and the number of devices, or is not all
            of them in a run over several processes.
    """
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"--num-devices={num_devices} must be between 1 and the {len(devices)} "
            f"{devices[0].platform.upper()} device(s) available"
        )
    if jax.process_count() > 1 and num_devices != len(devices):
        # Every process must take part in every step: a mesh of some hosts' devices would
        # leave the others holding arrays they cannot read.
        raise ValueError(
            f"--num-devices={num_devices}: a run over {jax.process_count()} processes uses all "
            f"{len(devices)} devices (leave --num-devices out)"
        )
    return Mesh(np.asarray(devices[:num_devices]), (AXIS,))


def num_devices(mesh: Mesh) -> int:
    """How many devices the batch is split over."""
    return mesh.shape[AXIS]


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ``ValueError`` unless the batch splits evenly over the mesh's devices."""
    n = num_devices(mesh)
    if batch_size % n:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the {n} devices it is split over "
            f"(try --batch-size {max(n, batch_size // n * n)} or --num-devices)"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split over the devices, the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicate(tree, mesh: Mesh):
    """Places every array of ``tree`` on all devices of ``mesh``; other leaves pass through."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda leaf: jax.device_put(leaf, sharding) if isinstance(leaf, jax.Array) else leaf, tree
    )


def shard_batch(x, mesh: Mesh | None):
    """Inside ``jit``: asks for ``x`` (batch first) split over the mesh; identity without one."""
    if mesh is None or x is None:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


__all__ = [
    "AXIS",
    "batch_sharded",
    "check_batch_size",
    "data_mesh",
    "num_devices",
    "replicate",
    "replicated",
    "shard_batch",
]
