"""Evolution strategies as the meta-gradient estimator: OpenAI-ES over η of any learned rule.

The alternative to truncated backprop through K updates (`lpg.meta.trainer`): every generation
perturbs η into a population of P candidates η_i = η + σ ε_i (antithetic: ε_{i + P/2} = −ε_i),
trains one fresh agent per candidate *for a whole (short) lifetime* with the frozen candidate rule,
scores it by the returns it reached (the fitness), and moves η along

    g = 1 / (P σ) Σ_i s_i ε_i,      s = centred ranks of the fitnesses in [−0.5, 0.5]

with an optax optimiser (Salimans et al. 2017; EPG's outer loop, Houthooft et al. 2018 Eq. 2; the
TA-LPG recipe of training LPG by ES over whole lifetimes). evosax 0.3's `Open_ES` does the
sampling, the σ schedule and the optimiser step; what is specific here is the inner problem, the
pairing and the devices:

  * Antithetic pairs share everything random: candidate i and i + P/2 get the same task
    parameters E, agent initialisation θ0, environment keys and hyperparameters, so their fitness
    difference measures the ±σε perturbation only (common random numbers).
  * Fitness of one candidate in one group: the mean return of the episodes completed over the
    whole lifetime ("mean": rewards learning fast, EPG's criterion) or over its last
    `final_fraction` of updates ("final"). With several groups (tasks of different return scales)
    each group is rank-shaped separately and the shaped scores are summed, so no task dominates by
    its reward scale. A candidate whose lifetime diverged (non-finite return) ranks last.
  * Hyperparameters per pair: α_lr and the rule's own grid values uniformly from the group's arms
    (no bandit: ES never keeps a lifetime), γ from the task's list, the entropy cost from the
    group's list; `anneal` overrides rule hyperparameters with a linear schedule in the generation
    (EPG's PPO-guidance weight α, 1 → 0).
  * Devices: the P candidates are the population axis of the 1-D mesh (`lpg.meta.sharding`), P / D
    per device under `jax.shard_map`; η, the ES state and the key are replicated. Every device asks
    evosax for the whole (replicated) population and keys and keeps its slice, the [P] fitnesses
    are all-gathered and every device makes the same `tell`. So the same program runs on 1
    device, N devices and N hosts with the same η (up to float summation order inside a lifetime).

`ESTrainer` shares `MetaTrainer`'s jit/sharding scaffolding (`sharding.ShardedProgram`: jit_init,
compiled_step, abstract_state) and the interface the launcher uses (groups, steps_per_meta_step), so checkpoints, exact resume,
metrics and the executable cache work unchanged (launch/train_loop.py). One meta-step is one
generation; `GroupSpec.num_lifetimes` is P for every group.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import evosax.algorithms
from evosax.core import fitness_shaping
import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import optax

from lpg import training
from lpg import types
from lpg.meta import population
from lpg.meta import sharding
from lpg.rules import base as rules_base

POPULATION_AXIS = sharding.POPULATION_AXIS
FITNESS_KINDS = ("mean", "final")


@flax.struct.dataclass
class ESTrainState:
    """Everything ES meta-training needs to continue exactly (what a checkpoint stores).

    meta_params: η, the ES mean as the rule's pytree (= `es_state.mean` unravelled).
    es_state: evosax Open_ES state (flat mean, σ, optimiser state, generation counter, best).
    """

    meta_params: Any
    es_state: Any
    key: jax.Array
    step: jax.Array  # int32 generations taken
    skipped_updates: jax.Array  # int32 generations in which no candidate had a finite fitness


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """OpenAI-ES settings.

    population_size: P candidates per generation (even: P / 2 antithetic pairs).
    sigma: σ at generation 0; sigma_decay: σ multiplies by this every generation, down to
      sigma_min (1.0: constant σ).
    learning_rate: Adam's step size on the mean; max_grad_norm: global-norm clip of the ES
      gradient estimate before Adam (0: none).
    fitness: "mean" (all the lifetime's completed episodes) or "final" (its last
      `final_fraction` of updates).
    anneal: ((rule hyperparameter, start, end, generations), ...): linear schedules overriding
      the sampled value, e.g. (("pg_guidance", 1.0, 0.0, 500),) for EPG.
    """

    population_size: int = 8
    sigma: float = 0.01
    sigma_decay: float = 1.0
    sigma_min: float = 0.0
    learning_rate: float = 1e-2
    max_grad_norm: float = 0.0
    fitness: str = "mean"
    final_fraction: float = 0.1
    anneal: tuple[tuple[str, float, float, int], ...] = ()

    def __post_init__(self):
        p = self.population_size
        if not isinstance(p, int) or isinstance(p, bool) or p < 2 or p % 2:
            raise ValueError(f"ES population_size must be an even int >= 2 (antithetic pairs), got {p!r}")
        for name in ("sigma", "learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ES {name} must be a finite number > 0, got {value!r}")
        if not 0 < self.sigma_decay <= 1:
            raise ValueError(f"ES sigma_decay must be in (0, 1], got {self.sigma_decay!r}")
        if not 0 <= self.sigma_min <= self.sigma:
            raise ValueError(f"ES sigma_min must be in [0, sigma={self.sigma}], got {self.sigma_min!r}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise ValueError(f"ES max_grad_norm must be >= 0 (0: no clipping), got {self.max_grad_norm!r}")
        if self.fitness not in FITNESS_KINDS:
            raise ValueError(f"ES fitness must be one of {FITNESS_KINDS}, got {self.fitness!r}")
        if not 0 < self.final_fraction <= 1:
            raise ValueError(f"ES final_fraction must be in (0, 1], got {self.final_fraction!r}")
        for entry in self.anneal:
            if len(entry) != 4 or not isinstance(entry[0], str) or int(entry[3]) < 1:
                raise ValueError(f"ES anneal entries are (name, start, end, generations >= 1), got {entry!r}")

    def sigma_schedule(self) -> optax.Schedule:
        if self.sigma_decay == 1.0:
            return optax.constant_schedule(self.sigma)
        return optax.exponential_decay(self.sigma, transition_steps=1, decay_rate=self.sigma_decay,
                                       end_value=self.sigma_min)

    def optimiser(self) -> optax.GradientTransformation:
        adam = optax.adam(self.learning_rate)
        if self.max_grad_norm > 0:
            return optax.chain(optax.clip_by_global_norm(self.max_grad_norm), adam)
        return adam


def lifetime_fitness(stats: dict[str, jax.Array], final_episode_return: jax.Array, kind: str,
                     final_fraction: float) -> jax.Array:
    """One lifetime's fitness from its per-update stats.

    Args:
      stats: "return_sum", "return_count" of shape [U] (completed episodes per update).
      final_episode_return: [B] partial returns of the episodes running at the end (used only
        when no episode completed in the scored window nor in the whole lifetime).
      kind: "mean" scores all U updates, "final" the last ceil(final_fraction · U).
    Returns:
      scalar float32.
    """
    sums, counts = stats["return_sum"], stats["return_count"]
    num_updates = sums.shape[-1]
    start = 0 if kind == "mean" else num_updates - max(1, math.ceil(final_fraction * num_updates))
    window_sum, window_count = jnp.sum(sums[start:]), jnp.sum(counts[start:])
    all_sum, all_count = jnp.sum(sums), jnp.sum(counts)
    partial = jnp.mean(final_episode_return)
    whole = jnp.where(all_count > 0, all_sum / jnp.maximum(all_count, 1.0), partial)
    return jnp.where(window_count > 0, window_sum / jnp.maximum(window_count, 1.0), whole)


def shaped_fitness(group_fitness: jax.Array) -> jax.Array:
    """[G, P] returns (higher is better) → [P] scores for evosax (lower is better): the sum over
    groups of each group's centred ranks of −return (NaN ranks last, i.e. highest)."""
    ranks = jax.vmap(lambda f: fitness_shaping.centered_rank_fitness_shaping_fn(None, -f, None, None))(
        group_fitness)
    return jnp.sum(ranks, axis=0)


@dataclasses.dataclass(frozen=True)
class ESTrainer(sharding.ShardedProgram):
    """Static ES meta-training configuration (module docstring).

    rule: the learned rule; groups: one GroupSpec per task (`num_lifetimes` must equal P; its
    `lifetime_steps` fix U = lifetime_steps // (T · B) updates per candidate lifetime).
    es: ESConfig. unroll_length: T. lifetimes_per_chunk: 0 runs a device's candidates in one
    vmap; n > 0 as a sequential map over chunks of n (must divide P / D). mesh: as MetaTrainer.
    """

    rule: rules_base.UpdateRule
    groups: tuple[population.GroupSpec, ...]
    es: ESConfig = ESConfig()
    unroll_length: int = 20
    lifetimes_per_chunk: int = 0
    mesh: Mesh | None = None

    def __post_init__(self):
        if not self.groups:
            raise ValueError("ESTrainer needs at least one population group")
        if self.unroll_length <= 0:
            raise ValueError(f"ESTrainer.unroll_length must be positive, got {self.unroll_length}")
        if self.lifetimes_per_chunk < 0:
            raise ValueError(f"ESTrainer.lifetimes_per_chunk must be >= 0 (0: no chunking), got "
                             f"{self.lifetimes_per_chunk}")
        if self.mesh is not None and self.mesh.axis_names != (POPULATION_AXIS,):
            raise ValueError(f"ESTrainer.mesh must be 1-D with axis {POPULATION_AXIS!r}, got axes "
                             f"{self.mesh.axis_names}; use sharding.population_mesh()")
        names = tuple(self.rule.hyper_grid)
        for name, *_ in self.es.anneal:
            if name not in names:
                raise ValueError(f"ES anneal names rule hyperparameter {name!r}; {type(self.rule).__name__} "
                                 f"has {names or 'none'}")
        for spec in self.groups:
            if spec.rule != self.rule:
                raise ValueError(f"group {spec.task.name!r} was built for rule {spec.rule}, but the "
                                 f"trainer meta-trains {self.rule}")
            if spec.num_lifetimes != self.es.population_size:
                raise ValueError(f"group {spec.task.name!r}: ES runs one lifetime per candidate, so "
                                 f"num_lifetimes must be the population size {self.es.population_size}, "
                                 f"got {spec.num_lifetimes}")
            if self.num_updates(spec) < 1:
                raise ValueError(
                    f"group {spec.task.name!r}: a lifetime of {spec.lifetime_steps} env steps is shorter "
                    f"than one update of T·B = {self.unroll_length}·{spec.num_envs} steps; lengthen "
                    "the lifetime or lower T or num_envs")
        sharding.check_divisible({s.task.name: s.num_lifetimes for s in self.groups},
                                 self.num_devices, self.lifetimes_per_chunk)

    # --- sizes ----------------------------------------------------------------------------------

    def num_updates(self, spec: population.GroupSpec) -> int:
        """U: agent updates in one candidate's lifetime of this group."""
        return spec.lifetime_steps // (self.unroll_length * spec.num_envs)

    def steps_per_meta_step(self, spec: population.GroupSpec) -> int:
        """Env steps one candidate's lifetime of this group takes per generation: U · T · B."""
        return self.num_updates(spec) * self.unroll_length * spec.num_envs

    @property
    def num_lifetimes(self) -> int:
        return sum(spec.num_lifetimes for spec in self.groups)

    # --- evosax ---------------------------------------------------------------------------------

    @functools.cached_property
    def _template(self):
        """Zeros shaped like η: evosax ravels/unravels candidates with it."""
        abstract = jax.eval_shape(self.rule.init_params, jax.random.key(0))
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)

    @functools.cached_property
    def strategy(self) -> evosax.algorithms.Open_ES:
        # Fitness arrives already rank-shaped per group (`shaped_fitness`): identity here.
        return evosax.algorithms.Open_ES(
            population_size=self.es.population_size, solution=self._template,
            use_antithetic_sampling=True, optimizer=self.es.optimiser(),
            std_schedule=self.es.sigma_schedule(),
            fitness_shaping_fn=fitness_shaping.identity_fitness_shaping_fn)

    def init(self, key: jax.Array, meta_params: Any = None) -> ESTrainState:
        key, k_params, k_es = jax.random.split(key, 3)
        if meta_params is None:
            meta_params = self.rule.init_params(k_params)
        es_state = self.strategy.init(k_es, meta_params, self.strategy.default_params)
        # evosax starts some counters as Python scalars; fix their dtypes for checkpoints.
        es_state = es_state.replace(generation_counter=jnp.int32(es_state.generation_counter),
                                    best_fitness=jnp.float32(es_state.best_fitness))
        return ESTrainState(meta_params=meta_params, es_state=es_state, key=key, step=jnp.int32(0),
                            skipped_updates=jnp.int32(0))

    # --- sharding (everything replicated; the candidates are split inside `step`) ------------

    def state_specs(self) -> ESTrainState:
        return ESTrainState(meta_params=P(), es_state=P(), key=P(), step=P(), skipped_updates=P())

    # --- one generation -------------------------------------------------------------------------

    def step(self, state: ESTrainState) -> tuple[ESTrainState, dict[str, jax.Array]]:
        """One ES generation (module docstring). Pure; use `jit_step()` (sharded, donated)."""
        per_device = jax.shard_map(
            self._device_step, mesh=self._mesh(), in_specs=(self.state_specs(),),
            out_specs=(self.state_specs(), P()), check_vma=False)
        return per_device(state)

    def pair_hyper(self, spec: population.GroupSpec, key: jax.Array, step: jax.Array) -> types.HyperParams:
        """One antithetic pair's hyperparameters (unbatched): α uniform over the group's arms, γ and
        the entropy cost uniform over their lists, annealed rule hyperparameters set by `step`."""
        k_arm, k_gamma, k_beta = jax.random.split(key, 3)
        arms = jnp.asarray(spec.arms, jnp.float32)
        arm = jax.random.randint(k_arm, (), 0, arms.shape[0])
        rule_hyper = {name: arms[arm, 1 + i] for i, name in enumerate(self.rule.hyper_grid)}
        for name, start, end, generations in self.es.anneal:
            frac = jnp.minimum(step.astype(jnp.float32) / float(generations), 1.0)
            rule_hyper[name] = jnp.float32(start) + (jnp.float32(end) - jnp.float32(start)) * frac
        return types.HyperParams(
            learning_rate=arms[arm, 0], rule=rule_hyper,
            discount=jax.random.choice(k_gamma, jnp.asarray(spec.task.discounts, jnp.float32)),
            entropy_cost=jax.random.choice(k_beta, jnp.asarray(spec.entropy_costs, jnp.float32)),
            value_cost=jnp.float32(0.5), td_lambda=jnp.float32(spec.td_lambda))

    def candidate_lifetime(self, spec: population.GroupSpec, meta_params: Any, key: jax.Array,
                           hyper: types.HyperParams):
        """A whole fresh lifetime trained by the candidate rule: (fitness, stats [U], final state).

        The lifetime depends only on `key` (its E, θ0, envs and update keys) and `hyper`."""
        k_init, k_train = jax.random.split(key)
        states = training.init_lifetimes_from_keys(spec.task, spec.agent, k_init[None], spec.num_envs,
                                                   rule=self.rule)
        final, stats = training.continue_training(
            spec.task, self.rule, spec.agent, meta_params, hyper, states, keys=k_train[None],
            num_updates=self.num_updates(spec), unroll_length=self.unroll_length)
        stats = jax.tree.map(lambda x: x[0], stats)  # drop the lifetime axis of 1
        fitness = lifetime_fitness(stats, final.carry.episode_return[0], self.es.fitness,
                                   self.es.final_fraction)
        return fitness, stats

    def population_fitness(self, state: ESTrainState) -> jax.Array:
        """[G, P] fitness of this generation's candidates (what `step` ranks), without updating."""
        per_device = jax.shard_map(
            lambda s: self._device_fitness(s)[1], mesh=self._mesh(), in_specs=(self.state_specs(),),
            out_specs=P(), check_vma=False)
        return per_device(state)

    def _device_fitness(self, state: ESTrainState):
        """(keys for the rest of the step, [G, P] all-gathered fitness, candidates, metrics)."""
        key, k_ask, k_tell, *k_groups = jax.random.split(state.key, 3 + len(self.groups))
        population_size, pairs = self.es.population_size, self.es.population_size // 2
        per_device = population_size // self.num_devices
        start = jax.lax.axis_index(POPULATION_AXIS) * per_device
        local = lambda x: jax.lax.dynamic_slice_in_dim(x, start, per_device)

        candidates, _ = self.strategy.ask(k_ask, state.es_state, self.strategy.default_params)
        local_candidates = jax.tree.map(local, candidates)
        fitness, metrics = [], {}
        for spec, k_group in zip(self.groups, k_groups):
            k_lives, k_hypers = jax.random.split(k_group)
            # Pair j = candidates j and j + P/2 (evosax stacks [ε, −ε]): same key, same hyper.
            pair_keys = jnp.concatenate([jax.random.split(k_lives, pairs)] * 2)
            pair_hypers = jax.vmap(lambda k: self.pair_hyper(spec, k, state.step))(
                jax.random.split(k_hypers, pairs))
            hypers = jax.tree.map(lambda x: jnp.concatenate([x, x]), pair_hypers)
            run = lambda args, spec=spec: self.candidate_lifetime(spec, *args)
            inputs = (local_candidates, local(pair_keys), jax.tree.map(local, hypers))
            if self.lifetimes_per_chunk:
                local_fitness, stats = jax.lax.map(run, inputs, batch_size=self.lifetimes_per_chunk)
            else:
                local_fitness, stats = jax.vmap(run)(inputs)
            group_fitness = jax.lax.all_gather(local_fitness, POPULATION_AXIS, tiled=True)  # [P]
            fitness.append(group_fitness)
            finite = jnp.isfinite(group_fitness)
            metrics[f"{spec.task.name}/recent_return"] = jnp.sum(jnp.where(finite, group_fitness, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
            metrics[f"{spec.task.name}/best_fitness"] = jnp.max(jnp.where(finite, group_fitness, -jnp.inf))
            metrics[f"{spec.task.name}/diverged"] = jnp.sum(~finite).astype(jnp.int32)
            metrics[f"{spec.task.name}/entropy"] = jax.lax.pmean(jnp.mean(stats["entropy"]), POPULATION_AXIS)
        return (key, k_tell), jnp.stack(fitness), candidates, metrics

    def _device_step(self, state: ESTrainState):
        (key, k_tell), fitness, candidates, metrics = self._device_fitness(state)  # fitness [G, P]
        es_state = state.es_state
        any_finite = jnp.any(jnp.isfinite(fitness))
        new_es_state, _ = self.strategy.tell(k_tell, candidates, shaped_fitness(fitness), es_state,
                                             self.strategy.default_params)
        # Nothing to learn from if every candidate diverged: keep η (and count the generation).
        new_es_state = jax.tree.map(lambda new, old: jnp.where(any_finite, new, old), new_es_state, es_state)
        meta_params = self.strategy.get_mean(new_es_state)
        mean_finite = jnp.where(jnp.isfinite(fitness), fitness, 0.0).sum() / jnp.maximum(jnp.isfinite(fitness).sum(), 1)
        metrics.update(
            meta_loss=-mean_finite,  # the launcher's progress bar: lower is better, as for backprop
            sigma=new_es_state.std,
            step_norm=optax.tree.norm(jax.tree.map(jnp.subtract, meta_params, state.meta_params)),
            skipped=(~any_finite).astype(jnp.int32))
        new_state = ESTrainState(
            meta_params=meta_params, es_state=new_es_state, key=key, step=state.step + 1,
            skipped_updates=state.skipped_updates + (~any_finite).astype(jnp.int32))
        return new_state, metrics
