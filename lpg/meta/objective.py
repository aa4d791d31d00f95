"""The meta-objective of LPG (Oh et al. 2020, Eq. 4) and the critic that serves it.

After K agent updates with the rule, the updated agent θ_K acts for one fresh T-step rollout; the
meta-loss on it is (negated, to be minimised)

    L_meta = −E[log π_θK(a_t|s_t) Â_t] − β0 H(π_θK) − β1 H(y_θK) + β2 E‖π̂‖² + β3 E‖ŷ‖²,

where π̂, ŷ are the rule's outputs during the K updates. A rule without a prediction vector
(LPG-V: no y head, no ŷ) has no H(y) and no ‖ŷ‖² term: those two drop out, β2 E[π̂²] stays.

Appendix B.1: the meta-gradient is an advantage actor-critic, the advantages Â coming from a
value function trained only to reduce its variance; the rule never sees it. Â_t = G_t^λ − V_ψ(s_t)
with TD(λ) returns of the critic V_ψ on the fresh rollout. The critic is regressed to its
λ-returns on every rollout of the lifetime (the K inner ones and the fresh one, `critic_update`),
with its own optimiser.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lpg import agent as agent_lib
from lpg import returns as returns_lib
from lpg import types


@dataclasses.dataclass(frozen=True)
class MetaObjective:
    """Static weights of the regularisers (SPEC Table 2); β0 is per lifetime (`hyper.entropy_cost`).

    y_entropy_cost: β1, weight of H(y_θK) (0 is the Fig. 7 'no y-entropy' ablation).
    pi_hat_l2_cost: β2, weight of E[π̂²] (0 with y_hat_l2_cost = 0 is the 'no L2' ablation).
    y_hat_l2_cost: β3, weight of E‖ŷ‖².
    y_softmax: whether agents' y is a softmax (H(y) is only defined then).
    β1 and β3 only act when the agent has a y head and the rule a ŷ (not for LPG-V).
    """

    y_entropy_cost: float = 1e-3
    pi_hat_l2_cost: float = 1e-3
    y_hat_l2_cost: float = 1e-3
    y_softmax: bool = True

    def __post_init__(self):
        for name in ("y_entropy_cost", "pi_hat_l2_cost", "y_hat_l2_cost"):
            if getattr(self, name) < 0:
                raise ValueError(f"MetaObjective.{name} must be >= 0, got {getattr(self, name)}")

    def loss(
        self,
        agent_out: types.AgentOutput,
        rollout: types.Rollout,
        advantages: jax.Array,
        inner_targets: types.RuleOutput,
        hyper: types.HyperParams,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Eq. 4, negated.

        Args:
          agent_out: θ_K's outputs on the fresh rollout, [T+1, B, ...].
          rollout: the fresh rollout.
          advantages: [T, B] Â_t from the critic (treated as constants).
          inner_targets: RuleOutput of the K inner updates, pi_hat [K, T, B], y_hat [K, T, B, m]
            (None for a rule without ŷ).
          hyper: the lifetime's hyperparameters (β0 = hyper.entropy_cost).
        """
        policy = agent_out.policy(np.s_[:-1])  # batch [T, B]
        log_pi_a = policy.log_prob(rollout.actions)  # [T, B]
        policy_gradient = -jnp.mean(log_pi_a * jax.lax.stop_gradient(advantages))
        entropy = jnp.mean(policy.entropy())
        if self.y_softmax and agent_out.y is not None:
            log_y = jax.nn.log_softmax(agent_out.y[:-1], axis=-1)
            y_entropy = jnp.mean(-jnp.sum(jnp.exp(log_y) * log_y, axis=-1))
        else:  # y ∈ R^m (Fig. 7 ablation) or no y at all (LPG-V)
            y_entropy = jnp.zeros(())
        pi_hat_l2 = jnp.mean(jnp.square(inner_targets.pi_hat))
        if inner_targets.y_hat is not None:
            y_hat_l2 = jnp.mean(jnp.sum(jnp.square(inner_targets.y_hat), axis=-1))
        else:
            y_hat_l2 = jnp.zeros(())
        loss = (
            policy_gradient
            - hyper.entropy_cost * entropy
            - self.y_entropy_cost * y_entropy
            + self.pi_hat_l2_cost * pi_hat_l2
            + self.y_hat_l2_cost * y_hat_l2
        )
        logs = dict(
            meta_pg=policy_gradient, meta_entropy=entropy, meta_y_entropy=y_entropy,
            pi_hat_l2=pi_hat_l2, y_hat_l2=y_hat_l2,
            pi_hat_mean=jnp.mean(inner_targets.pi_hat), pi_hat_std=jnp.std(inner_targets.pi_hat),
        )
        return loss, logs


def critic_returns(
    critic_values: jax.Array, critic_next_values: jax.Array, rollout: types.Rollout,
    hyper: types.HyperParams,
) -> tuple[jax.Array, jax.Array]:
    """TD(λ) targets and advantages of the critic on a rollout (`lpg.returns`: a truncated
    episode bootstraps from V(its last observation), a terminated one does not).

    critic_values: [T+1, B] V_ψ(s_t); critic_next_values: [T, B] V_ψ on the true successors
    (`rollout.next_observations`). Returns (λ-returns [T, B], advantages [T, B]), both without
    gradient (the critic is trained by `critic_update`, not by the meta-gradient).
    """
    values = jax.lax.stop_gradient(critic_values[:-1])
    returns = returns_lib.lambda_returns(
        rollout.rewards, rollout.terminated, rollout.truncated,
        jax.lax.stop_gradient(critic_next_values), hyper.discount, hyper.td_lambda)
    return returns, returns - values


def critic_values(critic: agent_lib.Agent, params, rollout: types.Rollout) -> tuple[jax.Array, jax.Array]:
    """(V_ψ on rollout.observations [T+1, B], V_ψ on rollout.next_observations [T, B])."""
    return (critic.apply(params, rollout.observations).value,
            critic.apply(params, rollout.next_observations).value)


def critic_update(
    critic: agent_lib.Agent,
    critic_state: agent_lib.AgentState,
    rollout: types.Rollout,
    hyper: types.HyperParams,
    learning_rate: float,
) -> tuple[agent_lib.AgentState, jax.Array]:
    """One TD(λ) regression step of the critic on `rollout`; returns (state, loss).

    The critic has its own optimiser and step size (GroupSpec.critic_learning_rate), not the
    lifetime's α_lr: SGD at the tabular α_lr of 20–80 on a squared loss diverges as soon as many
    of the T·B samples share a state (measured: meta-losses of 1e28 within 300 meta-steps).
    """
    rollout = jax.lax.stop_gradient(rollout)

    def loss_fn(params):
        values, next_values = critic_values(critic, params, rollout)
        returns, _ = critic_returns(values, next_values, rollout, hyper)
        return 0.5 * jnp.mean(jnp.square(values[:-1] - returns))

    loss, grads = jax.value_and_grad(loss_fn)(critic_state.params)
    return agent_lib.apply_gradients(critic, critic_state, grads, learning_rate), loss
