"""The population's device mesh: one axis, `lifetimes`, over every device of every host.

Meta-training is data-parallel over lifetimes (DESIGN.md): each device owns L / D lifetimes of
every population group; η, its optimiser state, the bandits, the PRNG key and the step counter are
replicated. `MetaTrainer.step` runs as per-device code under `jax.shard_map` over this mesh, so
the only cross-device traffic of a meta-step is explicit: one all-reduce (psum) of the
meta-gradient and a handful of scalars, and one all-gather of each group's [L] finished-lifetime
records for the bandit update.

The same program runs on 1 CPU device, a local GPU and a TPU pod slice; with several hosts,
`jax.distributed.initialize()` must run first so that `jax.devices()` lists all of them.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

POPULATION_AXIS = "lifetimes"


def population_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `lifetimes` over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("population_mesh needs at least one device")
    return Mesh(np.asarray(devices), (POPULATION_AXIS,))


def single_device_mesh() -> Mesh:
    """The mesh used when no mesh is given: the default device only."""
    return population_mesh(jax.devices()[:1])


def check_divisible(group_lifetimes: dict[str, int], num_devices: int, lifetimes_per_chunk: int = 0) -> None:
    """Raises ValueError unless every group's lifetimes split evenly over devices (and chunks).

    group_lifetimes: task name → L. lifetimes_per_chunk: 0 (no chunking) or a divisor of L / D.
    """
    for name, lifetimes in group_lifetimes.items():
        if lifetimes % num_devices:
            raise ValueError(
                f"group {name!r} has {lifetimes} lifetimes, which do not split evenly over "
                f"{num_devices} devices; use a multiple of {num_devices} lifetimes per task "
                f"(e.g. {max(num_devices, lifetimes - lifetimes % num_devices)})")
        per_device = lifetimes // num_devices
        if lifetimes_per_chunk and per_device % lifetimes_per_chunk:
            divisors = [d for d in range(1, per_device + 1) if per_device % d == 0]
            raise ValueError(
                f"lifetimes_per_chunk={lifetimes_per_chunk} does not divide the {per_device} "
                f"lifetimes of group {name!r} on each of {num_devices} devices; allowed: 0 (no "
                f"chunking) or one of {divisors}")


def named(mesh: Mesh, specs):
    """PartitionSpec tree → NamedSharding tree on `mesh`."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def abstract_with_sharding(abstract, shardings):
    """ShapeDtypeStruct tree with each leaf's sharding set (for jit lowering and orbax restore)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
