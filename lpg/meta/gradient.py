"""Truncated meta-gradient through K agent updates (LPG Eq. 3–4, Algorithm 1).

For one lifetime: scan K learner steps (each a fresh T-step rollout and one agent update with the
rule), rematerialised per step with `jax.checkpoint` so memory grows with K only by one step's
carry; then the updated agent θ_K acts for one more fresh rollout on which the meta-objective is
evaluated with the critic's advantages (the critic trains on all K + 1 rollouts, off the
gradient path). `jax.grad` of this w.r.t. η differentiates through the K updates (θ_K is a function of η via the rule's targets), truncated at the window start: the
incoming θ_0 is a constant (sliding window along the lifetime). Sampled actions and environment
transitions carry no gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lpg import agent as agent_lib
from lpg.meta import objective as objective_lib
from lpg.meta import population
from lpg.rules import base as rules_base


REMAT_POLICIES = ("full", "dots", "none")


def rematerialise(fn, policy: str):
    """`fn` wrapped by `jax.checkpoint` according to `policy` (see `lifetime_meta_loss`)."""
    if policy == "full":
        return jax.checkpoint(fn)
    if policy == "dots":
        return jax.checkpoint(fn, policy=jax.checkpoint_policies.dots_saveable)
    if policy == "none":
        return fn
    raise ValueError(f"unknown remat policy {policy!r}; allowed: {REMAT_POLICIES}")


class LifetimeAux(NamedTuple):
    """What one lifetime's meta-loss hands back besides the loss (no gradient flows here)."""

    agent: agent_lib.AgentState  # θ_K and its optimiser state
    critic: agent_lib.AgentState  # ψ after its K + 1 updates
    env_carry: agent_lib.EnvCarry
    return_sum: jax.Array  # completed-episode returns over all K+1 rollouts
    return_count: jax.Array
    entropy: jax.Array  # policy entropy of θ_K on the fresh rollout
    logs: dict


def lifetime_meta_loss(
    meta_params: Any,
    lifetime: population.LifetimeState,
    key: jax.Array,
    *,
    rule: rules_base.UpdateRule,
    spec: population.GroupSpec,
    objective: objective_lib.MetaObjective,
    num_updates: int,
    unroll_length: int,
    remat: str = "full",
) -> tuple[jax.Array, LifetimeAux]:
    """Meta-loss of one lifetime after `num_updates` (K) rule updates. Unbatched; vmap over [L].

    remat: what the backward pass keeps of each inner update (one of REMAT_POLICIES): "full"
    keeps only the K step carries and recomputes each update (memory ~ K · carry + one update),
    "dots" also keeps every matmul output (less recompute, more memory), "none" keeps
    everything (fastest, memory ~ K · update).
    """
    env, agent = spec.task.env, spec.agent
    hyper = lifetime.hyper
    inner_keys = jax.random.split(key, num_updates + 1)

    def train_critic(critic_state, rollout):
        # A side computation: the critic only reduces the meta-gradient's variance (appendix B.1).
        return objective_lib.critic_update(
            spec.critic, jax.lax.stop_gradient(critic_state), jax.lax.stop_gradient(rollout), hyper,
            spec.critic_learning_rate)

    def inner_update(carry, step_key):
        agent_state, critic_state, env_carry = carry
        rollout, env_carry = agent_lib.unroll(
            agent, agent_state.params, env, lifetime.env_params, env_carry, step_key, unroll_length)
        agent_state, targets, stats = agent_lib.agent_update(
            rule, agent, meta_params, agent_state, rollout, hyper)
        critic_state, stats["critic_loss"] = train_critic(critic_state, rollout)
        return (agent_state, critic_state, env_carry), (targets, stats)

    inner_update = rematerialise(inner_update, remat)
    (agent_state, critic_state, env_carry), (inner_targets, inner_stats) = jax.lax.scan(
        inner_update, (lifetime.agent, lifetime.critic, lifetime.env_carry), inner_keys[:-1])

    rollout, env_carry = agent_lib.unroll(
        agent, agent_state.params, env, lifetime.env_params, env_carry, inner_keys[-1], unroll_length)
    agent_out = agent.apply(agent_state.params, rollout.observations, rollout.action_mask)
    values, next_values = objective_lib.critic_values(spec.critic, critic_state.params, rollout)
    _, advantages = objective_lib.critic_returns(values, next_values, rollout, hyper)
    loss, logs = objective.loss(agent_out, rollout, advantages, inner_targets, hyper)
    critic_state, _ = train_critic(critic_state, rollout)

    done = rollout.terminated | rollout.truncated
    logs.update({k: jnp.mean(v) for k, v in inner_stats.items()})
    aux = LifetimeAux(
        agent=jax.lax.stop_gradient(agent_state),
        critic=jax.lax.stop_gradient(critic_state),
        env_carry=env_carry,
        return_sum=jnp.sum(inner_stats["return_sum"]) + jnp.sum(rollout.episode_returns),
        return_count=jnp.sum(inner_stats["return_count"]) + jnp.sum(done).astype(jnp.float32),
        entropy=jax.lax.stop_gradient(jnp.mean(agent_out.policy(np.s_[:-1]).entropy())),
        logs=jax.lax.stop_gradient(logs),
    )
    return loss, aux
