"""The agent: acting in B environments and one update with an update rule (LPG Eq. 2, Alg. 1).

One agent update (`learner_step` = `unroll` + `agent_update`) is
  1. unroll T steps in B environments with the current policy (`unroll`, a `lax.scan`);
  2. evaluate the network once on the T+1 observations, keeping its VJP (`jax.vjp`), and on the
     T true successor states (bootstrap values and y(s_{t+1}) at episode ends);
  3. ask the rule for targets (π̂, ŷ, value target): a function of the meta-parameters η and
     of the rule's per-lifetime state (`AgentState.rule_state`: first adapted online by
     `rule.adapt_state`, a no-op except for rules like metagrad, updated after the step);
  4. differentiate the rule's loss w.r.t. the *network outputs* with the targets held fixed,
     and pull that back through the VJP to θ: Δθ ∝ E[∇_θ log π_θ(a|s) π̂ − α_y ∇_θ KL(y_θ(s)‖ŷ)]
     treats π̂ and ŷ as constants w.r.t. θ (Eq. 2), yet nothing stops the gradient, so
     ∂θ'/∂η flows through the targets (the meta-gradient of Eq. 3–4);
  5. one optimiser step: SGD for tables, Adam for networks (SPEC Table 3), step size α_lr traced.
     A rule with `num_epochs` × `num_minibatches` > 1 (PPO) instead takes that many steps, each on
     a minibatch of the B environments (reshuffled every epoch), with the targets of step 3 held
     fixed: the network is re-evaluated on each minibatch with the current θ.

Everything here is a pure function without jit/vmap decorators; callers compose vmap over
lifetimes, scan over updates and jit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from envs import base as env_base
from lpg import distributions
from lpg import networks
from lpg import types
from lpg.rules import base as rules_base

OPTIMISERS = ("sgd", "adam")

# SPEC §5: differentiating through Adam with eps_root = 0 gives 0·∞ = NaN meta-gradients as soon
# as a parameter has an exactly zero gradient (e.g. first-layer weights of an input feature never
# active in the rollout; tests/lpg/test_agent.py reproduces it). d√(ν + eps_root)/dν stays finite.
ADAM_EPS_ROOT = 1e-8


@dataclasses.dataclass(frozen=True)
class Agent:
    """Static agent configuration (hashable; holds no arrays).

    network: flax module from `networks.make_network`; its policy head has
      `policy_spec.num_outputs` outputs.
    policy_spec: how the policy head becomes π(·|s) (`distributions.DistributionSpec`, from the
      environment's action space); None: a categorical over the head (discrete actions).
    optimiser: "sgd" (tabular agents) or "adam" (network agents).
    grad_clip: max global norm of the gradient, or None; applied before either optimiser.
    adam_eps_root: Adam's ε inside the square root; keep it > 0 (see ADAM_EPS_ROOT).
    """

    network: nn.Module
    policy_spec: distributions.DistributionSpec | None = None
    optimiser: str = "adam"
    grad_clip: float | None = None
    adam_eps_root: float = ADAM_EPS_ROOT

    def __post_init__(self):
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"Agent.optimiser={self.optimiser!r}; allowed: {OPTIMISERS}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"Agent.grad_clip must be positive or None, got {self.grad_clip}")

    def apply(self, params: Any, obs: Any, action_mask: jax.Array | None = None) -> types.AgentOutput:
        """Network outputs on observations with any leading dims, logits masked.

        Args:
          params: network parameters.
          obs: [..., *obs_shape].
          action_mask: bool [A] or broadcastable to [..., A] (discrete actions); None means all
            actions valid (and is the only value for continuous actions).
        Returns:
          AgentOutput with logits [..., P] (the policy head), y [..., m], value [...] and
          `policy_spec` set, so `out.policy()` is π(·|s).
        """
        out = self.network.apply(params, obs).replace(policy_spec=self.policy_spec)
        if action_mask is None:
            return out
        if not self.discrete:
            raise ValueError("action masks only apply to discrete action spaces")
        return out.replace(logits=networks.mask_logits(out.logits, action_mask))

    @property
    def discrete(self) -> bool:
        return self.policy_spec is None or self.policy_spec.kind == distributions.CATEGORICAL

    def transform(self) -> optax.GradientTransformation:
        """The optimiser with unit step size; `apply_gradients` scales by the traced α_lr."""
        if self.optimiser == "sgd":
            return optax.sgd(1.0)
        return optax.adam(1.0, eps_root=self.adam_eps_root)


@flax.struct.dataclass
class AgentState:
    """Parameters θ, optimiser state and the update rule's per-lifetime state of one agent.

    rule_state: `UpdateRule.init_state` (None for rules without state, and for meta-critics).
    """

    params: Any
    opt_state: Any
    rule_state: Any = None


@flax.struct.dataclass
class EnvCarry:
    """The state of B environments carried between unrolls.

    env_state: [B] environment states.
    obs: [B, ...] current observations (the next unroll's observations[0]).
    episode_return: [B] undiscounted return of the running episodes so far.
    """

    env_state: Any
    obs: Any
    episode_return: jax.Array


def init_agent_state(
    agent: Agent, key: jax.Array, obs_example: Any, rule: rules_base.UpdateRule | None
) -> AgentState:
    """Fresh θ0, optimiser state and rule state. `obs_example` is one unbatched observation.

    rule: the rule that will train this agent (its `init_state`); None for an agent no rule
      trains (the meta-objective's critic). θ0 depends on `key` alone, whatever the rule.
    """
    params = agent.network.init(key, obs_example)
    rule_state = None if rule is None else rule.init_state(jax.random.fold_in(key, 1), params)
    return AgentState(params=params, opt_state=agent.transform().init(params), rule_state=rule_state)


def global_norm(tree: Any) -> jax.Array:
    """√(Σ x²) over all leaves, with a finite gradient at 0 (unlike optax.global_norm)."""
    squares = sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))
    # d√s/ds is infinite at s = 0; an all-zero gradient must not turn meta-gradients into NaN.
    return jnp.sqrt(jnp.maximum(squares, jnp.finfo(jnp.float32).tiny))


def clip_by_global_norm(grads: Any, max_norm: float) -> Any:
    """Scales `grads` so that its global norm is at most `max_norm` (differentiable everywhere)."""
    scale = jnp.minimum(1.0, max_norm / global_norm(grads))
    return jax.tree.map(lambda g: g * scale, grads)


def apply_gradients(
    agent: Agent, agent_state: AgentState, grads: Any, learning_rate: jax.Array
) -> AgentState:
    """One optimiser step θ ← θ − α_lr · opt(clip(∇θ)).

    Clipping happens here, outside the optimiser choice, so it applies to SGD and Adam alike
    (SPEC §5: a prior implementation clipped only for SGD). α_lr may be traced.
    """
    if agent.grad_clip is not None:
        grads = clip_by_global_norm(grads, agent.grad_clip)
    updates, opt_state = agent.transform().update(grads, agent_state.opt_state, agent_state.params)
    updates = jax.tree.map(lambda u: learning_rate * u, updates)
    params = optax.apply_updates(agent_state.params, updates)
    return agent_state.replace(params=params, opt_state=opt_state)


def init_env_carry(env: env_base.Environment, env_params: Any, key: jax.Array, num_envs: int) -> EnvCarry:
    """Resets `num_envs` environments that share one lifetime's `env_params`."""
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), env_params)
    return EnvCarry(env_state=env_state, obs=obs, episode_return=jnp.zeros((num_envs,), jnp.float32))


def unroll(
    agent: Agent,
    params: Any,
    env: env_base.Environment,
    env_params: Any,
    carry: EnvCarry,
    key: jax.Array,
    num_steps: int,
) -> tuple[types.Rollout, EnvCarry]:
    """Acts for T = `num_steps` steps in B environments (time convention in `lpg.types`).

    Args:
      agent: static agent.
      params: θ (no gradient flows through acting; see below).
      env: unbatched environment; vmapped here over the B environments.
      env_params: one lifetime's environment parameters, shared by all B environments.
      carry: EnvCarry with leading dim [B].
      key: PRNG key.
      num_steps: T (static).
    Returns:
      (rollout, new_carry): rollout.observations [T+1, B, ...] (index T = new_carry.obs),
      next_observations [T, B, ...] (true successor states), actions [T, B] int32 or
      [T, B, D] float32 (as sampled; a Gaussian's are clipped only on the way to the
      environment), rewards/terminated/truncated/episode_returns [T, B], action_mask [B, A]
      (None for continuous actions).
    """
    # Sampled actions carry no gradient anyway; stopping it here keeps the per-step forward
    # passes out of any outer differentiation (meta-gradients), which would store residuals.
    params = jax.lax.stop_gradient(params)
    num_envs = carry.episode_return.shape[0]
    mask = env_base.action_mask(env, env_params)  # [A], None for continuous actions
    spec = agent.policy_spec
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def step(carry: EnvCarry, step_key: jax.Array):
        act_key, env_key = jax.random.split(step_key)
        policy = agent.apply(params, carry.obs, mask).policy()  # batch [B]
        action = policy.sample(act_key)  # [B] int32 or [B, D] float32
        env_action = action if spec is None else spec.env_action(action)
        obs, env_state, reward, terminated, truncated, info = batched_step(
            jax.random.split(env_key, num_envs), carry.env_state, env_action, env_params
        )
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool)
        done = terminated | truncated
        running = carry.episode_return + reward
        transition = dict(
            obs=carry.obs,
            # The true s_{t+1}: before the auto-reset replaced it (gymnax sets it on every step).
            next_obs=info["final_observation"],
            action=action,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            episode_return=jnp.where(done, running, 0.0),
        )
        new_carry = EnvCarry(env_state=env_state, obs=obs, episode_return=jnp.where(done, 0.0, running))
        return new_carry, transition

    carry, traj = jax.lax.scan(step, carry, jax.random.split(key, num_steps))
    observations = jax.tree.map(
        lambda seq, last: jnp.concatenate([seq, last[None]], axis=0), traj["obs"], carry.obs
    )
    rollout = types.Rollout(
        observations=observations,
        next_observations=traj["next_obs"],
        actions=traj["action"],
        rewards=traj["reward"],
        terminated=traj["terminated"],
        truncated=traj["truncated"],
        action_mask=None if mask is None else jnp.broadcast_to(mask, (num_envs, mask.shape[-1])),
        episode_returns=traj["episode_return"],
    )
    return rollout, carry


def policy_returns(
    agent: Agent,
    params: Any,
    env: env_base.Environment,
    env_params: Any,
    key: jax.Array,
    *,
    num_envs: int,
    num_steps: int,
) -> tuple[jax.Array, jax.Array]:
    """Runs θ's policy without learning for `num_steps` steps in `num_envs` fresh environments.

    For evaluating a trained agent on other environment params than it was trained on (another
    body of a physics-randomised family, another layout). Actions are sampled, as in training.

    Returns:
      (mean undiscounted return of the episodes that finished (NaN if none did), their count).
    """
    key_reset, key_run = jax.random.split(key)
    carry = init_env_carry(env, env_params, key_reset, num_envs)
    rollout, _ = unroll(agent, params, env, env_params, carry, key_run, num_steps)
    count = jnp.sum(rollout.terminated | rollout.truncated).astype(jnp.float32)
    mean = jnp.where(count > 0, jnp.sum(rollout.episode_returns) / jnp.maximum(count, 1.0), jnp.nan)
    return mean, count


def agent_update(
    rule: rules_base.UpdateRule,
    agent: Agent,
    meta_params: Any,
    agent_state: AgentState,
    rollout: types.Rollout,
    hyper: types.HyperParams,
    key: jax.Array | None = None,
) -> tuple[AgentState, types.RuleOutput, dict[str, jax.Array]]:
    """One agent update with `rule` on a given rollout (steps 2–5 of the module docstring).

    Differentiable end to end w.r.t. `meta_params` (and `hyper`).

    Args:
      rule: the update rule; meta_params: its parameters η.
      agent: static agent; agent_state: θ and optimiser state before the update.
      rollout: T steps of B environments collected with θ ([T+1, B] observations).
      hyper: this lifetime's hyperparameters (α_lr used here, the rest by the rule).
      key: shuffles the minibatches of multi-step rules (None: the same order every epoch);
        unused by single-step rules.
    Returns:
      (agent_state, targets, stats): the updated θ; the rule's targets (π̂ [T, B], ŷ, ...; the
      meta-objective regularises them); stats (scalars): return_sum and return_count of the
      episodes completed in the rollout, entropy (mean policy entropy over [T, B]), loss,
      grad_norm (before clipping), plus the rule's logs.
    """
    chex.assert_rank(rollout.rewards, 2)

    def forward(params):
        return agent.apply(params, rollout.observations, rollout.action_mask)  # [T+1, B, ...]

    agent_out, pullback = jax.vjp(forward, agent_state.params)
    # Outputs on the true successor states (differ from agent_out[1:] only where an episode
    # ended): inputs of the targets only, so no VJP; θ still carries the meta-gradient.
    next_out = agent.apply(agent_state.params, rollout.next_observations, rollout.action_mask)

    def update_with(rule_state):
        """Steps 3–5 from the current θ with `rule_state`: (AgentState, targets, loss,
        grad_norm, logs); the returned AgentState still holds the old rule state."""
        targets = rule.targets(meta_params, rule_state, rollout, agent_out, next_out, hyper)
        if rule.num_epochs * rule.num_minibatches > 1:
            new_state, loss, grad_norm, logs = _minibatch_updates(
                rule, agent, meta_params, agent_state.replace(rule_state=rule_state), rollout,
                targets, hyper, key)
            return new_state, targets, loss, grad_norm, logs

        def loss_of_outputs(out: types.AgentOutput):
            # `targets` is closed over: constant for this gradient (Eq. 2), but still a traced
            # function of meta_params, so an outer jax.grad reaches η through it (and through the
            # loss itself for learned-loss rules).
            return rule.agent_loss(meta_params, rule_state, out, rollout, targets, hyper)

        (loss, logs), out_grad = jax.value_and_grad(loss_of_outputs, has_aux=True)(agent_out)
        (grads,) = pullback(out_grad)
        new_state = apply_gradients(agent, agent_state, grads, hyper.learning_rate)
        return new_state, targets, loss, global_norm(grads), logs

    # Rules that learn their state online from this very update (metagrad's γ, λ) get it as
    # functions; every other rule returns its state untouched and nothing extra is traced.
    rule_state = rule.adapt_state(
        meta_params, agent_state.rule_state, rollout, agent_out, next_out, hyper,
        params_vjp=lambda out_cotangent: pullback(out_cotangent)[0],
        update_params=lambda state: update_with(state)[0].params)
    new_state, targets, loss, grad_norm, logs = update_with(rule_state)
    new_state = new_state.replace(
        rule_state=rule.update_state(meta_params, rule_state, rollout, agent_out, targets, hyper))

    done = rollout.terminated | rollout.truncated
    stats = dict(logs)
    stats.update(
        return_sum=jnp.sum(rollout.episode_returns),
        return_count=jnp.sum(done).astype(jnp.float32),
        entropy=jnp.mean(agent_out.policy(np.s_[:-1]).entropy()),
        loss=loss,
        grad_norm=grad_norm,
    )
    return new_state, targets, stats


def _select_envs(rollout: types.Rollout, targets: types.RuleOutput, env_index: jax.Array):
    """The rollout and targets of the environments `env_index` [b] (B is axis 1 of every
    [T(+1), B, ...] array, axis 0 of the [B, A] action mask)."""
    take = lambda x: jnp.take(x, env_index, axis=1)
    mask = rollout.action_mask
    rollout = jax.tree.map(take, rollout.replace(action_mask=None))
    if mask is not None:
        rollout = rollout.replace(action_mask=jnp.take(mask, env_index, axis=0))
    return rollout, jax.tree.map(take, targets)


def _minibatch_updates(rule, agent, meta_params, agent_state, rollout, targets, hyper, key):
    """`rule.num_epochs` passes over `rule.num_minibatches` minibatches of the B environments.

    Returns (agent_state, mean loss, mean gradient norm, mean of the rule's logs) over all steps.
    """
    num_envs = rollout.rewards.shape[1]
    num_minibatches = rule.num_minibatches
    if num_envs % num_minibatches:
        raise ValueError(f"{type(rule).__name__} splits the B = {num_envs} environments of a rollout "
                         f"into {num_minibatches} minibatches; B must be a multiple of it")
    size = num_envs // num_minibatches

    def minibatch_step(state: AgentState, env_index: jax.Array):
        mb_rollout, mb_targets = _select_envs(rollout, targets, env_index)

        def loss_of_params(params):
            out = agent.apply(params, mb_rollout.observations, mb_rollout.action_mask)
            return rule.agent_loss(meta_params, state.rule_state, out, mb_rollout, mb_targets, hyper)

        (loss, logs), grads = jax.value_and_grad(loss_of_params, has_aux=True)(state.params)
        state = apply_gradients(agent, state, grads, hyper.learning_rate)
        return state, (loss, global_norm(grads), logs)

    def epoch(state: AgentState, epoch_key: jax.Array | None):
        order = jnp.arange(num_envs) if epoch_key is None else jax.random.permutation(epoch_key, num_envs)
        return jax.lax.scan(minibatch_step, state, order.reshape(num_minibatches, size))

    epoch_keys = None if key is None else jax.random.split(key, rule.num_epochs)
    state, per_step = jax.lax.scan(epoch, agent_state, epoch_keys, length=rule.num_epochs)
    loss, grad_norm, logs = jax.tree.map(jnp.mean, per_step)
    return state, loss, grad_norm, logs


def learner_step(
    rule: rules_base.UpdateRule,
    agent: Agent,
    meta_params: Any,
    agent_state: AgentState,
    carry: EnvCarry,
    env: env_base.Environment,
    env_params: Any,
    hyper: types.HyperParams,
    key: jax.Array,
    num_steps: int,
) -> tuple[AgentState, EnvCarry, dict[str, jax.Array]]:
    """Unrolls T = `num_steps` steps with the current θ, then `agent_update` on that rollout.

    Differentiable end to end w.r.t. `meta_params` (and `hyper`).

    Returns:
      (agent_state, carry, stats); stats as in `agent_update`.
    """
    rollout, carry = unroll(agent, agent_state.params, env, env_params, carry, key, num_steps)
    # A key of its own for the minibatch order (multi-step rules); the unroll's stream is `key`.
    update_key = jax.random.fold_in(key, 1)
    agent_state, _, stats = agent_update(
        rule, agent, meta_params, agent_state, rollout, hyper, update_key)
    return agent_state, carry, stats
