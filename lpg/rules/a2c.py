"""Advantage actor-critic (A2C) as an update rule with empty meta-parameters (SPEC §1 baselines).

Targets, per trajectory of B environments (rlax, vmapped over B):
  discount_t = γ · (1 − terminated_t) · (1 − truncated_t)
  G_t^λ = r_t + discount_t · ((1 − λ) V(s_{t+1}) + λ G_{t+1}^λ),   G_T^λ = V(s_T)   (λ-return)
  A_t = G_t^λ − V(s_t)
with V under stop_gradient. Truncation cuts the return like a terminal: there is no bootstrap
through a time limit (s_{t+1} is already the next episode's first observation after the
auto-reset, and the last observation of the cut episode is not in the rollout). `Rollout` keeps
terminated and truncated apart, so other rules may choose differently.

Agent loss, a mean over the T × B steps:
  L = −log π(a_t|s_t) · A_t − c_H · H(π(·|s_t)) + c_V · ½ (V(s_t) − G_t^λ)²
so π̂ = A_t and the value target is G_t^λ.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import rlax

from lpg import networks
from lpg import types
from lpg.rules import base


def transition_discounts(rollout: types.Rollout, discount: jax.Array) -> jax.Array:
    """discount_t = γ (1 − terminated_t)(1 − truncated_t), [T, B]."""
    alive = 1.0 - (rollout.terminated | rollout.truncated).astype(jnp.float32)
    return discount * alive


def lambda_returns(
    rewards: jax.Array, discounts: jax.Array, values: jax.Array, td_lambda: jax.Array
) -> jax.Array:
    """λ-returns G_t^λ for B trajectories.

    Args:
      rewards: [T, B] r_t.
      discounts: [T, B] discount_t (0 at episode ends).
      values: [T+1, B] V(s_t), index T the bootstrap.
      td_lambda: scalar λ.
    Returns:
      [T, B] G_t^λ.
    """
    chex.assert_rank([rewards, discounts, values], 2)
    chex.assert_equal_shape([rewards, discounts, values[1:]])
    returns_fn = jax.vmap(rlax.lambda_returns, in_axes=(1, 1, 1, None), out_axes=1)
    return returns_fn(rewards, discounts, values[1:], td_lambda)


class A2C(base.UpdateRule):
    """A2C with λ-returns; `meta_params` is an empty dict (see module docstring)."""

    def init_params(self, key: jax.Array) -> dict:
        del key
        return {}

    def targets(
        self,
        meta_params: Any,
        rollout: types.Rollout,
        agent_out: types.AgentOutput,
        hyper: types.HyperParams,
    ) -> types.RuleOutput:
        """π̂_t = A_t, value_target_t = G_t^λ, both [T, B]; no y target."""
        del meta_params
        values = jax.lax.stop_gradient(agent_out.value)  # [T+1, B]
        chex.assert_shape(values, (rollout.rewards.shape[0] + 1, rollout.rewards.shape[1]))
        discounts = transition_discounts(rollout, hyper.discount)
        returns = lambda_returns(rollout.rewards, discounts, values, hyper.td_lambda)
        return types.RuleOutput(pi_hat=returns - values[:-1], y_hat=None, value_target=returns)

    def agent_loss(
        self,
        agent_out: types.AgentOutput,
        rollout: types.Rollout,
        targets: types.RuleOutput,
        hyper: types.HyperParams,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean over [T, B] of the A2C loss; logs policy_loss, value_loss, entropy."""
        logits = agent_out.logits[:-1]  # [T, B, A]
        values = agent_out.value[:-1]  # [T, B]
        chex.assert_equal_shape([targets.pi_hat, rollout.actions, values])
        log_pi_a = networks.action_log_prob(logits, rollout.actions)
        policy_loss = -jnp.mean(log_pi_a * targets.pi_hat)
        entropy = jnp.mean(networks.policy_entropy(logits))
        value_loss = jnp.mean(0.5 * jnp.square(values - targets.value_target))
        loss = policy_loss - hyper.entropy_cost * entropy + hyper.value_cost * value_loss
        return loss, dict(policy_loss=policy_loss, value_loss=value_loss, entropy=entropy)
