"""LPG-V: the LPG baseline that learns only the policy target π̂ (Oh et al. 2020, §4.1, Fig. 3, 7).

"A variant of LPG that, like MetaGenRL, only learns a policy update rule (π̂) given a value
function trained by TD(λ) without discovering its own prediction semantics." The agent has a
policy and a state-value head V_θ(s) and no prediction vector y. The rule network is LPG's
(lpg/rules/lpg.py: the same per-step inputs, backward LSTM with resets at episode ends, π̂ head)
with the two y features replaced by the agent's values:

    x_t = [r_t, d_t, γ, π(a_t|s_t), V(s_t), (1 − d_t) V(s_{t+1})],

with V(s_{t+1}) on the true successor (`Rollout.next_observations`: the cut episode's last
observation after a truncation, nothing after a termination). There is no ŷ head and no φ
embedding (a value is already a scalar).

Agent update: Eq. 2's policy term plus the TD(λ) value loss in place of the y term,

    L(θ) = E_t[ −log π_θ(a_t|s_t) π̂_t + α_V · ½ (V_θ(s_t) − G_t^λ)² ],

G_t^λ the λ-return of the agent's own values (`lpg.returns.lambda_returns`, bootstrapping as A2C
does). π̂ and G^λ are targets: `lpg.agent.agent_update` holds them constant for the agent's
gradient (semi-gradient TD(λ), and Eq. 2's "π̂ constant w.r.t. θ"), so no stop_gradient is
needed for that; none is applied either, so the meta-gradient flows through every path of the
K unrolled updates, as it does through LPG's y inputs.

α_V, the value loss weight, is the rule's own per-lifetime hyperparameter ("v_cost", the
counterpart of LPG's α_y, the bandit's second axis and the evaluation's grid): a tabular value
table under SGD steps by α_lr · α_V, and A2C's sweep showed α_lr · 0.5 diverging at α_lr = 80
(experiments/configs/a2c.py), so its default grid is A2C's value-cost grid.
"""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lpg import returns as returns_lib
from lpg import types
from lpg.rules import base
from lpg.rules import lpg as lpg_rule


class LPGVNetwork(nn.Module):
    """η of LPG-V: LPG's backward LSTM over x_t (module docstring) and a π̂ head."""

    hidden_size: int = 256
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, rewards, terminated, episode_end, discount, pi_a, v_t, v_tp1):
        """One backward pass over T steps of B trajectories.

        Args:
          rewards, pi_a: [T, B] r_t and π(a_t|s_t).
          terminated: [T, B] in {0, 1}, d_t. episode_end: [T, B] in {0, 1}, resets the carry.
          discount: scalar or [T, B] γ.
          v_t, v_tp1: [T, B] V(s_t) and V of the true successor s_{t+1}.
        Returns:
          pi_hat [T, B].
        """
        x = lpg_rule.step_inputs(rewards, terminated, discount, pi_a, v_t, v_tp1)  # [T, B, 6]
        hidden = lpg_rule.BackwardLSTM(self.hidden_size, self.matmul_dtype, name="lstm")(x, episode_end)
        return nn.Dense(1, name="pi_hat")(hidden)[..., 0]


@dataclasses.dataclass(frozen=True)
class LPGV(base.UpdateRule):
    """The LPG-V update rule (see module docstring).

    hidden_size: LSTM width (LPG's: 256).
    matmul_dtype: operand dtype of the LSTM gate matmul, one of lpg.MATMUL_DTYPES.
    value_costs: the α_V grid, weight of the TD(λ) value loss (hyperparameter "v_cost").
    """

    KIND = "lpg_v"

    hidden_size: int = 256
    matmul_dtype: str = "float32"
    value_costs: tuple[float, ...] = (0.01, 0.05, 0.2)

    def __post_init__(self):
        if self.hidden_size <= 0:
            raise ValueError(f"LPGV.hidden_size must be a positive integer, got {self.hidden_size}")
        if self.matmul_dtype not in lpg_rule.MATMUL_DTYPES:
            raise ValueError(f"LPGV.matmul_dtype must be one of {lpg_rule.MATMUL_DTYPES}, "
                             f"got {self.matmul_dtype!r}")
        # A JSON round trip (saved rules) turns the tuple into a list: normalise, then check.
        object.__setattr__(self, "value_costs", tuple(float(c) for c in self.value_costs))
        if not self.value_costs or any(not c > 0 for c in self.value_costs):
            raise ValueError(f"LPGV.value_costs (the α_V grid) must be non-empty and positive, "
                             f"got {self.value_costs}")

    @property
    def output_spec(self) -> types.OutputSpec:
        return types.OutputSpec(y_dim=0, value=True)

    @property
    def hyper_grid(self) -> dict[str, tuple[float, ...]]:
        """α_V ("v_cost"), the weight of the TD(λ) value loss."""
        return {"v_cost": self.value_costs}

    @property
    def network(self) -> LPGVNetwork:
        return LPGVNetwork(self.hidden_size, self.matmul_dtype)

    def init_params(self, key):
        zeros = jnp.zeros((2, 1))
        return self.network.init(key, zeros, zeros, zeros, 0.99, zeros, zeros, zeros)

    def targets(self, meta_params, state, rollout, agent_out, next_out, hyper) -> types.RuleOutput:
        """π̂ [T, B] from the rule network, value_target G^λ [T, B]; no ŷ (the agent has no y)."""
        del state
        pi_a, terminated, episode_end = lpg_rule.trajectory_inputs(rollout, agent_out)  # [T, B]
        v_t = agent_out.value[:-1]  # [T, B] V(s_t)
        v_tp1 = next_out.value  # [T, B] V on the true s_{t+1}
        chex.assert_equal_shape([v_t, v_tp1, rollout.rewards])
        pi_hat = self.network.apply(
            meta_params, rollout.rewards, terminated, episode_end, hyper.discount, pi_a, v_t, v_tp1)
        value_target = returns_lib.lambda_returns(
            rollout.rewards, rollout.terminated, rollout.truncated, v_tp1, hyper.discount,
            hyper.td_lambda)
        return types.RuleOutput(pi_hat=pi_hat, y_hat=None, value_target=value_target)

    def agent_loss(self, meta_params, state, agent_out, rollout, targets, hyper):
        """Mean over [T, B] of −log π(a_t|s_t) π̂_t + α_V ½ (V(s_t) − G_t^λ)²."""
        del meta_params, state  # η acts through the targets only
        log_pi_a = agent_out.policy(np.s_[:-1]).log_prob(rollout.actions)  # [T, B]
        values = agent_out.value[:-1]  # [T, B]
        chex.assert_equal_shape([log_pi_a, targets.pi_hat, values, targets.value_target])
        policy_loss = -jnp.mean(log_pi_a * targets.pi_hat)
        value_loss = jnp.mean(0.5 * jnp.square(values - targets.value_target))
        loss = policy_loss + hyper.rule["v_cost"] * value_loss
        logs = dict(policy_loss=policy_loss, value_loss=value_loss,
                    pi_hat_abs=jnp.mean(jnp.abs(targets.pi_hat)), pi_hat_std=jnp.std(targets.pi_hat))
        return loss, logs
