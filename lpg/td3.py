"""TD3 (Fujimoto et al. 2018, arXiv:1802.09477) and DDPG (Lillicrap et al. 2016) for Box actions.

The off-policy agents MetaGenRL builds on (Kirsch et al. 2020, §5 and Appendix B: "each agent
uses clipped double-Q learning, delayed policy updates, and target policy smoothing from TD3").
A deterministic policy a = π_φ(s) ∈ [−1, 1]^D (tanh output, scaled to the Box [low, high] only on
the way to the environment) and C critics Q_θc(s, a) (C = 2 for TD3, 1 for DDPG) learn from a
replay buffer (`lpg.replay`):

  target action  ã = clip(π_φ'(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)   (smoothing; DDPG: ε = 0)
  critic target  y = r + γ (1 − terminated) min_c Q_θ'c(s', ã)                  (clipped double-Q)
  critic loss    Σ_c mean_batch (Q_θc(s, a) − y)²
  actor loss     −mean_batch Q_θ1(s, π_φ(s))           every `policy_delay` critic steps (DDPG: 1)
  targets        θ' ← τ θ + (1 − τ) θ',  φ' ← τ φ + (1 − τ) φ'   right after each actor step
  acting         a = clip(π_φ(s) + N(0, σ_e²), −1, 1); uniform random actions during the warm-up

Noise scales (σ̃ = 0.2, c = 0.5, σ_e = 0.1) are in the normalised action units, i.e. fractions of
the Box's half-range, as in the paper (its actions are scaled to [−1, 1]). The buffer stores
normalised actions too, so critics see actions on one scale whatever the environment's bounds.
A time-limit truncation bootstraps from the true last state (`info["final_observation"]`); only a
termination cuts the bootstrap.

Why not an `UpdateRule` (lpg/rules/): `lpg.agent.learner_step` unrolls T steps with a stochastic
policy from `AgentOutput.policy()`, then takes gradient steps on that fresh rollout through the
agent's own outputs. TD3 acts with a deterministic policy plus exploration noise, learns from
batches sampled out of a replay buffer (one critic step per environment step), differentiates
the actor through separate critic networks, and keeps target networks and two optimisers. Folding
that into `init_state`/`update_state` would leave `targets`/`agent_loss` meaningless and put the
whole algorithm in a side channel; so TD3 owns its state and loop here, built from pieces
(`critic_step`, `actor_step`, `update_targets`) meant for MetaGenRL to reuse, with its learned
objective in place of the actor loss.

Everything about one agent is one pytree (`TD3State`: actor, critics, targets, both optimiser
states, replay buffer, environment carry, environment params, RNG), so a population is a `vmap`
over `init_state` keys and a whole run is `lax.scan`s (`warmup`, then `train`). Learning rate and
γ are traced (`types.HyperParams.learning_rate` for actor and critics, `.discount`), like every
other agent's; the rest of the configuration is the static `TD3` dataclass. Nothing here jits, and
the population vmap is the caller's (inside, vmaps run only over the B environments and the C
critics).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from envs import base as env_base
from envs import task as task_lib
from lpg import agent as agent_lib
from lpg import replay
from lpg import types


@dataclasses.dataclass(frozen=True)
class TD3:
    """Static TD3/DDPG configuration (hashable; holds no arrays).

    hidden: widths of the actor's and each critic's ReLU layers (the TD3 paper: (400, 300);
      MetaGenRL: (350, 350, 350) with layer norm).
    layer_norm: LayerNorm before each ReLU (MetaGenRL's networks); off in the TD3 paper.
    num_envs: B environments per agent, stepped together; each iteration step adds B transitions
      and takes one critic step (MetaGenRL and the paper: B = 1).
    buffer_capacity: transitions kept (a multiple of num_envs).
    batch_size: transitions per gradient step (TD3 paper: 100 in 2018, 256 in its later code).
    warmup_steps: environment steps (per environment) of uniform random actions before learning.
    tau: Polyak rate of the target networks.
    exploration_noise: σ_e of the Gaussian acting noise.
    policy_noise, noise_clip: σ̃ and c of target policy smoothing.
    policy_delay: critic steps per actor (and target) step.
    ddpg: DDPG instead of TD3: one critic, no target smoothing, no delay (the fields above for
      those are then ignored).
    """

    hidden: tuple[int, ...] = (256, 256)
    layer_norm: bool = False
    num_envs: int = 1
    buffer_capacity: int = 1_000_000
    batch_size: int = 256
    warmup_steps: int = 10_000
    tau: float = 0.005
    exploration_noise: float = 0.1
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    ddpg: bool = False

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        if not self.hidden or any(w < 1 for w in self.hidden):
            raise ValueError(f"TD3.hidden must be non-empty positive widths, got {self.hidden!r}")
        for name in ("num_envs", "batch_size", "warmup_steps", "policy_delay"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TD3.{name} must be an int >= 1, got {value!r}")
        if self.buffer_capacity < self.num_envs or self.buffer_capacity % self.num_envs:
            raise ValueError(f"TD3.buffer_capacity must be a positive multiple of num_envs="
                             f"{self.num_envs}, got {self.buffer_capacity!r}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"TD3.tau must be in (0, 1], got {self.tau!r}")
        for name in ("exploration_noise", "policy_noise", "noise_clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"TD3.{name} must be a finite number >= 0, got {value!r}")

    @property
    def num_critics(self) -> int:
        return 1 if self.ddpg else 2

    @property
    def critic_steps_per_actor_step(self) -> int:
        return 1 if self.ddpg else self.policy_delay

    @property
    def smoothing(self) -> bool:
        return not self.ddpg and self.policy_noise > 0

    def config(self) -> dict:
        """JSON-serialisable configuration; `TD3(**config())` rebuilds it."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------- networks


class _Torso(nn.Module):
    """D(hidden...) with ReLU (and LayerNorm before it, optionally)."""

    hidden: tuple[int, ...]
    layer_norm: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = nn.relu(x)
        return x


class DeterministicActor(nn.Module):
    """π_φ(s) = tanh(MLP(s)) ∈ (−1, 1)^D: obs [..., O] → normalised actions [..., D]."""

    action_dim: int
    hidden: tuple[int, ...]
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = _Torso(self.hidden, self.layer_norm)(jnp.asarray(obs, jnp.float32))
        return jnp.tanh(nn.Dense(self.action_dim)(x))


class Critic(nn.Module):
    """Q_θ(s, a) = MLP([s, a]): obs [..., O], normalised actions [..., D] → [...]."""

    hidden: tuple[int, ...]
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([jnp.asarray(obs, jnp.float32), action], axis=-1)
        return nn.Dense(1)(_Torso(self.hidden, self.layer_norm)(x))[..., 0]


@dataclasses.dataclass(frozen=True)
class Networks:
    """The static modules of one TD3 agent (built by `make_networks`)."""

    actor: DeterministicActor
    critic: Critic

    def q_values(self, critic_params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        """All C critics at once: params with leading [C], obs [N, O], action [N, D] → [C, N]."""
        return jax.vmap(self.critic.apply, in_axes=(0, None, None))(critic_params, obs, action)


def make_networks(config: TD3, action_dim: int) -> Networks:
    return Networks(
        actor=DeterministicActor(action_dim, config.hidden, config.layer_norm),
        critic=Critic(config.hidden, config.layer_norm),
    )


# ------------------------------------------------------------------------------------- state


@flax.struct.dataclass
class Transition:
    """One stored step of one environment (time convention of `lpg.types`, for one step).

    obs: [O] s_t; action: [D] a_t in normalised units [−1, 1]; reward: [] r_t;
    next_obs: [O] the true s_{t+1} (the finished episode's last observation at an episode end);
    terminated / truncated: bool [] whether the episode ended at t by termination / time limit.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


@flax.struct.dataclass
class TD3State:
    """Everything one TD3/DDPG agent carries (leading [L] when a population is vmapped).

    actor: φ and its Adam state (`AgentState.rule_state` unused).
    critic: θ of all C critics stacked on a leading [C] axis, and their Adam state.
    target_actor, target_critic: φ' and θ' (same trees as the online parameters).
    buffer: the replay buffer of `Transition`s (`lpg.replay`).
    carry: the B environments (state, current observations [B, O], running returns [B]).
    env_params: this agent's environment parameters.
    key: the agent's PRNG key, split at every step.
    """

    actor: agent_lib.AgentState
    critic: agent_lib.AgentState
    target_actor: Any
    target_critic: Any
    buffer: replay.ReplayState
    carry: agent_lib.EnvCarry
    env_params: Any
    key: jax.Array


# Adam with unit step size, scaled by the traced α_lr in `_adam_step` (as `lpg.agent` does), and
# the same ε_root > 0, so MetaGenRL can differentiate through these updates without NaNs.
_OPTIMISER = optax.adam(1.0, eps_root=agent_lib.ADAM_EPS_ROOT)


def _adam_step(learner: agent_lib.AgentState, grads: Any, learning_rate: jax.Array) -> agent_lib.AgentState:
    updates, opt_state = _OPTIMISER.update(grads, learner.opt_state, learner.params)
    updates = jax.tree.map(lambda u: learning_rate * u, updates)
    return learner.replace(params=optax.apply_updates(learner.params, updates), opt_state=opt_state)


def _box(env: env_base.Environment, env_params: Any) -> tuple[jax.Array, jax.Array]:
    """(low [D], high [D]) float32 of the env's Box action space under `env_params` (may be traced)."""
    space = env.action_space(env_params)
    if not isinstance(space, env_base.Box) or len(space.shape) != 1:
        raise ValueError(f"TD3 needs a 1-D Box action space, got {space!r}")
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape)
    return low, high


def action_dim(task: task_lib.Task, env_params: Any) -> int:
    """D, the static size of the task's Box action space."""
    return _box(task.env, env_params)[0].shape[0]


def to_env_action(action: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Normalised actions [..., D] in [−1, 1] → the Box: c + h·a, c = (high+low)/2, h = (high−low)/2."""
    return (high + low) / 2 + (high - low) / 2 * action


def init_state(config: TD3, task: task_lib.Task, key: jax.Array, env_params: Any = None) -> TD3State:
    """A fresh agent on `task`: E ~ p(E), φ, θ (C critics), targets = online copies, Adam states,
    an empty buffer and B reset environments. Unbatched; vmap over keys for a population.

    env_params: this agent's E if given (the evaluation protocol pairs seeds across algorithms
    by drawing E from the same key for all of them); default: drawn from `key`.
    """
    env_key, actor_key, critic_key, carry_key, run_key = jax.random.split(key, 5)
    if env_params is None:
        env_params = task.sample_params(env_key)
    carry = agent_lib.init_env_carry(task.env, env_params, carry_key, config.num_envs)
    obs = carry.obs[0]  # [O]
    if obs.ndim != 1:
        raise ValueError(f"TD3 needs vector observations, got shape {obs.shape}")
    nets = make_networks(config, action_dim(task, env_params))
    action = jnp.zeros((nets.actor.action_dim,), jnp.float32)
    actor_params = nets.actor.init(actor_key, obs)
    # A Python loop, not a vmap over keys: XLA:CPU compiled the vmapped flax init 2.5x slower.
    critic_params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[
        nets.critic.init(k, obs, action) for k in jax.random.split(critic_key, config.num_critics)
    ])  # leaves [C, ...]
    example = Transition(obs=obs, action=action, reward=jnp.zeros((), jnp.float32), next_obs=obs,
                         terminated=jnp.zeros((), bool), truncated=jnp.zeros((), bool))
    return TD3State(
        actor=agent_lib.AgentState(actor_params, _OPTIMISER.init(actor_params)),
        critic=agent_lib.AgentState(critic_params, _OPTIMISER.init(critic_params)),
        target_actor=actor_params,
        target_critic=critic_params,
        buffer=replay.init(example, capacity=config.buffer_capacity, num_envs=config.num_envs),
        carry=carry,
        env_params=env_params,
        key=run_key,
    )


# ------------------------------------------------------------------------------------ acting


def env_step(
    config: TD3, task: task_lib.Task, state: TD3State, *, random_actions: bool = False
) -> tuple[TD3State, dict[str, jax.Array]]:
    """One step of the B environments with π_φ + N(0, σ_e²) (or uniform random actions), stored
    in the buffer.

    random_actions: static; True during the warm-up.
    Returns:
      (state, stats): return_sum / return_count of the episodes that ended at this step.
    """
    key, action_key, step_key = jax.random.split(state.key, 3)
    num_envs = config.num_envs
    low, high = _box(task.env, state.env_params)
    obs = state.carry.obs  # [B, O]
    shape = (num_envs, low.shape[0])
    if random_actions:
        action = jax.random.uniform(action_key, shape, jnp.float32, -1.0, 1.0)
    else:
        nets = make_networks(config, low.shape[0])
        noise = config.exploration_noise * jax.random.normal(action_key, shape, jnp.float32)
        action = jnp.clip(nets.actor.apply(state.actor.params, obs) + noise, -1.0, 1.0)  # [B, D]
    next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
        task.env.step, in_axes=(0, 0, 0, None))(
        jax.random.split(step_key, num_envs), state.carry.env_state, to_env_action(action, low, high),
        state.env_params)
    # Canonical dtypes: the buffer's example fixed them, and flashbax checks them on `add`.
    reward = jnp.asarray(reward, jnp.float32)
    terminated, truncated = jnp.asarray(terminated, bool), jnp.asarray(truncated, bool)
    done = terminated | truncated
    transitions = Transition(obs=obs, action=action, reward=reward,
                             next_obs=info["final_observation"],  # true s_{t+1}, before a reset
                             terminated=terminated, truncated=truncated)
    running = state.carry.episode_return + reward
    carry = agent_lib.EnvCarry(env_state=env_state, obs=next_obs,
                               episode_return=jnp.where(done, 0.0, running))
    stats = dict(return_sum=jnp.sum(jnp.where(done, running, 0.0)),
                 return_count=jnp.sum(done).astype(jnp.float32))
    return state.replace(buffer=replay.add(state.buffer, transitions), carry=carry, key=key), stats


def policy_returns(
    config: TD3, task: task_lib.Task, actor_params: Any, env_params: Any, key: jax.Array, *,
    num_envs: int, num_steps: int,
) -> tuple[jax.Array, jax.Array]:
    """Runs the deterministic policy π_φ (no noise, no learning) in `num_envs` fresh environments.

    Returns:
      (mean undiscounted return of the episodes that finished (NaN if none did), their count).
    """
    reset_key, run_key = jax.random.split(key)
    carry = agent_lib.init_env_carry(task.env, env_params, reset_key, num_envs)
    low, high = _box(task.env, env_params)
    actor = make_networks(config, low.shape[0]).actor

    def step(carry: agent_lib.EnvCarry, step_key):
        action = to_env_action(actor.apply(actor_params, carry.obs), low, high)
        obs, env_state, reward, terminated, truncated, _ = jax.vmap(
            task.env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(step_key, num_envs), carry.env_state, action, env_params)
        done = terminated | truncated
        running = carry.episode_return + jnp.asarray(reward, jnp.float32)
        new_carry = agent_lib.EnvCarry(env_state, obs, jnp.where(done, 0.0, running))
        return new_carry, (jnp.sum(jnp.where(done, running, 0.0)), jnp.sum(done))

    _, (sums, counts) = jax.lax.scan(step, carry, jax.random.split(run_key, num_steps))
    total, count = jnp.sum(sums), jnp.sum(counts).astype(jnp.float32)
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan), count


# ---------------------------------------------------------------------------------- learning


def target_actions(config: TD3, nets: Networks, target_actor: Any, next_obs: jax.Array,
                   key: jax.Array) -> jax.Array:
    """ã = clip(π_φ'(s') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ̃²); π_φ'(s') without smoothing.

    next_obs [N, O] → [N, D] normalised actions.
    """
    action = nets.actor.apply(target_actor, next_obs)
    if not config.smoothing:
        return action
    noise = config.policy_noise * jax.random.normal(key, action.shape, action.dtype)
    noise = jnp.clip(noise, -config.noise_clip, config.noise_clip)
    return jnp.clip(action + noise, -1.0, 1.0)


def critic_step(
    config: TD3, nets: Networks, state: TD3State, batch: Transition, hyper: types.HyperParams,
    key: jax.Array,
) -> tuple[agent_lib.AgentState, dict[str, jax.Array]]:
    """One Adam step of all C critics on the TD error of `batch` (leaves [N, ...]).

    Returns:
      (the critics' new AgentState, logs: critic_loss, q_mean = mean Q_θ1(s, a) before the step).
    """
    chex.assert_rank(batch.reward, 1)
    next_action = target_actions(config, nets, state.target_actor, batch.next_obs, key)
    next_q = jnp.min(nets.q_values(state.target_critic, batch.next_obs, next_action), axis=0)  # [N]
    # Bootstrap through a time-limit truncation (next_obs is the true s'), not a termination.
    target = batch.reward + hyper.discount * (1.0 - batch.terminated.astype(jnp.float32)) * next_q
    target = jax.lax.stop_gradient(target)

    def loss_fn(critic_params):
        q = nets.q_values(critic_params, batch.obs, batch.action)  # [C, N]
        return jnp.sum(jnp.mean(jnp.square(q - target), axis=1)), q

    (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic.params)
    return (_adam_step(state.critic, grads, hyper.learning_rate),
            dict(critic_loss=loss, q_mean=jnp.mean(q[0])))


def actor_step(
    nets: Networks, state: TD3State, batch: Transition, hyper: types.HyperParams
) -> tuple[agent_lib.AgentState, dict[str, jax.Array]]:
    """One Adam step of φ on −mean Q_θ1(s, π_φ(s)) over `batch.obs` [N, O] (deterministic policy
    gradient through the first critic). Returns (the actor's new AgentState, logs: actor_loss)."""
    first_critic = jax.tree.map(lambda x: x[0], state.critic.params)

    def loss_fn(actor_params):
        action = nets.actor.apply(actor_params, batch.obs)
        return -jnp.mean(nets.critic.apply(first_critic, batch.obs, action))

    loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
    return _adam_step(state.actor, grads, hyper.learning_rate), dict(actor_loss=loss)


def update_targets(config: TD3, state: TD3State) -> TD3State:
    """Polyak averaging θ' ← τ θ + (1 − τ) θ', φ' ← τ φ + (1 − τ) φ'."""
    polyak = lambda online, target: config.tau * online + (1.0 - config.tau) * target
    return state.replace(
        target_actor=jax.tree.map(polyak, state.actor.params, state.target_actor),
        target_critic=jax.tree.map(polyak, state.critic.params, state.target_critic),
    )


def train_iteration(
    config: TD3, task: task_lib.Task, state: TD3State, hyper: types.HyperParams
) -> tuple[TD3State, dict[str, jax.Array]]:
    """`critic_steps_per_actor_step` × (one environment step, one critic step on a fresh batch),
    then one actor step on the last batch and the target update.

    Writing the delay as the iteration's structure rather than a `cond` on a step counter keeps
    it a real branch-free program under the population vmap (a batched `cond` runs both sides).
    Returns:
      (state, stats): return_sum / return_count summed over the iteration's environment steps;
      critic_loss, q_mean averaged over its critic steps; actor_loss.
    """
    nets = make_networks(config, action_dim(task, state.env_params))

    def act_and_fit_critic(state: TD3State, _):
        state, env_stats = env_step(config, task, state)
        key, sample_key, noise_key = jax.random.split(state.key, 3)
        batch = replay.sample(state.buffer, sample_key, config.batch_size)
        critic, logs = critic_step(config, nets, state, batch, hyper, noise_key)
        return state.replace(critic=critic, key=key), (batch, dict(env_stats, **logs))

    state, (batches, per_step) = jax.lax.scan(
        act_and_fit_critic, state, None, length=config.critic_steps_per_actor_step)
    last_batch = jax.tree.map(lambda x: x[-1], batches)
    actor, actor_logs = actor_step(nets, state, last_batch, hyper)
    state = update_targets(config, state.replace(actor=actor))
    stats = dict(
        return_sum=jnp.sum(per_step["return_sum"]), return_count=jnp.sum(per_step["return_count"]),
        critic_loss=jnp.mean(per_step["critic_loss"]), q_mean=jnp.mean(per_step["q_mean"]),
        **actor_logs,
    )
    return state, stats


def warmup(config: TD3, task: task_lib.Task, state: TD3State, num_steps: int | None = None
           ) -> tuple[TD3State, dict[str, jax.Array]]:
    """`num_steps` (default `config.warmup_steps`) random-action environment steps, no learning.

    Returns (state, stats [num_steps]: return_sum, return_count).
    """
    num_steps = config.warmup_steps if num_steps is None else num_steps
    return jax.lax.scan(lambda s, _: env_step(config, task, s, random_actions=True), state, None,
                        length=num_steps)


def train(config: TD3, task: task_lib.Task, state: TD3State, hyper: types.HyperParams, *,
          num_iterations: int) -> tuple[TD3State, dict[str, jax.Array]]:
    """`num_iterations` `train_iteration`s in one `lax.scan` (each has
    `critic_steps_per_actor_step` × B environment steps). Returns (state, stats [num_iterations])."""
    return jax.lax.scan(lambda s, _: train_iteration(config, task, s, hyper), state, None,
                        length=num_iterations)


def run(config: TD3, task: task_lib.Task, key: jax.Array, hyper: types.HyperParams, *,
        env_steps: int) -> tuple[TD3State, dict[str, jax.Array], dict[str, jax.Array]]:
    """A whole lifetime of `env_steps` steps per environment: init, warm-up, then training.

    `env_steps` − `config.warmup_steps` must be a positive multiple of
    `critic_steps_per_actor_step`. Unbatched; vmap over keys (and hyper) for a population.
    Returns:
      (final state, warm-up stats [warmup_steps], training stats [iterations]).
    """
    learn_steps = env_steps - config.warmup_steps
    delay = config.critic_steps_per_actor_step
    if learn_steps <= 0 or learn_steps % delay:
        raise ValueError(f"env_steps - warmup_steps = {learn_steps} must be a positive multiple of "
                         f"{delay} (critic steps per actor step)")
    state = init_state(config, task, key)
    state, warmup_stats = warmup(config, task, state)
    state, train_stats = train(config, task, state, hyper, num_iterations=learn_steps // delay)
    return state, warmup_stats, train_stats


def make_hyper(learning_rate: float = 3e-4, discount: float = 0.99) -> types.HyperParams:
    """`types.HyperParams` for TD3: α_lr (actor and critics) and γ; the fields TD3 does not read
    (entropy_cost, value_cost, td_lambda) are 0."""
    zero = jnp.zeros((), jnp.float32)
    return types.HyperParams(learning_rate=jnp.asarray(learning_rate, jnp.float32),
                             discount=jnp.asarray(discount, jnp.float32),
                             entropy_cost=zero, value_cost=zero, td_lambda=zero)
