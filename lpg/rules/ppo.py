"""Proximal Policy Optimisation (Schulman et al. 2017, arXiv:1707.06347) as a fixed update rule.

The hand-designed baseline that EPG and MetaGenRL report against. Per rollout of T steps in B
environments, with θ_old the parameters that collected it (targets computed once, before any step):
  A_t = G_t^λ − V_old(s_t)            GAE(λ) (Schulman et al. 2016) = λ-return minus value, with the
                                      episode-end handling of `lpg.returns` (bootstrap after a
                                      time-limit truncation, not after a termination);
  ρ_t = π_θ(a_t|s_t) / π_old(a_t|s_t)
  L^CLIP = −mean_t min(ρ_t Â_t, clip(ρ_t, 1 − ε, 1 + ε) Â_t)      Â: A normalised per minibatch
  L^V    = mean_t ½ max((V_θ(s_t) − G_t^λ)², (V_clip(s_t) − G_t^λ)²),
           V_clip = V_old + clip(V_θ − V_old, −ε, ε)                  (value clipping, optional)
  L = L^CLIP + c_V L^V − c_H H[π_θ(·|s_t)]
minimised by `epochs` passes over `minibatches` minibatches of the B environments
(`lpg.agent.agent_update`), each an Adam step with the gradient clipped to `max_grad_norm`.

Minibatches split the environments, not individual steps, so every minibatch is a [T, B/M] slice
with the rollout's time layout (what every rule's loss expects); use B ≥ 4·M environments so each
minibatch still mixes several episodes. Works for discrete and continuous actions alike (the log-
probabilities and entropy come from `AgentOutput.policy()`).
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from lpg import types
from lpg.rules import a2c
from lpg.rules import base


@dataclasses.dataclass(frozen=True)
class PPO(base.UpdateRule):
    """PPO-clip; `meta_params` is an empty dict. Per-lifetime hyperparameters (α_lr, γ, λ, c_V,
    c_H) come in `HyperParams`; the static ones below are part of the rule's configuration.

    clip_epsilon: ε of the ratio clip (and of the value clip).
    epochs: passes over each rollout.
    minibatches: minibatches per pass (must divide the number of environments B).
    normalize_advantages: standardise A within each minibatch (mean 0, std 1).
    clip_value: use the clipped value loss.
    max_grad_norm: global-norm clip of the agent gradient; 0 for none.
    """

    KIND = "ppo"

    clip_epsilon: float = 0.2
    epochs: int = 4
    minibatches: int = 4
    normalize_advantages: bool = True
    clip_value: bool = True
    max_grad_norm: float = 0.5

    def __post_init__(self):
        if not (math.isfinite(self.clip_epsilon) and self.clip_epsilon > 0):
            raise ValueError(f"PPO.clip_epsilon must be a finite number > 0, got {self.clip_epsilon!r}")
        for name in ("epochs", "minibatches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PPO.{name} must be an int >= 1, got {value!r}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise ValueError(f"PPO.max_grad_norm must be a finite number >= 0 (0: no clipping), "
                             f"got {self.max_grad_norm!r}")

    @property
    def output_spec(self) -> types.OutputSpec:
        return types.OutputSpec(value=True)

    @property
    def num_epochs(self) -> int:
        return self.epochs

    @property
    def num_minibatches(self) -> int:
        return self.minibatches

    @property
    def agent_grad_clip(self) -> float | None:
        return self.max_grad_norm or None

    def init_params(self, key: jax.Array) -> dict:
        del key
        return {}

    def targets(self, meta_params, state, rollout, agent_out, next_out, hyper) -> types.RuleOutput:
        """pi_hat = A_t (GAE), value_target = G_t^λ, aux = {log_prob, value} of θ_old; all [T, B]."""
        del meta_params, state
        returns, values = a2c.lambda_return_targets(rollout, agent_out, next_out, hyper)
        old_log_prob = jax.lax.stop_gradient(agent_out.policy(np.s_[:-1]).log_prob(rollout.actions))
        return types.RuleOutput(pi_hat=returns - values, value_target=returns,
                                aux=dict(log_prob=old_log_prob, value=values))

    def agent_loss(self, meta_params, state, agent_out, rollout, targets, hyper):
        """L of the module docstring on one minibatch; logs its terms, the clip fraction and the
        approximate KL(π_old ‖ π_θ)."""
        del meta_params, state
        policy = agent_out.policy(np.s_[:-1])  # batch [T, b]
        values = agent_out.value[:-1]  # [T, b]
        log_prob = policy.log_prob(rollout.actions)  # [T, b]
        chex.assert_equal_shape([log_prob, targets.pi_hat, targets.aux["log_prob"], values])
        advantages = targets.pi_hat
        if self.normalize_advantages:
            advantages = (advantages - jnp.mean(advantages)) / (jnp.std(advantages) + 1e-8)
        log_ratio = log_prob - targets.aux["log_prob"]
        ratio = jnp.exp(log_ratio)
        clipped_ratio = jnp.clip(ratio, 1.0 - self.clip_epsilon, 1.0 + self.clip_epsilon)
        policy_loss = -jnp.mean(jnp.minimum(ratio * advantages, clipped_ratio * advantages))
        value_error = jnp.square(values - targets.value_target)
        if self.clip_value:
            old_values = targets.aux["value"]
            clipped = old_values + jnp.clip(values - old_values, -self.clip_epsilon, self.clip_epsilon)
            value_error = jnp.maximum(value_error, jnp.square(clipped - targets.value_target))
        value_loss = 0.5 * jnp.mean(value_error)
        entropy = jnp.mean(policy.entropy())
        loss = policy_loss + hyper.value_cost * value_loss - hyper.entropy_cost * entropy
        logs = dict(
            policy_loss=policy_loss, value_loss=value_loss, entropy=entropy,
            clip_fraction=jnp.mean((jnp.abs(ratio - 1.0) > self.clip_epsilon).astype(jnp.float32)),
            # (ρ − 1) − log ρ ≥ 0, an unbiased estimate of KL(π_old ‖ π_θ) (Schulman's "k3").
            approx_kl=jnp.mean((ratio - 1.0) - log_ratio),
        )
        return loss, logs
