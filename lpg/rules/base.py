"""The update-rule interface: everything that turns a rollout into an agent update.

A rule is a stateless object with static configuration; its learnable part (LPG's η) is an
explicit `meta_params` pytree. Hand-designed rules (A2C) have empty meta-params, so baselines,
evaluation and meta-training share one code path (`lpg.agent.learner_step`).

Targets are a function of `meta_params` and of the agent's outputs, but the agent update treats
them as constants w.r.t. θ (LPG Eq. 2). `learner_step` enforces that by computing the gradient of
`agent_loss` w.r.t. the agent outputs with the targets held fixed; the meta-gradient still flows
from the targets into η because nothing stops it.
"""

from __future__ import annotations

import abc
from typing import Any

import jax

from lpg import types


class UpdateRule(abc.ABC):
    """Interface of an update rule (see module docstring)."""

    @abc.abstractmethod
    def init_params(self, key: jax.Array) -> Any:
        """Returns freshly initialised meta-parameters (an empty dict for fixed rules)."""

    @abc.abstractmethod
    def targets(
        self,
        meta_params: Any,
        rollout: types.Rollout,
        agent_out: types.AgentOutput,
        hyper: types.HyperParams,
        next_out: types.AgentOutput,
    ) -> types.RuleOutput:
        """Computes the rule's targets from a rollout and the agent outputs on it.

        agent_out: outputs on `rollout.observations`, [T+1, B, ...].
        next_out: outputs on `rollout.next_observations` (the true s_{t+1}), [T, B, ...]; equal to
          agent_out[1:] except where an episode ended at t (bootstrap after a truncation).
        """

    @abc.abstractmethod
    def agent_loss(
        self,
        agent_out: types.AgentOutput,
        rollout: types.Rollout,
        targets: types.RuleOutput,
        hyper: types.HyperParams,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar loss whose gradient w.r.t. the agent outputs gives the update, plus logs."""
