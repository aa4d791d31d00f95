"""Meta-training of an update rule over a population of lifetimes (LPG Algorithm 1).

`MetaTrainer` is static configuration with two pure functions, and jitted, sharded versions:

    init, step = trainer.jit_init(), trainer.jit_step()     # sharded over trainer.mesh, donated
    state = init(key)
    state, metrics = step(state)                             # one meta-update

One meta-step, for every group (task) and every lifetime in it (vmapped): K rule updates and the
meta-objective (lpg/meta/gradient.py); the meta-gradient averaged over all lifetimes of all
groups; a clipped Adam step on η — skipped (and counted) when the meta-gradient is not finite;
then per lifetime progress bookkeeping, and resets with bandit updates (lpg/meta/population.py).

Devices (lpg/meta/sharding.py). `step` is per-device code under `jax.shard_map` over a 1-D mesh
`lifetimes`: each device holds L / D lifetimes of every group and replicas of η, the optimiser
state, the bandits and the key. The lifetime-average of the meta-gradient is one psum; the bandit
update all-gathers the [L] finished-lifetime records. Per-lifetime PRNG keys are split from the
replicated key for all L lifetimes and sliced, so every lifetime sees the same randomness on 1 or
D devices and results agree up to float summation order. Without a mesh the default device is a
mesh of one.

Memory knobs: `remat` (what the backward pass keeps of each of the K inner updates) and
`lifetimes_per_chunk` (a device evaluates its lifetimes in chunks of this many — a scan over
vmapped chunks accumulating the meta-gradient — so activation memory scales with the chunk).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import optax

from lpg.meta import gradient
from lpg.meta import objective as objective_lib
from lpg.meta import population
from lpg.meta import sharding
from lpg.rules import base as rules_base

POPULATION_AXIS = sharding.POPULATION_AXIS


@flax.struct.dataclass
class MetaTrainState:
    """Everything meta-training needs to continue exactly (what a checkpoint stores)."""

    meta_params: Any
    meta_opt_state: Any
    groups: tuple  # tuple[population.GroupState, ...], one per GroupSpec
    key: jax.Array
    step: jax.Array  # int32 meta-steps taken
    skipped_updates: jax.Array  # int32 meta-updates skipped for a non-finite meta-gradient


@dataclasses.dataclass(frozen=True)
class MetaTrainer(sharding.ShardedProgram):
    """Static meta-training configuration.

    rule: the update rule being meta-learned (e.g. lpg.rules.lpg.LPG).
    groups: one GroupSpec per task in the population.
    objective: meta-objective weights (β1..β3).
    num_updates: K, agent updates per meta-gradient (truncation length).
    unroll_length: T.
    meta_learning_rate, max_meta_grad_norm: Adam on η with global-norm clipping.
    meta_lr_decay_begin, meta_lr_decay_steps, meta_lr_final_fraction: optional cosine decay of
      the meta learning rate: constant until meta-step `begin`, then cosine down to
      `final_fraction` × lr over `decay_steps` meta-steps, constant after. decay_steps = 0 keeps
      it constant (and the optimiser state tree of runs without decay).
    bandit: hyperparameter bandit settings. entropy_floor: reset a lifetime at or below this
    policy entropy.
    remat: one of gradient.REMAT_POLICIES, applied to each of the K inner updates.
    lifetimes_per_chunk: 0 evaluates all of a device's lifetimes of a group at once; n > 0 scans
      over chunks of n (must divide L / D).
    mesh: 1-D device mesh named `lifetimes` (sharding.population_mesh()); None: default device.
    """

    rule: rules_base.UpdateRule
    groups: tuple[population.GroupSpec, ...]
    objective: objective_lib.MetaObjective = objective_lib.MetaObjective()
    num_updates: int = 5
    unroll_length: int = 20
    meta_learning_rate: float = 1e-4
    max_meta_grad_norm: float = 1.0
    meta_lr_decay_begin: int = 0
    meta_lr_decay_steps: int = 0
    meta_lr_final_fraction: float = 0.1
    bandit: population.BanditConfig = population.BanditConfig()
    entropy_floor: float = 1e-3
    remat: str = "full"
    lifetimes_per_chunk: int = 0
    mesh: Mesh | None = None

    def __post_init__(self):
        if not self.groups:
            raise ValueError("MetaTrainer needs at least one population group")
        for spec in self.groups:
            if spec.rule != self.rule:
                raise ValueError(f"group {spec.task.name!r} was built for rule {spec.rule}, but the "
                                 f"trainer meta-trains {self.rule}")
        for name in ("num_updates", "unroll_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MetaTrainer.{name} must be positive, got {getattr(self, name)}")
        for name in ("meta_learning_rate", "max_meta_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MetaTrainer.{name} must be positive, got {getattr(self, name)}")
        if self.meta_lr_decay_begin < 0 or self.meta_lr_decay_steps < 0:
            raise ValueError("MetaTrainer.meta_lr_decay_begin/steps must be >= 0, got "
                             f"{self.meta_lr_decay_begin}, {self.meta_lr_decay_steps}")
        if not 0 <= self.meta_lr_final_fraction <= 1:
            raise ValueError("MetaTrainer.meta_lr_final_fraction must be in [0, 1], got "
                             f"{self.meta_lr_final_fraction}")
        if self.remat not in gradient.REMAT_POLICIES:
            raise ValueError(f"MetaTrainer.remat must be one of {gradient.REMAT_POLICIES}, got {self.remat!r}")
        if self.lifetimes_per_chunk < 0:
            raise ValueError(f"MetaTrainer.lifetimes_per_chunk must be >= 0 (0: no chunking), got "
                             f"{self.lifetimes_per_chunk}")
        if self.mesh is not None and self.mesh.axis_names != (POPULATION_AXIS,):
            raise ValueError(f"MetaTrainer.mesh must be 1-D with axis {POPULATION_AXIS!r}, got axes "
                             f"{self.mesh.axis_names}; use sharding.population_mesh()")
        sharding.check_divisible({s.task.name: s.num_lifetimes for s in self.groups},
                                 self.num_devices, self.lifetimes_per_chunk)
        for spec in self.groups:
            per_meta_step = self.steps_per_meta_step(spec)
            if per_meta_step > spec.lifetime_steps:
                raise ValueError(
                    f"group {spec.task.name!r}: one meta-step takes (K+1)·T·B = "
                    f"({self.num_updates}+1)·{self.unroll_length}·{spec.num_envs} = {per_meta_step} "
                    f"env steps, more than the lifetime of {spec.lifetime_steps}; lower K, T or "
                    "num_envs, or lengthen the lifetime")

    def steps_per_meta_step(self, spec: population.GroupSpec) -> int:
        """Env steps one lifetime takes per meta-step: K updates plus the meta-objective rollout."""
        return (self.num_updates + 1) * self.unroll_length * spec.num_envs

    @property
    def num_lifetimes(self) -> int:
        return sum(spec.num_lifetimes for spec in self.groups)

    def meta_learning_rate_schedule(self) -> float | optax.Schedule:
        """The constant meta learning rate, or its cosine decay (see the class docstring)."""
        if self.meta_lr_decay_steps == 0:
            return self.meta_learning_rate
        cosine = optax.cosine_decay_schedule(
            self.meta_learning_rate, self.meta_lr_decay_steps, alpha=self.meta_lr_final_fraction)
        return optax.join_schedules(
            [optax.constant_schedule(self.meta_learning_rate), cosine], [self.meta_lr_decay_begin])

    def meta_optimiser(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(self.max_meta_grad_norm),
            optax.adam(self.meta_learning_rate_schedule()),
        )

    def init(self, key: jax.Array, meta_params: Any = None) -> MetaTrainState:
        key, k_params, *k_groups = jax.random.split(key, 2 + len(self.groups))
        if meta_params is None:
            meta_params = self.rule.init_params(k_params)
        groups = tuple(
            population.init_group(spec, k, self.bandit) for spec, k in zip(self.groups, k_groups))
        return MetaTrainState(
            meta_params=meta_params,
            meta_opt_state=self.meta_optimiser().init(meta_params),
            groups=groups,
            key=key,
            step=jnp.int32(0),
            skipped_updates=jnp.int32(0),
        )

    # --- sharding -----------------------------------------------------------------------------

    def state_specs(self) -> MetaTrainState:
        """PartitionSpec prefix tree of MetaTrainState: lifetimes sharded, the rest replicated."""
        return MetaTrainState(
            meta_params=P(),
            meta_opt_state=P(),
            groups=tuple(population.GroupState(lifetimes=P(POPULATION_AXIS), bandit=P())
                         for _ in self.groups),
            key=P(),
            step=P(),
            skipped_updates=P(),
        )

    # --- the meta-step --------------------------------------------------------------------------

    def step(self, state: MetaTrainState) -> tuple[MetaTrainState, dict[str, jax.Array]]:
        """One meta-update (module docstring). Pure; use `jit_step()` (sharded, donated)."""
        # check_vma=False: the agents and rules are ordinary single-device code (their scans start
        # from unvarying zeros); replication of the P() outputs holds by construction — they are
        # psums, all-gathered bandit updates, or computed from replicated inputs only.
        per_device = jax.shard_map(
            self._device_step, mesh=self._mesh(), in_specs=(self.state_specs(),),
            out_specs=(self.state_specs(), P()), check_vma=False)
        return per_device(state)

    def _local_keys(self, key: jax.Array, num_lifetimes: int) -> jax.Array:
        """This device's slice of `jax.random.split(key, num_lifetimes)` (device-count invariant)."""
        per_device = num_lifetimes // self.num_devices
        start = jax.lax.axis_index(POPULATION_AXIS) * per_device
        return jax.lax.dynamic_slice_in_dim(jax.random.split(key, num_lifetimes), start, per_device)

    def _group_loss_and_grad(self, spec, meta_params, lifetimes, keys):
        """Sum of this device's meta-losses of one group, its gradient w.r.t. η, per-lifetime aux."""
        loss_fn = functools.partial(
            gradient.lifetime_meta_loss, rule=self.rule, spec=spec, objective=self.objective,
            num_updates=self.num_updates, unroll_length=self.unroll_length, remat=self.remat)

        def chunk_loss(meta_params, lifetimes, keys):
            losses, aux = jax.vmap(loss_fn, in_axes=(None, 0, 0))(meta_params, lifetimes, keys)
            return jnp.sum(losses), aux

        loss_and_grad = jax.value_and_grad(chunk_loss, has_aux=True)
        num_local = keys.shape[0]
        chunk = self.lifetimes_per_chunk or num_local
        if chunk == num_local:
            (loss, aux), grads = loss_and_grad(meta_params, lifetimes, keys)
            return loss, grads, aux

        # Scan over vmapped chunks, accumulating the gradient: activations of one chunk at a time.
        to_chunks = lambda x: x.reshape((num_local // chunk, chunk) + x.shape[1:])

        def body(carry, xs):
            loss_acc, grad_acc = carry
            (loss, aux), grads = loss_and_grad(meta_params, *xs)
            return (loss_acc + loss, jax.tree.map(jnp.add, grad_acc, grads)), aux

        zeros = jax.tree.map(jnp.zeros_like, meta_params)
        (loss, grads), aux = jax.lax.scan(
            body, (jnp.float32(0.0), zeros), jax.tree.map(to_chunks, (lifetimes, keys)))
        aux = jax.tree.map(lambda x: x.reshape((num_local,) + x.shape[2:]), aux)
        return loss, grads, aux

    def _device_step(self, state: MetaTrainState):
        """The meta-step on one device's lifetimes (inside shard_map; collectives are explicit)."""
        key, *keys = jax.random.split(state.key, 1 + 2 * len(self.groups))
        loss_keys, reset_keys = keys[: len(self.groups)], keys[len(self.groups):]

        loss, grads, auxes = 0.0, None, []
        for spec, group, key_g in zip(self.groups, state.groups, loss_keys):
            loss_g, grads_g, aux = self._group_loss_and_grad(
                spec, state.meta_params, group.lifetimes, self._local_keys(key_g, spec.num_lifetimes))
            loss = loss + loss_g
            grads = grads_g if grads is None else jax.tree.map(jnp.add, grads, grads_g)
            auxes.append(aux)
        # The lifetime-average over all devices: the one all-reduce of the meta-gradient.
        loss, grads = jax.tree.map(lambda x: jax.lax.psum(x, POPULATION_AXIS) / self.num_lifetimes,
                                   (loss, grads))

        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = self.meta_optimiser().update(grads, state.meta_opt_state, state.meta_params)
        new_params = optax.apply_updates(state.meta_params, updates)
        keep_if_bad = lambda new, old: jnp.where(finite, new, old)
        meta_params = jax.tree.map(keep_if_bad, new_params, state.meta_params)
        opt_state = jax.tree.map(keep_if_bad, opt_state, state.meta_opt_state)

        metrics = dict(meta_loss=loss, meta_grad_norm=grad_norm, skipped=(~finite).astype(jnp.int32))
        new_groups = []
        for spec, group, aux, key_g in zip(self.groups, state.groups, auxes, reset_keys):
            group, group_metrics = self._advance_group(spec, group, aux, key_g)
            new_groups.append(group)
            metrics.update({f"{spec.task.name}/{k}": v for k, v in group_metrics.items()})

        new_state = MetaTrainState(
            meta_params=meta_params,
            meta_opt_state=opt_state,
            groups=tuple(new_groups),
            key=key,
            step=state.step + 1,
            skipped_updates=state.skipped_updates + (~finite).astype(jnp.int32),
        )
        return new_state, metrics

    def _advance_group(self, spec, group, aux: gradient.LifetimeAux, key):
        """Progress bookkeeping and resets for this device's lifetimes of one group."""
        lifetimes = group.lifetimes.replace(agent=aux.agent, critic=aux.critic, env_carry=aux.env_carry)
        lifetimes = jax.vmap(
            lambda l, s, c: population.record_progress(spec, l, self.steps_per_meta_step(spec), s, c)
        )(lifetimes, aux.return_sum, aux.return_count)
        group, reset_stats = population.reset_finished(
            spec, population.GroupState(lifetimes=lifetimes, bandit=group.bandit), aux.entropy,
            self._local_keys(key, spec.num_lifetimes), self.bandit, self.entropy_floor,
            axis_name=POPULATION_AXIS)
        mean = lambda x: jax.lax.psum(jnp.sum(x), POPULATION_AXIS) / spec.num_lifetimes
        metrics = {k: mean(v) for k, v in aux.logs.items()}
        metrics.update(reset_stats)
        metrics.update(recent_return=mean(lifetimes.recent_return), entropy=mean(aux.entropy))
        return group, metrics
