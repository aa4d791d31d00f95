"""Meta-training of an update rule over a population of lifetimes (LPG Algorithm 1).

`MetaTrainer` is static configuration with two pure functions:

    state = trainer.init(key)
    state, metrics = trainer.step(state)     # one meta-update; the caller jits (state donated)

One meta-step, for every group (task) and every lifetime in it (vmapped over the named axis
`POPULATION_AXIS`): K rule updates and the meta-objective (lpg/meta/gradient.py); the
meta-gradient averaged over all lifetimes of all groups; a clipped Adam step on η — skipped
(and counted) when the meta-gradient is not finite; then per lifetime progress
bookkeeping, and resets with bandit updates (lpg/meta/population.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from lpg.meta import gradient
from lpg.meta import objective as objective_lib
from lpg.meta import population
from lpg.rules import base as rules_base

POPULATION_AXIS = "lifetimes"


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
class MetaTrainer:
    """Static meta-training configuration.

    rule: the update rule being meta-learned (e.g. lpg.rules.lpg.LPG).
    groups: one GroupSpec per task in the population.
    objective: meta-objective weights (β1..β3).
    num_updates: K, agent updates per meta-gradient (truncation length).
    unroll_length: T.
    meta_learning_rate, max_meta_grad_norm: Adam on η with global-norm clipping.
    bandit: hyperparameter bandit settings. entropy_floor: reset a lifetime at or below this
    policy entropy. remat: jax.checkpoint each of the K updates.
    """

    rule: rules_base.UpdateRule
    groups: tuple[population.GroupSpec, ...]
    objective: objective_lib.MetaObjective = objective_lib.MetaObjective()
    num_updates: int = 5
    unroll_length: int = 20
    meta_learning_rate: float = 1e-4
    max_meta_grad_norm: float = 1.0
    bandit: population.BanditConfig = population.BanditConfig()
    entropy_floor: float = 1e-3
    remat: bool = True

    def __post_init__(self):
        if not self.groups:
            raise ValueError("MetaTrainer needs at least one population group")
        for name in ("num_updates", "unroll_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MetaTrainer.{name} must be positive, got {getattr(self, name)}")
        for name in ("meta_learning_rate", "max_meta_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MetaTrainer.{name} must be positive, got {getattr(self, name)}")
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

    def meta_optimiser(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(self.max_meta_grad_norm),
            optax.adam(self.meta_learning_rate),
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

    def _meta_loss(self, meta_params, groups, keys):
        """Mean meta-loss over every lifetime of every group, and each group's aux."""
        total, auxes = 0.0, []
        for spec, group, key in zip(self.groups, groups, keys):
            loss_fn = functools.partial(
                gradient.lifetime_meta_loss, rule=self.rule, spec=spec, objective=self.objective,
                num_updates=self.num_updates, unroll_length=self.unroll_length, remat=self.remat)
            losses, aux = jax.vmap(loss_fn, in_axes=(None, 0, 0), axis_name=POPULATION_AXIS)(
                meta_params, group.lifetimes, jax.random.split(key, spec.num_lifetimes))
            total = total + jnp.sum(losses)
            auxes.append(aux)
        return total / self.num_lifetimes, auxes

    def step(self, state: MetaTrainState) -> tuple[MetaTrainState, dict[str, jax.Array]]:
        """One meta-update (module docstring). Pure; jit it with the state donated."""
        key, *keys = jax.random.split(state.key, 1 + 2 * len(self.groups))
        loss_keys, reset_keys = keys[: len(self.groups)], keys[len(self.groups):]
        (loss, auxes), grads = jax.value_and_grad(self._meta_loss, has_aux=True)(
            state.meta_params, state.groups, loss_keys)

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
        """Progress bookkeeping and resets for one group after the meta-update."""
        lifetimes = group.lifetimes.replace(agent=aux.agent, critic=aux.critic, env_carry=aux.env_carry)
        lifetimes = jax.vmap(
            lambda l, s, c: population.record_progress(spec, l, self.steps_per_meta_step(spec), s, c)
        )(lifetimes, aux.return_sum, aux.return_count)
        group, reset_stats = population.reset_finished(
            spec, population.GroupState(lifetimes=lifetimes, bandit=group.bandit), aux.entropy, key,
            self.bandit, self.entropy_floor)
        metrics = {k: jnp.mean(v) for k, v in aux.logs.items()}
        metrics.update(reset_stats)
        metrics.update(
            recent_return=jnp.mean(lifetimes.recent_return),
            entropy=jnp.mean(aux.entropy),
        )
        return group, metrics
