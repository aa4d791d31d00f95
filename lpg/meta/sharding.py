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

import functools
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


class ShardedProgram:
    """The jit/sharding scaffolding a meta-trainer shares (MetaTrainer, ESTrainer): a subclass
    provides `mesh` (None: the default device), `init(key)`, `step(state)` and `state_specs()`
    (a PartitionSpec prefix tree of its state); this gives the shardings, the abstract state for
    restoring checkpoints, and the jitted / ahead-of-time compiled programs."""

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def _mesh(self) -> Mesh:
        return single_device_mesh() if self.mesh is None else self.mesh

    def state_shardings(self, abstract_state):
        """NamedSharding per leaf of `abstract_state` (a state or its jax.eval_shape)."""
        specs = jax.tree.map(
            lambda spec, sub: jax.tree.map(lambda _: spec, sub), self.state_specs(), abstract_state,
            is_leaf=lambda x: isinstance(x, PartitionSpec))
        return named(self._mesh(), specs)

    @functools.cached_property
    def _unsharded_abstract_state(self):
        return jax.eval_shape(self.init, jax.random.key(0))  # traced once per trainer

    def abstract_state(self):
        """The state's shapes, dtypes and shardings (for restoring a checkpoint onto the mesh)."""
        abstract = self._unsharded_abstract_state
        return abstract_with_sharding(abstract, self.state_shardings(abstract))

    def jit_init(self):
        """jit(init) whose output is laid out on the mesh (each device builds its own shards)."""
        return jax.jit(self.init, out_shardings=self.state_shardings(self._unsharded_abstract_state))

    def jit_step(self):
        """jit(step) on the mesh, donating the incoming state (no copy of the population)."""
        shardings = self.state_shardings(self._unsharded_abstract_state)
        return jax.jit(self.step, in_shardings=(shardings,), out_shardings=(shardings, None),
                       donate_argnums=0)

    def compiled_step(self):
        """`jit_step()` compiled ahead of time for this trainer's state layout: calling it never
        retraces or recompiles (an input of another shape or sharding raises instead).

        On CPU, LLVM runs at -O1 instead of -O2: measured side by side, the meta-step is as fast
        (the time is in matmul library calls and simple fused loops) and the CPU default config
        compiles ~2 s sooner (BUILD_NOTES.md).
        """
        options = {}
        if self._mesh().devices.flat[0].platform == "cpu":
            options["xla_backend_optimization_level"] = 1
        return self.jit_step().lower(self.abstract_state()).compile(compiler_options=options)


def named(mesh: Mesh, specs):
    """PartitionSpec tree → NamedSharding tree on `mesh`."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def abstract_with_sharding(abstract, shardings):
    """ShapeDtypeStruct tree with each leaf's sharding set (for jit lowering and orbax restore)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
