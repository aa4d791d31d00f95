"""Every gymnax environment (Lange 2022, gymnax 1.0.1) as a registry task "gymnax/<EnvName>".

    task = envs.make("gymnax/Breakout-MinAtar")       # any id in gymnax.registered_envs
    params = task.sample_params(key)                   # the env's default params, as arrays
    obs, state = task.env.reset(key, params)

`GymnaxEnv` is a thin adapter: it keeps the gymnax state and params pytrees unchanged, calls the
wrapped env's own `step` (so env-specific auto-reset code, e.g. DeepSea's cumulative metrics, still
runs) and only casts at the boundary: observations to float32 (int32 for the one tabular env,
FrozenLake), rewards to float32 (UmbrellaChain and BernoulliBandit return int32). In gymnax 1.0.1
MinAtar observations are already float32 {0,1} (older releases returned bool), so for most envs
the casts are no-ops and the compiled step is the raw env's, instruction for instruction
(`raw_vs_wrapped_step_fns` builds the two side by side for benchmarks).

Terminated vs truncated. gymnax 1.0.1's `Environment.step` already returns the two flags apart:
`terminated` is `step_env`'s done, which every built-in computes from the env's own terminal
condition (`is_terminated`: unlike the `is_terminal` of gymnax < 1.0 it does not contain the time
limit), and `truncated = state.time >= params.max_steps_in_episode`. The wrapper keeps those flags
(tests/envs/test_gymnax.py checks them against hand-derived terminal conditions) and overrides
them only where the env's own semantics disagree. Per env:

    env                              terminated (no bootstrap)            truncated (time limit)
    CartPole-v1                      |x| > 2.4 or |θ| > 12°               t >= 500
    Acrobot-v1                       -cos θ1 - cos(θ1 + θ2) > 1           t >= 500
    MountainCar-v0 / Continuous-v0   position >= goal (velocity >= goal)  t >= 200 / 999
    Pendulum-v1                      never                                t >= 200
    Asterix/Breakout/Seaquest/       game over (Seaquest: also oxygen,    t >= 1000 (a gymnax addition;
      SpaceInvaders-MinAtar            collisions)                          MinAtar itself has none)
    Freeway-MinAtar                  never (see caveat)                   t >= 2500
    Catch-bsuite                     ball reaches the bottom row (9 steps) t >= 1000 (never fires)
    DeepSea-bsuite                   bottom row (after `size` steps)      t >= size (same step)
    MemoryChain-bsuite               after memory_length + 1 steps        t >= 1000
    UmbrellaChain-bsuite             after chain_length steps             t >= 100
    DiscountingChain-bsuite          t >= 100, the horizon (override)     never (override)
    SimpleBandit / MNISTBandit       every step (one-step episodes)       -
    FourRooms / MetaMaze-misc        goal reached                         t >= 500 / 200
    FrozenLake-misc                  hole or goal                         t >= 100
    Pong-misc                        game over                            t >= 1000
    PointRobot/Reacher/Swimmer/      never                                t >= max_steps_in_episode
      Bernoulli/GaussianBandit-misc

Caveats:
  * Both flags can be True on one step (DeepSea always, any env that terminates exactly at the
    limit), as in this project's own envs: consumers give `terminated` precedence (lpg.returns).
  * Freeway: MinAtar ends the game after 2500 frames and calls it terminal; gymnax expresses that
    timer as `max_steps_in_episode`, so it arrives as truncated. The timer is not in the
    observation, so bootstrapping there is the time-unaware-correct treatment (Pardo et al. 2018,
    "Time limits in RL"); we keep it. Returns are unaffected, only learning targets.
  * DiscountingChain: bsuite terminates the episode at its fixed horizon of 100 steps and the
    observation carries t / horizon, so the horizon is a true terminal: the wrapper reports
    `terminated | truncated` as terminated and never truncates (`_QUIRKS`).
  * SimpleBandit: bsuite fixes the arm values for the environment's lifetime, but gymnax redraws
    them in `reset_env`, i.e. after every (one-step) episode, which makes the bandit unlearnable.
    The wrapper carries the `rewards` field across auto-resets, so arm values are
    drawn once by the first `reset` of a lifetime. Its rewards therefore differ from raw gymnax's
    after the first step, by design.
  * MNISTBandit downloads MNIST (to /tmp/mnist) when constructed, which is one reason tasks are
    registered lazily: nothing is built before `envs.make(name)`.
  * MemoryChain's `step_env` returns the observation of the state *before* the step (gymnax's
    dynamics, kept unchanged): the query bit shows up one step after bsuite shows it.

Tasks (`gymnax_task` builds them; `register_tasks` registers every id lazily):

    family (ids)                    agent                      lifetime steps       α_lr (Adam)
    MinAtar (5 games)               C(16)-D(128), Adam         10M                  (3e-4, 1e-3, 2.5e-3)
    classic control                 D(64, 64), Adam            CartPole, Acrobot    (3e-4, 1e-3, 2.5e-3)
                                                               500k; MountainCar,
                                                               Pendulum, MC-Cont 1M
    bsuite                          D(64, 64), Adam            100k; Discounting-   (3e-4, 1e-3, 2.5e-3)
                                                               Chain 1M
    misc, vector observations       D(64, 64), Adam            1M                   (3e-4, 1e-3, 2.5e-3)
    misc, image (Pong-misc)         C(16)-D(128), Adam         1M                   (3e-4, 1e-3, 2.5e-3)
    misc, tabular (FrozenLake)      table, SGD                 1M                   registry tabular grid

Why: C(16)-D(128) is the MinAtar paper's network (Young & Tian 2019: one 3x3 conv of 16 filters,
a 128-unit dense layer); 10M steps is twice that paper's 5M-frame training budget, leaving room
for a learned rule that starts slower. D(64, 64) is the usual PPO network for classic control; CartPole
and Acrobot are solved well within 500k steps by PPO/A2C, MountainCar and the continuous tasks
need more exploration, so 1M. bsuite's protocol runs 10k episodes: 9-10 steps per episode for
Catch, DeepSea (size 8), MemoryChain and UmbrellaChain (<= 100k steps; the two bandits get the
same 100k floor), 100 steps for DiscountingChain (1M). The misc envs have no reference budget.
Discounts are the registry's default set (0.997, 0.995, 0.99). `sample_params` returns the env's
default params; `gymnax_task(..., params_fn=...)` is the hook for per-lifetime randomisation
(e.g. CartPole's pole length; note that gymnax stores derived quantities such as `total_mass`
and `polemass_length` as separate fields, which a sampler must keep consistent).

Box action spaces (Pendulum, MountainCarContinuous, PointRobot, Reacher, Swimmer) are registered
with the same MLP spec; agents for continuous actions live in lpg/.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import gymnax
import jax
import jax.numpy as jnp
import numpy as np

from envs import base
from envs import registry
from envs.task import AgentSpec, Task

PREFIX = "gymnax/"

LEARNING_RATES = (3e-4, 1e-3, 2.5e-3)
MLP_AGENT = AgentSpec("mlp", hidden=(64, 64))
CONV_AGENT = AgentSpec("conv", conv_features=(16,), hidden=(128,))  # MinAtar paper's network

_DEFAULT_LIFETIME_STEPS = 1_000_000
_LIFETIME_STEPS = {
    "CartPole-v1": 500_000,
    "Acrobot-v1": 500_000,
    "MountainCar-v0": 1_000_000,
    "Pendulum-v1": 1_000_000,
    "MountainCarContinuous-v0": 1_000_000,
    "Asterix-MinAtar": 10_000_000,
    "Breakout-MinAtar": 10_000_000,
    "Freeway-MinAtar": 10_000_000,
    "Seaquest-MinAtar": 10_000_000,
    "SpaceInvaders-MinAtar": 10_000_000,
    "Catch-bsuite": 100_000,
    "DeepSea-bsuite": 100_000,
    "MemoryChain-bsuite": 100_000,
    "UmbrellaChain-bsuite": 100_000,
    "DiscountingChain-bsuite": 1_000_000,
    "SimpleBandit-bsuite": 100_000,
    "MNISTBandit-bsuite": 100_000,
}


@dataclasses.dataclass(frozen=True)
class _Quirks:
    """Where an env's gymnax flags or resets disagree with its reference semantics (docstring).

    horizon_is_terminal: the time limit is the task's fixed horizon, a true terminal.
    carried_fields: state fields that survive auto-resets (drawn once per lifetime by `reset`).
    """

    horizon_is_terminal: bool = False
    carried_fields: tuple[str, ...] = ()


_QUIRKS = {
    "DiscountingChain-bsuite": _Quirks(horizon_is_terminal=True),
    "SimpleBandit-bsuite": _Quirks(carried_fields=("rewards",)),
}


def env_id_of(name: str) -> str:
    """The gymnax id of a task name: "gymnax/CartPole-v1" -> "CartPole-v1" (bare ids pass)."""
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def _as_arrays(params):
    """Params with every leaf an array of canonical dtype (gymnax defaults are Python scalars),
    so a lifetime's params stack under vmap and pass through jit without weak types."""

    def leaf(x):
        x = x if isinstance(x, jax.Array) else np.asarray(x)
        return jnp.asarray(x, dtype=jax.dtypes.canonicalize_dtype(x.dtype))

    return jax.tree.map(leaf, params)


class GymnaxEnv(base.Environment):
    """A gymnax environment behind this project's interface (module docstring has the details).

    State and params are the wrapped env's own pytrees. Observations are float32 (int32 scalars
    for Discrete observation spaces, with `num_states`), rewards float32, flags bool[].

    Args:
      env_id: a gymnax id (`gymnax.registered_envs`).
      **env_kwargs: constructor arguments of the gymnax env (e.g. `size` for DeepSea).
    """

    def __init__(self, env_id: str, **env_kwargs):
        super().__init__()
        if env_id not in gymnax.registered_envs:
            known = ", ".join(gymnax.registered_envs)
            raise ValueError(f"unknown gymnax env {env_id!r}; gymnax ids: {known}")
        self.env_id = env_id
        self.unwrapped, _ = gymnax.make(env_id, **env_kwargs)
        quirks = _QUIRKS.get(env_id, _Quirks())
        self.horizon_is_terminal = quirks.horizon_is_terminal
        self.carried_fields = quirks.carried_fields
        space = self.unwrapped.observation_space(self.unwrapped.default_params)
        self._tabular = isinstance(space, base.Discrete)
        self._obs_dtype = jnp.int32 if self._tabular else jnp.float32

    def _cast_obs(self, obs: jax.Array) -> jax.Array:
        return jnp.asarray(obs).astype(self._obs_dtype)  # a no-op where gymnax already gives it

    # ------------------------------------------------------------------------------ dynamics

    def reset(self, key: jax.Array, params=None) -> tuple[jax.Array, Any]:
        obs, state = self.unwrapped.reset(key, params)
        return self._cast_obs(obs), state

    def step(self, key: jax.Array, state, action, params=None):
        """One step with auto-reset: (obs, state, reward, terminated, truncated, info), where
        `info["final_observation"]` is the last observation of an episode that just ended."""
        obs, next_state, reward, terminated, truncated, info = self.unwrapped.step(key, state, action, params)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool)
        if self.horizon_is_terminal:
            terminated, truncated = terminated | truncated, jnp.zeros_like(truncated)
        if self.carried_fields:
            next_state = next_state.replace(**{f: getattr(state, f) for f in self.carried_fields})
        # gymnax's "discount" duplicates `terminated` (and misses the horizon override): dropped.
        info = {k: v for k, v in info.items() if k != "discount"}
        info.update(
            final_observation=self._cast_obs(info["final_observation"]),
            terminated=terminated,
            truncated=truncated,
        )
        return self._cast_obs(obs), next_state, jnp.asarray(reward, jnp.float32), terminated, truncated, info

    def reset_env(self, key: jax.Array, params) -> tuple[jax.Array, Any]:
        obs, state = self.unwrapped.reset_env(key, params)
        return self._cast_obs(obs), state

    def step_env(self, key: jax.Array, state, action, params):
        """The transition without auto-reset (gymnax's `step_env`), with the same casts and flags."""
        obs, next_state, reward, terminated, info = self.unwrapped.step_env(key, state, action, params)
        terminated = jnp.asarray(terminated, bool)
        if self.horizon_is_terminal:
            terminated = terminated | self.unwrapped.is_truncated(next_state, params)
        info = {k: v for k, v in info.items() if k != "discount"}
        return self._cast_obs(obs), next_state, jnp.asarray(reward, jnp.float32), terminated, info

    def is_truncated(self, state, params) -> jax.Array:
        if self.horizon_is_terminal:
            return jnp.zeros((), bool)
        return self.unwrapped.is_truncated(state, params)

    def is_terminated(self, state, params) -> jax.Array:
        terminated = self.unwrapped.is_terminated(state, params)
        if self.horizon_is_terminal:
            terminated = terminated | self.unwrapped.is_truncated(state, params)
        return terminated

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        return self._cast_obs(self.unwrapped.get_obs(state, params=params, key=key))

    def sample_params(self, key: jax.Array):
        """Params of one lifetime: the env's default params (as arrays); `key` is unused."""
        del key
        return _as_arrays(self.unwrapped.default_params)

    # ------------------------------------------------------------------------------ interface

    @property
    def default_params(self):
        return self.unwrapped.default_params

    @property
    def name(self) -> str:
        return self.unwrapped.name

    @property
    def num_actions(self) -> int:
        return self.unwrapped.num_actions

    @property
    def num_states(self) -> int:
        """Number of tabular observations (Discrete observation spaces only, i.e. FrozenLake)."""
        if not self._tabular:
            raise AttributeError(f"{self.env_id} has array observations; num_states is for tabular ones")
        return int(self.unwrapped.observation_space(self.default_params).n)

    def action_space(self, params=None):
        return self.unwrapped.action_space(self.default_params if params is None else params)

    def observation_space(self, params=None):
        space = self.unwrapped.observation_space(self.default_params if params is None else params)
        if isinstance(space, base.Box):
            return base.Box(space.low, space.high, space.shape, jnp.float32)
        return space

    def state_space(self, params=None):
        return self.unwrapped.state_space(self.default_params if params is None else params)


# ---------------------------------------------------------------------------------- tasks


def default_agent(env: GymnaxEnv) -> AgentSpec:
    """C(16)-D(128) for image observations, a table for Discrete ones, D(64, 64) otherwise."""
    if isinstance(env.observation_space(), base.Discrete):
        return registry.TABULAR_AGENT
    if len(env.observation_space().shape) == 3:
        return CONV_AGENT
    return MLP_AGENT


def _sample_with(env: GymnaxEnv, params_fn, key: jax.Array):
    key_default, key_params = jax.random.split(key)
    return params_fn(key_params, env.sample_params(key_default))


def gymnax_task(
    env_id: str,
    *,
    name: str | None = None,
    env_kwargs: dict | None = None,
    params_fn: Callable[[jax.Array, Any], Any] | None = None,
    agent: AgentSpec | None = None,
    lifetime_steps: int | None = None,
    learning_rates: Sequence[float] | None = None,
    discounts: Sequence[float] = registry.DISCOUNTS,
) -> Task:
    """A task on the gymnax env `env_id` (module docstring: defaults by family and why).

    name: registry name, default "gymnax/<env_id>".
    env_kwargs: gymnax constructor arguments.
    params_fn: (key, default params) -> params of one lifetime, the per-lifetime randomisation
      hook; default: the env's default params.
    """
    env_id = env_id_of(env_id)
    env = GymnaxEnv(env_id, **(env_kwargs or {}))
    if agent is None:
        agent = default_agent(env)
    if learning_rates is None:
        learning_rates = registry.TABULAR_LEARNING_RATES if agent.kind == "tabular" else LEARNING_RATES
    if lifetime_steps is None:
        lifetime_steps = _LIFETIME_STEPS.get(env_id, _DEFAULT_LIFETIME_STEPS)
    sample_params = env.sample_params
    if params_fn is not None:
        sample_params = functools.partial(_sample_with, env, params_fn)
    return Task(
        name=PREFIX + env_id if name is None else name,
        env=env,
        sample_params=sample_params,
        lifetime_steps=lifetime_steps,
        agent=agent,
        learning_rates=tuple(learning_rates),
        discounts=tuple(discounts),
    )


# Pendulum family for learned-loss meta-training and held-out tests (EPG's "cheap continuous
# family" on this CPU): the pendulum's mass m and length l and gravity g, each log-uniform in
# [1/√2, √2] per lifetime. Swing-up stays possible everywhere: the max torque 2 beats the
# heaviest, longest pendulum's gravity torque m·g·l/2 ≈ 1.4·14·1.4/2 ≈ 14 only by swinging, as
# for the default (10/2 = 5), so the task keeps the default's character.
RANDOM_PENDULUM = "random_pendulum"
PENDULUM_SCALE_RANGE = (2 ** -0.5, 2 ** 0.5)


def _random_pendulum_params(key: jax.Array, params: Any) -> Any:
    log_low, log_high = np.log(PENDULUM_SCALE_RANGE)
    m, l, g = jnp.exp(jax.random.uniform(key, (3,), jnp.float32, log_low, log_high))
    return params.replace(m=params.m * m, l=params.l * l, g=params.g * g)


def register_tasks() -> None:
    """Registers "gymnax/<id>" for every id in `gymnax.registered_envs`, built on first `make`,
    and "gymnax/random_pendulum" (Pendulum-v1 with m, l, g randomised per lifetime)."""
    for env_id in gymnax.registered_envs:
        registry.register_lazy(PREFIX + env_id, functools.partial(gymnax_task, env_id))
    registry.register_lazy(PREFIX + RANDOM_PENDULUM, functools.partial(
        gymnax_task, "Pendulum-v1", name=PREFIX + RANDOM_PENDULUM, params_fn=_random_pendulum_params))


# ------------------------------------------------------------------------------ benchmark


def raw_vs_wrapped_step_fns(
    name: str, num_envs: int, num_steps: int = 1024
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """Jitted `rollout(key) -> float32[2]` (total reward, sum of every observation) for the raw
    gymnax env and for `GymnaxEnv`. The observation sum keeps the dynamics live: a reward that
    does not depend on them (1 per step) would let XLA delete the simulation being timed.

    Each resets `num_envs` envs, then runs `num_steps` batched steps (one `lax.scan`) with
    uniformly random actions from the action space; both use the env's default params and the
    same keys, so they compute the same rollout and differ only by the wrapper. Timing a scan
    rather than one step keeps dispatch overhead out of the comparison.

    Returns:
      (raw_rollout, wrapped_rollout).
    """
    wrapped = GymnaxEnv(env_id_of(name))
    raw = wrapped.unwrapped
    params = wrapped.sample_params(jax.random.key(0))
    action_space = raw.action_space(params)

    def make_rollout(env):
        batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

        def rollout(key):
            key_reset, key_run = jax.random.split(key)
            _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, num_envs), params)

            def one_step(carry, step_key):
                states, total = carry
                key_action, key_step = jax.random.split(step_key)
                actions = jax.vmap(action_space.sample)(jax.random.split(key_action, num_envs))
                step_keys = jax.random.split(key_step, num_envs)
                obs, states, reward, _, _, _ = batched_step(step_keys, states, actions, params)
                checksum = jnp.stack([reward.sum(), jnp.sum(obs.astype(jnp.float32))])
                return (states, total + checksum), None

            carry = (states, jnp.zeros((2,), jnp.float32))
            (_, total), _ = jax.lax.scan(one_step, carry, jax.random.split(key_run, num_steps))
            return total

        return jax.jit(rollout)

    return make_rollout(raw), make_rollout(wrapped)
