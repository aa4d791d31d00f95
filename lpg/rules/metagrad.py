"""Meta-gradient RL of the return's γ and λ within one lifetime (Xu, van Hasselt & Silver 2018,
"Meta-Gradient Reinforcement Learning", NeurIPS; SPEC §3;
papers/meta_rl_overview_metagradient_epg.txt).

The agent is A2C (`lpg.rules.a2c`) whose λ-return uses the meta-parameters η = {γ, λ}:

    G_t^η = r_t + γ (1 − term_t) [(1 − λ_t) V(s'_{t+1}) + λ_t G_{t+1}^η],   λ_t = λ (1 − trunc_t)
    θ' = θ + f(τ, θ, η)        one A2C step on rollout τ with π̂_t = G_t^η − V(s_t), V target G_t^η

(the overview's G^λ_η and update function; `lpg.returns` has the episode ends). η is learned
online, during the lifetime, by cross-validation on the next rollout τ' (collected with θ'):

    Δη = −β ∂J̄(τ', θ', η̄)/∂θ' · dθ'/dη                                (the chain rule of Xu et al.)

J̄ is the A2C loss on τ' with fixed reference values η̄ = {γ̄, λ̄} (`meta_discount`,
`meta_td_lambda`) and entropy cost `meta_entropy_cost`; like the agent's own loss it is a
semi-gradient: its advantages ḡ_t − V_θ'(s_t) and value targets ḡ_t are constants w.r.t. θ'.

Parametrisation. γ = σ(logit γ0 + δ_γ), λ = σ(logit λ0 + δ_λ): the sigmoid keeps both in (0, 1);
γ0, λ0 are the lifetime's `HyperParams.discount` / `td_lambda` (so the initial γ is swept like any
hyperparameter), and δ = (δ_γ, δ_λ) is what is learned, by Adam with step size
β = `HyperParams.rule["meta_lr"]` (grid: `meta_learning_rates`). η's gradient is the gradient
w.r.t. δ, i.e. w.r.t. the logits of γ and λ.

dθ'/dη by forward mode. The parameters form an additive sequence, so Xu et al. accumulate
dθ'/dη online; with θ held fixed the update's own contribution is ∂f(τ, θ, η)/∂η, and the full
derivative is approximated by a decaying trace

    z' = μ z + ∂f(τ, θ, η)/∂η           μ = `trace_decay` ∈ [0, 1]; 0 (default): this update only

Since η has only two entries, ∂f/∂η is two Jacobian-vector products of the agent update
(`jax.jacfwd` w.r.t. δ, through the targets, the loss gradient, clipping and the optimiser),
stored in the rule state as z with θ's structure and a trailing axis of 2. No previous θ or
rollout needs keeping. Adam agents are differentiated through Adam: `lpg.agent.ADAM_EPS_ROOT` > 0
keeps that finite (SPEC §5).

One agent update k (`adapt_state`, the `UpdateRule` hook `lpg.agent.agent_update` calls before
the targets; τ_k was collected with θ_k):
  1. g_k = ∂J̄(τ_k, θ_k)/∂θ_k (the VJP of the agent's outputs, no extra forward pass);
     ∂J̄/∂δ = ⟨g_k, z_k⟩, masked to the learned entries (`learn_discount`, `learn_td_lambda`);
     δ ← δ − β m̂/(√v̂ + ε), Adam's moments of ∂J̄/∂δ (skipped at k = 0: no previous update);
  2. z_{k+1} = μ z_k + ∂θ_{k+1}/∂δ at the new δ (forward mode through the update below);
  3. the A2C update θ_{k+1} = θ_k + f(τ_k, θ_k, η_k) with the new η_k.
So each rollout serves twice: as τ' to judge the previous update, then as τ for this one.

Logs (per update, `curve_stats`): `discount` and `td_lambda` (the γ, λ of this update) and
`meta_grad_discount` / `meta_grad_td_lambda` (∂J̄/∂δ, before masking). `HyperParams.discount`
and `td_lambda` are only the starting point; the agent's γ, λ are the logged ones.

Not implemented: Xu et al.'s η-conditioned value and policy (η embedded in the network input),
which lets V follow a moving γ; here V (a table or a network) simply keeps adapting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from lpg import types
from lpg.rules import a2c
from lpg.rules import base

# The learned entries of η, in the order of the [2] arrays of `MetaGradState`.
ETA_NAMES = ("discount", "td_lambda")
# γ0 and λ0 are clipped into [ε, 1 − ε] before the logit, so γ0 = 1 or λ0 = 0 start finite.
LOGIT_EPS = 1e-6


@flax.struct.dataclass
class MetaGradState:
    """Per-lifetime state of the meta-gradient rule (checkpointed with the agent).

    logit_shift: [2] δ = logit(η) − logit(η0) for (γ, λ), the learned part of η.
    opt_state: Adam's state for δ.
    trace: z ≈ dθ/dδ, θ's pytree with a trailing axis of 2 on every leaf ([..., 2]).
    meta_grad: [2] the last ∂J̄/∂δ (unmasked; zeros before the first meta-step), for logs.
    num_updates: int32 agent updates so far in this lifetime.
    """

    logit_shift: jax.Array
    opt_state: Any
    trace: Any
    meta_grad: jax.Array
    num_updates: jax.Array


def _eta_optimiser() -> optax.GradientTransformation:
    """Adam with unit step size; `adapt_state` scales its update by the traced β."""
    return optax.adam(1.0)


def _logit(p: jax.Array) -> jax.Array:
    p = jnp.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return jnp.log(p) - jnp.log1p(-p)


def eta_from_shift(hyper: types.HyperParams, logit_shift: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(γ, λ) = σ(logit(γ0, λ0) + δ), scalars; γ0, λ0 = hyper.discount, hyper.td_lambda."""
    initial = jnp.stack([hyper.discount, hyper.td_lambda]).astype(logit_shift.dtype)  # [2]
    eta = jax.nn.sigmoid(_logit(initial) + logit_shift)  # [2]
    return eta[0], eta[1]


def _check_unit_interval(name: str, value: Any, *, low_open: bool, high_open: bool) -> None:
    """Raises ValueError naming MetaGrad.`name`, `value` and the allowed interval."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (number and (value > 0 if low_open else value >= 0)
            and (value < 1 if high_open else value <= 1)):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"MetaGrad.{name} must be a number in {interval}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class MetaGrad(base.UpdateRule):
    """A2C with γ, λ learned online by meta-gradients; `meta_params` is an empty dict (η is
    per-lifetime state). See the module docstring.

    meta_discount: γ̄ of the meta-objective J̄, in (0, 1].
    meta_td_lambda: λ̄ of J̄, in [0, 1] (1: the T-step return, bootstrapped at the rollout's end).
    meta_entropy_cost: entropy bonus inside J̄ (≥ 0; 0: J̄ judges returns only).
    meta_learning_rates: the grid of β, Adam's step size on η's logits (`hyper_grid` "meta_lr").
    learn_discount, learn_td_lambda: which of γ, λ are learned (the other stays at its initial
      value); Xu et al. report {γ}, {λ} and {γ, λ}.
    trace_decay: μ ∈ [0, 1] of the trace z' = μ z + ∂f/∂η (0: the last update only).
    """

    KIND = "metagrad"

    meta_discount: float = 0.99
    meta_td_lambda: float = 1.0
    meta_entropy_cost: float = 0.0
    meta_learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    learn_discount: bool = True
    learn_td_lambda: bool = True
    trace_decay: float = 0.0

    def __post_init__(self):
        _check_unit_interval("meta_discount", self.meta_discount, low_open=True, high_open=False)
        _check_unit_interval("meta_td_lambda", self.meta_td_lambda, low_open=False, high_open=False)
        _check_unit_interval("trace_decay", self.trace_decay, low_open=False, high_open=False)
        cost = self.meta_entropy_cost
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not (
                math.isfinite(cost) and cost >= 0):
            raise ValueError(f"MetaGrad.meta_entropy_cost must be a finite number >= 0, got {cost!r}")
        rates = self.meta_learning_rates
        if not (isinstance(rates, (list, tuple)) and rates and all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and r > 0
                for r in rates)):
            raise ValueError("MetaGrad.meta_learning_rates (the grid of η's Adam step size β) must "
                             f"be a non-empty list of finite numbers > 0, got {rates!r}")
        # A JSON round trip (saved rules) turns the tuple into a list: normalise.
        object.__setattr__(self, "meta_learning_rates", tuple(float(r) for r in rates))
        for name in ("learn_discount", "learn_td_lambda"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"MetaGrad.{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def output_spec(self) -> types.OutputSpec:
        return types.OutputSpec(value=True)

    @property
    def hyper_grid(self) -> dict[str, tuple[float, ...]]:
        """β, the step size of η's Adam."""
        return {"meta_lr": self.meta_learning_rates}

    @property
    def curve_stats(self) -> tuple[str, ...]:
        return ETA_NAMES

    @property
    def learn_mask(self) -> jax.Array:
        """[2] 1 for the learned entries of (γ, λ), 0 for the fixed ones."""
        return jnp.asarray([self.learn_discount, self.learn_td_lambda], jnp.float32)

    def init_params(self, key: jax.Array) -> dict:
        del key
        return {}

    def init_state(self, key: jax.Array, agent_params: Any) -> MetaGradState:
        """η at its initial value (δ = 0), a zero trace shaped like θ with a trailing [2]."""
        del key
        shift = jnp.zeros((len(ETA_NAMES),), jnp.float32)
        return MetaGradState(
            logit_shift=shift,
            opt_state=_eta_optimiser().init(shift),
            trace=jax.tree.map(lambda p: jnp.zeros(p.shape + (len(ETA_NAMES),), p.dtype), agent_params),
            meta_grad=jnp.zeros_like(shift),
            num_updates=jnp.zeros((), jnp.int32))

    # ------------------------------------------------------------------------ the agent's update

    def targets(self, meta_params, state: MetaGradState, rollout, agent_out, next_out, hyper):
        """A2C's targets with the learned γ, λ: π̂_t = G_t^η − V(s_t), value target G_t^η ([T, B])."""
        del meta_params
        discount, td_lambda = eta_from_shift(hyper, state.logit_shift)
        eta_hyper = hyper.replace(discount=discount, td_lambda=td_lambda)
        return a2c.A2C().targets({}, None, rollout, agent_out, next_out, eta_hyper)

    def agent_loss(self, meta_params, state: MetaGradState, agent_out, rollout, targets, hyper):
        """A2C's loss; logs its terms, the γ and λ of this update and the last ∂J̄/∂δ."""
        del meta_params
        loss, logs = a2c.A2C().agent_loss({}, None, agent_out, rollout, targets, hyper)
        discount, td_lambda = eta_from_shift(hyper, state.logit_shift)
        logs = dict(logs, discount=discount, td_lambda=td_lambda,
                    meta_grad_discount=state.meta_grad[0], meta_grad_td_lambda=state.meta_grad[1])
        return loss, logs

    # ----------------------------------------------------------------------- the meta-objective

    def meta_targets(
        self, rollout: types.Rollout, agent_out: types.AgentOutput, next_out: types.AgentOutput,
        hyper: types.HyperParams,
    ) -> types.RuleOutput:
        """J̄'s targets: the A2C targets with the reference γ̄, λ̄ (constants w.r.t. θ), [T, B]."""
        reference = hyper.replace(discount=jnp.asarray(self.meta_discount, jnp.float32),
                                  td_lambda=jnp.asarray(self.meta_td_lambda, jnp.float32))
        return a2c.A2C().targets({}, None, rollout, agent_out, next_out, reference)

    def meta_loss(
        self, agent_out: types.AgentOutput, rollout: types.Rollout, targets: types.RuleOutput,
        hyper: types.HyperParams,
    ) -> jax.Array:
        """J̄(τ', θ', η̄): the A2C loss of `agent_out` (θ' on τ') against `meta_targets`, with the
        lifetime's c_V and entropy cost `meta_entropy_cost`. A scalar."""
        loss, _ = a2c.A2C().agent_loss(
            {}, None, agent_out, rollout, targets,
            hyper.replace(entropy_cost=jnp.asarray(self.meta_entropy_cost, jnp.float32)))
        return loss

    def adapt_state(
        self,
        meta_params: Any,
        state: MetaGradState,
        rollout: types.Rollout,
        agent_out: types.AgentOutput,
        next_out: types.AgentOutput,
        hyper: types.HyperParams,
        *,
        params_vjp: Callable[[types.AgentOutput], Any],
        update_params: Callable[[MetaGradState], Any],
    ) -> MetaGradState:
        """Steps 1–2 of the module docstring: η's meta-gradient step on this rollout (judging the
        previous update), then the trace z for the update about to be made."""
        del meta_params
        # 1. ∂J̄(τ_k, θ_k)/∂θ_k, pulled back from the outputs through the update's own VJP.
        meta_targets = self.meta_targets(rollout, agent_out, next_out, hyper)
        out_grad = jax.grad(lambda out: self.meta_loss(out, rollout, meta_targets, hyper))(agent_out)
        theta_grad = params_vjp(out_grad)
        chex.assert_trees_all_equal_structs(theta_grad, jax.tree.map(lambda z: z[..., 0], state.trace))
        meta_grad = sum(
            jnp.tensordot(g, z, axes=g.ndim) for g, z in zip(jax.tree.leaves(theta_grad),
                                                             jax.tree.leaves(state.trace)))  # [2]
        meta_grad = meta_grad.astype(state.logit_shift.dtype)
        direction, opt_state = _eta_optimiser().update(meta_grad * self.learn_mask, state.opt_state)
        stepped = state.logit_shift + hyper.rule["meta_lr"] * direction  # Adam's direction is −m̂/√v̂
        # Update 0 has no previous update to judge (z = 0): keep δ and Adam's step count as they are.
        judged = state.num_updates > 0
        logit_shift = jnp.where(judged, stepped, state.logit_shift)
        opt_state = jax.tree.map(lambda new, old: jnp.where(judged, new, old), opt_state, state.opt_state)
        state = state.replace(logit_shift=logit_shift, opt_state=opt_state, meta_grad=meta_grad,
                              num_updates=state.num_updates + 1)

        # 2. z' = μ z + ∂θ'/∂δ: forward mode through the agent update, with θ fixed.
        def params_after(shift):
            return update_params(state.replace(logit_shift=shift))

        jacobian = jax.jacfwd(params_after)(logit_shift)  # θ's structure, leaves [..., 2]
        # z is bookkeeping for later meta-steps, not part of this update's function of θ: an
        # outer differentiation of the learner step must not go through the Jacobian again.
        trace = jax.tree.map(lambda z, j: self.trace_decay * z + jax.lax.stop_gradient(j).astype(z.dtype),
                             state.trace, jacobian)
        return state.replace(trace=trace)
