"""The update-rule interface: everything that turns a rollout into an agent update.

A rule is a frozen dataclass with static configuration; its learnable part (LPG's η, a learned
loss's parameters) is an explicit `meta_params` pytree. Hand-designed rules (A2C, PPO) have empty
meta-params, so baselines, evaluation and meta-training share one code path
(`lpg.agent.learner_step`). What a rule declares and owns:

  * `output_spec`: the agent heads it needs besides the policy (a prediction vector of size m, a
    value); agents build exactly those (`lpg.networks.make_network`).
  * `hyper_grid`: its own per-lifetime hyperparameters and their grids (LPG: α_y), carried in
    `HyperParams.rule` and searched by the bandit / the evaluation protocol next to α_lr.
  * `init_state` / `update_state`: optional per-lifetime state (EPG's memory, MetaGenRL's critics),
    initialised with the agent, stored in `AgentState.rule_state`, threaded through every agent
    update and saved in checkpoints with the rest of the lifetime.
  * `adapt_state`: optional online learning of the rule state from the agent's own updates
    (meta-gradient RL's η = {γ, λ}, `lpg.rules.metagrad`). `lpg.agent.agent_update` calls it
    before `targets`, once per rollout, with two differentiable views of that update: the VJP of
    the agent's outputs on the rollout w.r.t. θ, and the update θ → θ' on this rollout as a
    function of the rule state (for jvp/grad w.r.t. the state). The default returns the state
    unchanged, so rules without it trace exactly as before.
  * `curve_stats`: names of the rule's per-update logs worth a curve over the lifetime
    (metagrad: the learned γ and λ); launch/train_agent.py writes them per update (default: none).
  * `targets` then `agent_loss`: targets are a function of `meta_params` and of the agent's
    outputs, but the agent update treats them as constants w.r.t. θ (LPG Eq. 2). `learner_step`
    differentiates `agent_loss` w.r.t. the agent outputs with the targets held fixed; the
    meta-gradient still flows into η through the targets and, for learned-loss rules, through
    `agent_loss`, which also receives `meta_params`.
  * `num_epochs` × `num_minibatches`: how many optimiser steps one rollout gives (PPO: several
    epochs over minibatches of the B environments; everything else: one step on the whole
    rollout). Targets are computed once per rollout, before the first step.
  * `agent_grad_clip`: the global-norm clip of the agent's gradient the rule prescribes (PPO's
    max_grad_norm), or None.
  * `config()` and `KIND`: a saved rule records both, and `lpg.rules.make_rule` rebuilds it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar

import jax

from lpg import types


class UpdateRule(abc.ABC):
    """Interface of an update rule (see module docstring). Subclasses are frozen dataclasses."""

    KIND: ClassVar[str]  # registry name ("lpg", "a2c", ...): `lpg.rules.RULES`

    @property
    def output_spec(self) -> types.OutputSpec:
        """The heads an agent needs besides the policy (default: none)."""
        return types.OutputSpec()

    @property
    def hyper_grid(self) -> dict[str, tuple[float, ...]]:
        """{name: candidate values} of the rule's own per-lifetime hyperparameters (default: none).

        Each lifetime carries one value per name in `HyperParams.rule[name]`; the bandit's arms
        and the evaluation's candidates are α_lr × these grids.
        """
        return {}

    @property
    def num_epochs(self) -> int:
        """Passes over each rollout (default 1)."""
        return 1

    @property
    def num_minibatches(self) -> int:
        """Minibatches per pass, splitting the B environments (default 1: the whole rollout)."""
        return 1

    @property
    def agent_grad_clip(self) -> float | None:
        """Max global norm of the agent's gradient this rule prescribes (default None: none)."""
        return None

    @property
    def curve_stats(self) -> tuple[str, ...]:
        """Names of this rule's `agent_loss` logs to keep per update as lifetime curves (default
        none); launch/train_agent.py writes them beside the return curve."""
        return ()

    def config(self) -> dict:
        """The static configuration, JSON-serialisable; `type(self)(**config())` rebuilds it."""
        return dataclasses.asdict(self)

    @abc.abstractmethod
    def init_params(self, key: jax.Array) -> Any:
        """Returns freshly initialised meta-parameters (an empty dict for fixed rules)."""

    def init_state(self, key: jax.Array, agent_params: Any) -> Any:
        """Per-lifetime rule state, created with the agent's θ0 (default: None, no state)."""
        del key, agent_params
        return None

    def update_state(
        self,
        meta_params: Any,
        state: Any,
        rollout: types.Rollout,
        agent_out: types.AgentOutput,
        targets: types.RuleOutput,
        hyper: types.HyperParams,
    ) -> Any:
        """The rule state after an agent update on `rollout` (default: unchanged)."""
        del meta_params, rollout, agent_out, targets, hyper
        return state

    def adapt_state(
        self,
        meta_params: Any,
        state: Any,
        rollout: types.Rollout,
        agent_out: types.AgentOutput,
        next_out: types.AgentOutput,
        hyper: types.HyperParams,
        *,
        params_vjp: Callable[[types.AgentOutput], Any],
        update_params: Callable[[Any], Any],
    ) -> Any:
        """The rule state adapted online before the agent update on `rollout` (default: unchanged).

        Called by `lpg.agent.agent_update` before `targets`; the returned state is the one
        `targets`, `agent_loss` and `update_state` of this update see.

        agent_out, next_out: as in `targets` (outputs of the current θ on this rollout).
        params_vjp: cotangent on `agent_out` ([T+1, B] AgentOutput, zeros where unused) -> the
          pulled-back cotangent on θ, i.e. ∂(loss of the outputs)/∂θ without another forward pass.
        update_params: rule state -> θ', this agent update of θ on `rollout` (targets, loss,
          optimiser step) as a differentiable function of the rule state.
        """
        del meta_params, rollout, agent_out, next_out, hyper, params_vjp, update_params
        return state

    @abc.abstractmethod
    def targets(
        self,
        meta_params: Any,
        state: Any,
        rollout: types.Rollout,
        agent_out: types.AgentOutput,
        next_out: types.AgentOutput,
        hyper: types.HyperParams,
    ) -> types.RuleOutput:
        """Computes the rule's targets from a rollout and the agent outputs on it.

        state: this lifetime's rule state (`init_state`).
        agent_out: outputs on `rollout.observations`, [T+1, B, ...].
        next_out: outputs on `rollout.next_observations` (the true s_{t+1}), [T, B, ...]; equal to
          agent_out[1:] except where an episode ended at t (bootstrap after a truncation).
        """

    @abc.abstractmethod
    def agent_loss(
        self,
        meta_params: Any,
        state: Any,
        agent_out: types.AgentOutput,
        rollout: types.Rollout,
        targets: types.RuleOutput,
        hyper: types.HyperParams,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar loss whose gradient w.r.t. the agent outputs gives the update, plus logs.

        Differentiable w.r.t. `meta_params` (learned-loss rules); fixed-target rules ignore it.
        """


def check_hyper(rule: UpdateRule, hyper: types.HyperParams) -> None:
    """Raises ValueError unless `hyper.rule` has exactly the rule's hyperparameter names."""
    expected, got = sorted(rule.hyper_grid), sorted(hyper.rule)
    if expected != got:
        raise ValueError(f"{type(rule).__name__} needs HyperParams.rule with keys {expected}, got {got}")
