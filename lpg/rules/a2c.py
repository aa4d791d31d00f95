"""Advantage actor-critic (A2C) as an update rule with empty meta-parameters (SPEC §1 baselines).

Targets, per trajectory of B environments (`lpg.returns.lambda_returns`, V under stop_gradient):
  G_t^λ = r_t + γ (1 − term_t) [(1 − λ_t) V(s'_{t+1}) + λ_t G_{t+1}^λ],   λ_t = λ (1 − trunc_t)
  A_t = G_t^λ − V(s_t)
where s'_{t+1} is the true successor state: a terminated episode is not bootstrapped, a
time-limit truncation bootstraps from V(last observation of the cut episode).

Agent loss, a mean over the T × B steps:
  L = −log π(a_t|s_t) · A_t − c_H · H(π(·|s_t)) + c_V · ½ (V(s_t) − G_t^λ)²
so π̂ = A_t and the value target is G_t^λ.

Value step size. A tabular agent's value table receives gradient only from the value term, so
under SGD its step size is exactly α_lr · c_V, separate from the policy's α_lr: c_V is the value
table's own (relative) step. With the paper's tabular α_lr ∈ {20, 40, 80}, c_V = 0.5 overshoots
wherever many of the T·B samples share a state (value table → 1e18/NaN in 150 updates at
α_lr = 80); the tuned c_V per task lives in experiments/configs/a2c_tuned.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from lpg import returns as returns_lib
from lpg import types
from lpg.rules import base


def lambda_return_targets(
    rollout: types.Rollout, agent_out: types.AgentOutput, next_out: types.AgentOutput,
    hyper: types.HyperParams,
) -> tuple[jax.Array, jax.Array]:
    """(G_t^λ, V(s_t)), both [T, B] and free of gradients, for actor-critic rules (A2C, PPO).

    agent_out: outputs on rollout.observations [T+1, B]; next_out: on the true successor states
    [T, B] (bootstrap after truncations, `lpg.returns`).
    """
    values = jax.lax.stop_gradient(agent_out.value[:-1])  # [T, B] V(s_t)
    next_values = jax.lax.stop_gradient(next_out.value)  # [T, B] V(s'_{t+1})
    chex.assert_equal_shape([values, next_values, rollout.rewards])
    returns = returns_lib.lambda_returns(
        rollout.rewards, rollout.terminated, rollout.truncated, next_values, hyper.discount,
        hyper.td_lambda)
    return returns, values


@dataclasses.dataclass(frozen=True)
class A2C(base.UpdateRule):
    """A2C with λ-returns; `meta_params` is an empty dict (see module docstring)."""

    KIND = "a2c"

    @property
    def output_spec(self) -> types.OutputSpec:
        return types.OutputSpec(value=True)

    def init_params(self, key: jax.Array) -> dict:
        del key
        return {}

    def targets(
        self,
        meta_params: Any,
        state: Any,
        rollout: types.Rollout,
        agent_out: types.AgentOutput,
        next_out: types.AgentOutput,
        hyper: types.HyperParams,
    ) -> types.RuleOutput:
        """π̂_t = A_t, value_target_t = G_t^λ, both [T, B]; no y target."""
        del meta_params, state
        returns, values = lambda_return_targets(rollout, agent_out, next_out, hyper)
        return types.RuleOutput(pi_hat=returns - values, y_hat=None, value_target=returns)

    def agent_loss(
        self,
        meta_params: Any,
        state: Any,
        agent_out: types.AgentOutput,
        rollout: types.Rollout,
        targets: types.RuleOutput,
        hyper: types.HyperParams,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean over [T, B] of the A2C loss; logs policy_loss, value_loss, entropy."""
        del meta_params, state
        policy = agent_out.policy(np.s_[:-1])  # batch [T, B]: categorical or Gaussian
        values = agent_out.value[:-1]  # [T, B]
        log_pi_a = policy.log_prob(rollout.actions)  # [T, B]
        chex.assert_equal_shape([targets.pi_hat, log_pi_a, values])
        policy_loss = -jnp.mean(log_pi_a * targets.pi_hat)
        entropy = jnp.mean(policy.entropy())
        value_loss = jnp.mean(0.5 * jnp.square(values - targets.value_target))
        loss = policy_loss - hyper.entropy_cost * entropy + hyper.value_cost * value_loss
        return loss, dict(policy_loss=policy_loss, value_loss=value_loss, entropy=entropy)
