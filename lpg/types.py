"""Pytrees passed between agents, environments and update rules.

Time convention (one for the whole project, checked at module boundaries):
  * `Rollout.observations` and agent outputs on a rollout have T+1 steps: index t is the
    observation s_t *before* action a_t; index T is the bootstrap observation after the last step.
  * `actions` ([T, B] int32 for discrete actions, [T, B, D] float32 for continuous ones), `rewards`,
    `terminated`, `truncated` have T steps: index t describes the transition
    s_t --a_t--> s_{t+1} with reward r_t. If `terminated[t] | truncated[t]`, `observations[t+1]`
    is already the first observation of the next episode (environments auto-reset).
  * `next_observations` has T steps: index t is the true successor state s_{t+1} of transition t,
    i.e. `observations[t+1]` except where an episode ended at t, where it is the last observation
    of the finished episode (`info["final_observation"]`). Rules bootstrap from it after a
    time-limit truncation and ignore it after a termination (nothing follows a terminal state).
Shapes are written [T, B, ...] for a batch of B environments of one lifetime.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import numpy as np

from lpg import distributions


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """The agent heads an update rule needs besides the policy (`UpdateRule.output_spec`).

    Agents build exactly these heads (`lpg.networks.make_network`), so a rule's needs are never
    guessed downstream.
    y_dim: m, size of the prediction vector y (LPG: 30); 0 means no y head.
    value: whether the agent has a state-value head V(s) (A2C, PPO, LPG with Eq. 7's baseline).
    """

    y_dim: int = 0
    value: bool = False

    def __post_init__(self):
        if not isinstance(self.y_dim, int) or self.y_dim < 0:
            raise ValueError(f"OutputSpec.y_dim must be an int >= 0 (0: no y head), got {self.y_dim!r}")


@flax.struct.dataclass
class AgentOutput:
    """What an agent network outputs per observation.

    logits: [..., P] the policy head: P = A logits for discrete actions (invalid actions already
      masked to a large negative value), or P = 2·D numbers [mean | raw log-std] for D-dimensional
      continuous actions. Rules never read it directly: `policy()` turns it into π(·|s).
    y: [..., m] logits of the prediction vector y (LPG applies softmax); None without a y head.
    value: [...] state-value estimate (A2C's critic, LPG-V, Eq. 7's baseline); None without one.
    policy_spec: static `distributions.DistributionSpec` of the head (set by `Agent.apply`);
      None means a categorical over `logits`.
    Which of y / value exist is the rule's `OutputSpec`.
    """

    logits: jax.Array
    y: Any = None
    value: Any = None
    policy_spec: Any = flax.struct.field(pytree_node=False, default=None)

    def policy(self, index: Any = np.s_[...]) -> distributions.Distribution:
        """π(·|s) on `logits[index]`, e.g. `np.s_[:-1]` for the T steps of a [T+1, B] rollout.

        Returns a `distributions.MaskedCategorical` (masking is already in the logits), `Gaussian`
        or `TanhGaussian` with the indexed batch shape.
        """
        head = self.logits[index]
        if self.policy_spec is None:
            # Agent.apply has masked the logits already (finite, invalid ones at MASKED_LOGIT).
            return distributions.MaskedCategorical(head, premasked=True)
        return self.policy_spec.make(head)


@flax.struct.dataclass
class Rollout:
    """T steps of experience from B environments (time convention in the module docstring)."""

    observations: Any  # [T+1, B, ...obs]
    next_observations: Any  # [T, B, ...obs] true s_{t+1} (the finished episode's last one at ends)
    actions: jax.Array  # [T, B] int32 (discrete) or [T, B, D] float32 (continuous, as sampled)
    rewards: jax.Array  # [T, B] float32
    terminated: jax.Array  # [T, B] bool: s_{t+1} is terminal (no bootstrap)
    truncated: jax.Array  # [T, B] bool: episode cut by its time limit after step t
    action_mask: Any  # [B, A] bool, valid actions of this lifetime; None for continuous actions
    episode_returns: jax.Array  # [T, B] float32: undiscounted return of an episode ending at t, else 0


@flax.struct.dataclass
class HyperParams:
    """Per-lifetime scalars, traced (so a sweep or the bandit is just data).

    learning_rate: α_lr, the agent optimiser's step size.
    discount: γ.
    entropy_cost: policy-entropy bonus (A2C) / β0 of the meta-objective (Eq. 4).
    value_cost: weight of the value loss (A2C, PPO; LPG-V has its own α_V in `rule`).
    td_lambda: λ of the λ-returns.
    rule: the rule's own per-lifetime hyperparameters, by name (`UpdateRule.hyper_grid`), e.g.
      LPG's {"y_cost": α_y}; empty for rules without any.
    """

    learning_rate: jax.Array
    discount: jax.Array
    entropy_cost: jax.Array
    value_cost: jax.Array
    td_lambda: jax.Array
    rule: dict = flax.struct.field(default_factory=dict)


@flax.struct.dataclass
class RuleOutput:
    """What an update rule produces from a rollout; the agent loss turns it into a gradient.

    pi_hat: [T, B] the policy target (LPG's π̂; A2C's advantage): weight of ∇ log π(a_t|s_t).
    y_hat: [T, B, m] LPG's target for y (None for rules without y).
    value_target: [T, B] regression target for the agent's value head (None if unused).
    aux: the rule's own per-step quantities, a pytree of [T, B, ...] arrays (PPO: the behaviour
      policy's log π(a_t|s_t) and V(s_t)); None if unused. Every leaf has B on axis 1, so
      minibatches over environments slice it like the rest.
    """

    pi_hat: jax.Array
    y_hat: Any = None
    value_target: Any = None
    aux: Any = None
