"""Lifetimes of meta-training (LPG Algorithm 1): sampling, bookkeeping and resets.

A *group* is one task (static shapes: its environment and agent network); the population is a
tuple of groups so that heterogeneous tasks train one rule together (DESIGN.md). A group holds
L lifetimes, batched along a leading [L] axis, and one hyperparameter bandit (Eq. 6).

Each lifetime samples, when it starts: the task's environment parameters E, fresh agent θ0 and
critic ψ0, the rule's per-lifetime state, B environments, an arm α = (α_lr, the rule's own
hyperparameters, e.g. LPG's α_y) from the bandit, γ and β0 uniformly from their
lists (SPEC Table 2). It is reset when
  * its env-step budget is spent,
  * the policy entropy reaches zero (appendix B.1 'preventing early divergence'), or
  * its parameters become non-finite (robustness: one bad lifetime never kills training).
Every reset lifetime feeds the bandit with the final return it reached (`final_return`): a
lifetime cut short by collapse or divergence counts in N(α, E) like one that ran to the end, so an
arm whose lifetimes always collapse gets a low R instead of staying "untried" (N = 0) and taking
all the probability. The first generation gets budgets spread uniformly over (0, budget] so that
lifetimes do not all end together; their (short) final returns are not given to the bandit.
"""

from __future__ import annotations

import dataclasses
import itertools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from envs import task as task_lib
from lpg import agent as agent_lib
from lpg import types
from lpg.meta import bandit as bandit_lib
from lpg.rules import base as rules_base


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """Static description of one population group.

    task: the registered task. agent: its agent (network + optimiser); critic: the meta-objective's
    critic (same torso, a value head). rule: the update rule being meta-trained (its output spec
    shaped `agent`; its `hyper_grid` is the bandit's second axis; its `init_state` starts each
    lifetime's rule state). num_lifetimes: L. num_envs: B.
    lifetime_steps: env-step budget per lifetime (the task's, or smaller for CPU runs).
    entropy_costs: β0 choices. td_lambda: λ of the critic's returns. final_fraction: part of the
    lifetime whose episodes define its final return. critic_learning_rate: the critic's step size.
    """

    task: task_lib.Task
    agent: agent_lib.Agent
    critic: agent_lib.Agent
    rule: rules_base.UpdateRule
    num_lifetimes: int
    num_envs: int
    lifetime_steps: int
    entropy_costs: tuple[float, ...] = (0.01, 0.02)
    td_lambda: float = 0.95
    final_fraction: float = 0.1
    critic_learning_rate: float = 1e-3

    def __post_init__(self):
        if self.num_lifetimes <= 0 or self.num_envs <= 0:
            raise ValueError(
                f"group {self.task.name!r}: num_lifetimes and num_envs must be positive, got "
                f"{self.num_lifetimes}, {self.num_envs}")
        if self.lifetime_steps <= 0:
            raise ValueError(f"group {self.task.name!r}: lifetime_steps must be positive, got {self.lifetime_steps}")
        if not self.critic_learning_rate > 0:
            raise ValueError(f"critic_learning_rate must be > 0, got {self.critic_learning_rate}")
        if not 0 < self.final_fraction <= 1:
            raise ValueError(f"final_fraction must be in (0, 1], got {self.final_fraction}")

    @property
    def arms(self) -> tuple[tuple[float, ...], ...]:
        """The bandit's grid of α = (α_lr, *rule hyperparameters in `rule.hyper_grid` order), in
        row-major order (LPG: arm index = i_lr · |α_y grid| + i_y)."""
        return tuple(itertools.product(self.task.learning_rates, *self.rule.hyper_grid.values()))

    @property
    def fixed_arm(self) -> int:
        """The arm of the Fig. 7 'fixed hyperparameters' ablation (bandit disabled): the middle
        value of every axis of the grid (tabular LPG: α_lr = 40, α_y = 0.5), index into `arms`."""
        grids = (self.task.learning_rates, *self.rule.hyper_grid.values())
        return int(np.ravel_multi_index(tuple(len(g) // 2 for g in grids), tuple(len(g) for g in grids)))


@flax.struct.dataclass
class LifetimeState:
    """One lifetime (batched [L] inside a group)."""

    agent: agent_lib.AgentState
    critic: agent_lib.AgentState
    env_params: object
    env_carry: agent_lib.EnvCarry
    hyper: types.HyperParams
    arm: jax.Array  # int32: bandit arm of α
    steps: jax.Array  # int32: env steps taken so far
    budget: jax.Array  # int32: env steps this lifetime may take
    feeds_bandit: jax.Array  # bool: its final return is recorded at the end
    final_return_sum: jax.Array  # returns of episodes ended in the last final_fraction of the budget
    final_return_count: jax.Array
    last_return: jax.Array  # mean return of the episodes completed in the latest meta-step with any
    episodes_completed: jax.Array  # float32 count of completed episodes in this lifetime
    recent_return: jax.Array  # exponential moving average of completed-episode returns (logs)


@flax.struct.dataclass
class GroupState:
    lifetimes: LifetimeState  # leading axis [L]
    bandit: bandit_lib.BanditState


@dataclasses.dataclass(frozen=True)
class BanditConfig:
    temperature: float = 0.1  # τ
    bonus: float = 0.2  # ρ
    window: int = 10
    # False: the Fig. 7 'fixed hyperparameters' ablation: "trained with fixed hyperparameters for
    # each training environment instead of balancing them" — every lifetime of a task uses the
    # task's `GroupSpec.fixed_arm` (γ and β0 are still drawn per lifetime).
    enabled: bool = True


def _obs_example(spec: GroupSpec, env_params):
    obs, _ = spec.task.env.reset(jax.random.key(0), env_params)
    return obs


def new_lifetime(
    spec: GroupSpec, key: jax.Array, bandit: bandit_lib.BanditState, bandit_cfg: BanditConfig,
    budget: jax.Array, feeds_bandit: jax.Array,
) -> LifetimeState:
    """Samples a fresh lifetime (E, θ0, ψ0, envs, α, γ, β0). Unbatched; vmap over keys."""
    k_env, k_agent, k_critic, k_reset, k_arm, k_gamma, k_beta = jax.random.split(key, 7)
    env_params = spec.task.sample_params(k_env)
    obs = _obs_example(spec, env_params)
    arms = jnp.asarray(spec.arms, jnp.float32)  # [A, 1 + number of rule hyperparameters]
    if bandit_cfg.enabled:
        arm = bandit_lib.sample_arm(k_arm, bandit, bandit_cfg.temperature, bandit_cfg.bonus)
    else:
        arm = jnp.int32(spec.fixed_arm)
    hyper = types.HyperParams(
        learning_rate=arms[arm, 0],
        rule={name: arms[arm, 1 + i] for i, name in enumerate(spec.rule.hyper_grid)},
        discount=jax.random.choice(k_gamma, jnp.asarray(spec.task.discounts, jnp.float32)),
        entropy_cost=jax.random.choice(k_beta, jnp.asarray(spec.entropy_costs, jnp.float32)),
        value_cost=jnp.float32(0.5),
        td_lambda=jnp.float32(spec.td_lambda),
    )
    return LifetimeState(
        agent=agent_lib.init_agent_state(spec.agent, k_agent, obs, spec.rule),
        critic=agent_lib.init_agent_state(spec.critic, k_critic, obs, None),
        env_params=env_params,
        env_carry=agent_lib.init_env_carry(spec.task.env, env_params, k_reset, spec.num_envs),
        hyper=hyper,
        arm=arm.astype(jnp.int32),
        steps=jnp.int32(0),
        budget=jnp.asarray(budget, jnp.int32),
        feeds_bandit=jnp.asarray(feeds_bandit, bool),
        final_return_sum=jnp.float32(0.0),
        final_return_count=jnp.float32(0.0),
        last_return=jnp.float32(0.0),
        episodes_completed=jnp.float32(0.0),
        recent_return=jnp.float32(0.0),
    )


def init_group(spec: GroupSpec, key: jax.Array, bandit_cfg: BanditConfig) -> GroupState:
    """The first generation, with budgets staggered over (0, lifetime_steps]."""
    bandit = bandit_lib.init_bandit(len(spec.arms), bandit_cfg.window)
    k_budget, k_life = jax.random.split(key)
    fractions = jax.random.uniform(k_budget, (spec.num_lifetimes,), minval=0.0, maxval=1.0)
    budgets = jnp.maximum((fractions * spec.lifetime_steps).astype(jnp.int32), 1)
    keys = jax.random.split(k_life, spec.num_lifetimes)
    # The bandit is empty, so every first-generation arm is drawn uniformly (or fixed: bandit off).
    lifetimes = jax.vmap(lambda k, b: new_lifetime(spec, k, bandit, bandit_cfg, b, False))(keys, budgets)
    return GroupState(lifetimes=lifetimes, bandit=bandit)


def _tree_all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def final_return(lifetime: LifetimeState) -> jax.Array:
    """R of one lifetime for the bandit (Eq. 6): the return it reached at its end.

    The mean return of the episodes that ended in the last `final_fraction` of the budget; if none
    ended there (e.g. long episodes that all run to their time limit together), the mean return of
    the last completed episodes (latest meta-step that completed any); if no episode completed at
    all, the mean partial return of the running episodes. Always covers at least one episode (or
    the one in progress), so a lifetime whose returns went 10 → 20 → 30 → 40 reports 40, not a
    moving average dominated by its first episode.
    """
    partial = jnp.mean(lifetime.env_carry.episode_return)
    before_final = jnp.where(lifetime.episodes_completed > 0, lifetime.last_return, partial)
    return jnp.where(
        lifetime.final_return_count > 0,
        lifetime.final_return_sum / jnp.maximum(lifetime.final_return_count, 1.0),
        before_final,
    )


def record_progress(
    spec: GroupSpec, lifetime: LifetimeState, steps_taken: int, return_sum: jax.Array,
    return_count: jax.Array, ema_decay: float = 0.95,
) -> LifetimeState:
    """Advances the step counter and the return statistics after one meta-step (unbatched).

    return_sum, return_count: scalars, the returns and number of episodes completed in it.
    """
    steps = lifetime.steps + steps_taken
    in_final = steps > (1.0 - spec.final_fraction) * lifetime.budget
    completed = return_count > 0
    mean_return = return_sum / jnp.maximum(return_count, 1.0)
    recent = jnp.where(
        completed, ema_decay * lifetime.recent_return + (1 - ema_decay) * mean_return,
        lifetime.recent_return)
    # The first completed episodes replace the zero initial value instead of being averaged in.
    recent = jnp.where((lifetime.episodes_completed == 0) & completed, mean_return, recent)
    return lifetime.replace(
        steps=steps,
        final_return_sum=lifetime.final_return_sum + jnp.where(in_final, return_sum, 0.0),
        final_return_count=lifetime.final_return_count + jnp.where(in_final, return_count, 0.0),
        last_return=jnp.where(completed, mean_return, lifetime.last_return),
        episodes_completed=lifetime.episodes_completed + return_count,
        recent_return=recent,
    )


def _all_lifetimes(x: jax.Array, axis_name: str | None) -> jax.Array:
    """[L_local] → [L] in global lifetime order (identity when the group is not sharded)."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _sum_over_lifetimes(x: jax.Array, axis_name: str | None) -> jax.Array:
    total = jnp.sum(x)
    return total if axis_name is None else jax.lax.psum(total, axis_name)


def reset_finished(
    spec: GroupSpec, group: GroupState, entropy: jax.Array, keys: jax.Array,
    bandit_cfg: BanditConfig, entropy_floor: float, axis_name: str | None = None,
) -> tuple[GroupState, dict[str, jax.Array]]:
    """Resets lifetimes that ended (budget, zero entropy, non-finite) and feeds the bandit.

    group.lifetimes, entropy ([L] mean policy entropy of each lifetime's latest rollout) and keys
    ([L] one PRNG key per lifetime, used only if it is reset) hold this device's lifetimes when
    the group is sharded under `shard_map` over `axis_name`; the bandit is replicated and gets
    every device's records (all-gathered, in global lifetime order, so the result does not depend
    on the device count).
    """
    lifetimes = group.lifetimes
    finite = jax.vmap(lambda a, c: _tree_all_finite((a.params, c.params)))(lifetimes.agent, lifetimes.critic)
    finite &= jnp.isfinite(entropy)
    out_of_budget = lifetimes.steps >= lifetimes.budget
    collapsed = finite & (entropy <= entropy_floor)
    reset = out_of_budget | collapsed | ~finite
    finals = jax.vmap(final_return)(lifetimes)
    finished = out_of_budget & finite
    # Every reset counts in N (Eq. 6) with the return reached, collapsed and diverged ones too
    # (module docstring). Returns are sums of rewards, finite even when θ is not; the guard
    # keeps a NaN out of the bandit all the same.
    records = reset & lifetimes.feeds_bandit & jnp.isfinite(finals)
    gather = lambda x: _all_lifetimes(x, axis_name)
    bandit = bandit_lib.record_many(
        group.bandit, gather(lifetimes.arm), gather(finals), gather(records))

    def replace_reset(lifetimes):
        fresh = jax.vmap(lambda k: new_lifetime(
            spec, k, bandit, bandit_cfg, spec.lifetime_steps, True))(keys)
        return jax.tree.map(
            lambda new, old: jnp.where(reset.reshape(reset.shape + (1,) * (old.ndim - 1)), new, old),
            fresh, lifetimes)

    # Sampling fresh lifetimes (tables of up to 8064 states) costs more than a select; most
    # meta-steps reset nobody, so only pay for it when someone (on this device) is reset.
    lifetimes = jax.lax.cond(jnp.any(reset), replace_reset, lambda l: l, lifetimes)
    total = lambda x: _sum_over_lifetimes(x, axis_name)
    num_finished = total(finished)
    stats = dict(
        resets_budget=num_finished,
        resets_entropy=total(collapsed & ~out_of_budget),
        resets_nonfinite=total(~finite),
        bandit_records=total(records),
        finished_return=total(jnp.where(finished, finals, 0.0)) / jnp.maximum(num_finished, 1),
    )
    return GroupState(lifetimes=lifetimes, bandit=bandit), stats
