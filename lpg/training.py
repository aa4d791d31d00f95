"""Training a population of agents with a fixed update rule (LPG Algorithm 1's inner loop).

Each lifetime samples an environment E ~ p(E) (`task.sample_params`), fresh parameters θ0 and
takes `num_updates` agent updates (`agent.learner_step`), each on num_envs × unroll_length
environment steps. Lifetimes are independent: a vmap (or a sequential map over chunks) over the
lifetime axis, a `lax.scan` over updates. With a frozen rule (A2C, or LPG at meta-test time) this
is the whole experiment; meta-training reuses `init_lifetime` and `learner_step`.

Randomness either comes from one batch key (lifetime l gets the l-th split: fine for a single
run) or from per-lifetime keys (`init_lifetimes_from_keys`, `continue_training(keys=...)`): then
a lifetime depends only on its own key, so seed i of two rules or two hyperparameter settings,
trained in different batches, sees the same E, θ0, resets and per-update keys (`lpg.evaluation`).

Nothing here resets lifetimes at zero entropy or feeds the bandit: that belongs to `lpg.meta`.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp

from envs import task as task_lib
from lpg import agent as agent_lib
from lpg import distributions
from lpg import networks
from lpg import types
from lpg.rules import base as rules_base


@flax.struct.dataclass
class LifetimeState:
    """Everything one lifetime carries between updates (leading [L] when batched)."""

    agent: agent_lib.AgentState
    carry: agent_lib.EnvCarry
    env_params: Any


def _env_dimensions(
    task: task_lib.Task,
) -> tuple[distributions.DistributionSpec, int | None, tuple[int, ...]]:
    """(policy spec, num_states or None, unbatched observation shape) of a task's environment.

    The policy spec comes from the action space: Discrete(A) → A logits; Box → a Gaussian or
    tanh-Gaussian (`task.agent.continuous_policy`) with the bounds of the first lifetime's
    parameters (key 0; per-lifetime physics randomisation keeps the action space fixed).
    Works on abstract environment parameters (jax.eval_shape, no computation): sampling concrete
    parameters op by op cost ~1.4 s per task of start-up time. An environment whose action space
    or `num_states(params)` needs concrete values gets them from one jitted sample instead.
    """
    env = task.env
    key = jax.random.key(0)
    params = jax.eval_shape(task.sample_params, key)
    try:
        policy_spec, num_states = _policy_and_state_counts(task, params)
    except (jax.errors.ConcretizationTypeError, TypeError, ValueError):
        with jax.ensure_compile_time_eval():  # Python values even under an outer jit trace
            params = jax.jit(task.sample_params)(key)
            policy_spec, num_states = _policy_and_state_counts(task, params)
    obs = jax.eval_shape(lambda k, p: env.reset(k, p)[0], key, params)
    return policy_spec, num_states, tuple(obs.shape)


def _policy_and_state_counts(task, params) -> tuple[distributions.DistributionSpec, int | None]:
    squash = task.agent.continuous_policy == "tanh_gaussian"
    policy_spec = distributions.DistributionSpec.from_space(task.env.action_space(params), squash=squash)
    num_states = getattr(task.env, "num_states", None)
    if callable(num_states):  # envs.base allows `num_states(params)` as a method
        num_states = num_states(params)
    return policy_spec, None if num_states is None else int(num_states)


def build_agent(
    task: task_lib.Task, outputs: types.OutputSpec, grad_clip: float | None = None
) -> agent_lib.Agent:
    """The agent a task prescribes (SPEC Table 3): network from `task.agent`, its optimiser.

    outputs: the heads besides the policy, i.e. the training rule's `output_spec`.
    """
    policy_spec, num_states, obs_shape = _env_dimensions(task)
    network = networks.make_network(
        task.agent, policy_spec.num_outputs, num_states, outputs, obs_shape=obs_shape)
    # Discrete policies keep policy_spec=None: the categorical default, so agents of discrete
    # tasks compare equal (and hash) as before continuous actions existed.
    if policy_spec.kind == distributions.CATEGORICAL:
        policy_spec = None
    return agent_lib.Agent(network=network, policy_spec=policy_spec,
                           optimiser=task.agent.optimiser, grad_clip=grad_clip)


def init_lifetime(
    task: task_lib.Task, agent: agent_lib.Agent, key: jax.Array, num_envs: int, *,
    rule: rules_base.UpdateRule,
) -> LifetimeState:
    """A fresh lifetime: E ~ p(E), θ0, the rule's state and `num_envs` reset environments
    (unbatched over L)."""
    env_key, theta_key, carry_key = jax.random.split(key, 3)
    env_params = task.sample_params(env_key)
    carry = agent_lib.init_env_carry(task.env, env_params, carry_key, num_envs)
    obs_example = jax.tree.map(lambda x: x[0], carry.obs)
    agent_state = agent_lib.init_agent_state(agent, theta_key, obs_example, rule)
    return LifetimeState(agent=agent_state, carry=carry, env_params=env_params)


def _broadcast_hyper(hyper: types.HyperParams, num_lifetimes: int) -> types.HyperParams:
    """Gives every HyperParams leaf a leading [L] axis (scalars are shared by all lifetimes)."""

    def broadcast(x):
        x = jnp.asarray(x, jnp.float32)
        if x.ndim == 0:
            return jnp.broadcast_to(x, (num_lifetimes,))
        if x.shape != (num_lifetimes,):
            raise ValueError(f"HyperParams leaves must be scalars or [{num_lifetimes}], got {x.shape}")
        return x

    return jax.tree.map(broadcast, hyper)


def train_agents(
    task: task_lib.Task,
    rule: rules_base.UpdateRule,
    meta_params: Any,
    hyper: types.HyperParams,
    *,
    key: jax.Array,
    num_lifetimes: int,
    num_updates: int,
    num_envs: int,
    unroll_length: int,
    grad_clip: float | None = None,
    lifetimes_per_chunk: int | None = None,
) -> tuple[LifetimeState, dict[str, jax.Array]]:
    """Trains `num_lifetimes` independent agents on `task` with `rule` (pure; the caller jits).

    Args:
      task: the task (environment, p(E), agent spec).
      rule: the update rule; `meta_params` its parameters, shared by all lifetimes.
      hyper: HyperParams with scalar leaves (shared) or leaves of shape [L] (per lifetime).
      key: PRNG key.
      num_lifetimes: L; num_updates: U; num_envs: B; unroll_length: T (all static).
      grad_clip: optional max global gradient norm (default: the rule's `agent_grad_clip`).
      lifetimes_per_chunk: None vmaps all L lifetimes at once; n runs them as a sequential map
        over chunks of n (`lax.map(batch_size=n)`); on a small CPU that can be faster (SPEC §5).
    Returns:
      (final LifetimeState with leading [L], stats): each stat has shape [L, U]; return_sum and
      return_count cover the episodes completed during each update's unroll.
    """
    agent = build_agent(task, rule.output_spec,
                        grad_clip=rule.agent_grad_clip if grad_clip is None else grad_clip)
    init_key, train_key = jax.random.split(key)
    states = init_lifetimes(task, agent, init_key, num_lifetimes, num_envs, rule=rule)
    return continue_training(
        task, rule, agent, meta_params, hyper, states, key=train_key, num_updates=num_updates,
        unroll_length=unroll_length, lifetimes_per_chunk=lifetimes_per_chunk)


def init_lifetimes(
    task: task_lib.Task, agent: agent_lib.Agent, key: jax.Array, num_lifetimes: int, num_envs: int,
    *, rule: rules_base.UpdateRule,
) -> LifetimeState:
    """`num_lifetimes` fresh lifetimes (leading [L] axis), each with its own E, θ0 and envs.

    Lifetime l's randomness comes from `split(key, num_lifetimes)[l]`, i.e. from its position in
    the batch; use `init_lifetimes_from_keys` when lifetimes must be reproducible one by one.
    """
    return init_lifetimes_from_keys(task, agent, jax.random.split(key, num_lifetimes), num_envs, rule=rule)


def init_lifetimes_from_keys(
    task: task_lib.Task, agent: agent_lib.Agent, keys: jax.Array, num_envs: int, *,
    rule: rules_base.UpdateRule,
) -> LifetimeState:
    """One fresh lifetime per key: `init_lifetime(keys[l])` for each l (leading [L] axis).

    Lifetime l depends only on `keys[l]` (its E, θ0 and environment resets), never on the other
    keys or on L, so the same key always gives the same lifetime, in any batch.

    Args:
      keys: [L] PRNG keys.
    """
    if keys.ndim != 1:
        raise ValueError(f"keys must have shape [L], got {keys.shape}")
    return jax.vmap(lambda k: init_lifetime(task, agent, k, num_envs, rule=rule))(keys)


def update_keys(keys: jax.Array, first_update: int | jax.Array, num_updates: int) -> jax.Array:
    """Per-update keys of L lifetimes: out[l, u] = fold_in(keys[l], first_update + u).

    The key of a lifetime's update depends only on that lifetime's key and the update's index in
    the lifetime, so the same lifetime trained in chunks of any size, alone or in any batch,
    sees the same keys.

    Args:
      keys: [L] per-lifetime keys.
      first_update: index (in the lifetime) of the first of these updates (may be traced).
      num_updates: U (static).
    Returns:
      [L, U] keys.
    """
    indices = jnp.asarray(first_update, jnp.uint32) + jnp.arange(num_updates, dtype=jnp.uint32)
    return jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(indices))(keys)


def continue_training(
    task: task_lib.Task,
    rule: rules_base.UpdateRule,
    agent: agent_lib.Agent,
    meta_params: Any,
    hyper: types.HyperParams,
    states: LifetimeState,
    *,
    key: jax.Array | None = None,
    keys: jax.Array | None = None,
    first_update: int | jax.Array = 0,
    num_updates: int,
    unroll_length: int,
    lifetimes_per_chunk: int | None = None,
    active_updates: int | jax.Array | None = None,
) -> tuple[LifetimeState, dict[str, jax.Array]]:
    """`num_updates` more learner steps for every lifetime in `states` ([L]); see `train_agents`.

    Lets a host loop train in chunks (progress bars, checkpoints) with one compilation.

    Randomness, exactly one of:
      key: one key for the whole batch, split over the L lifetimes and the U updates (lifetime
        l's keys depend on its position in the batch and on the chunking).
      keys: [L] per-lifetime keys; update u of this call uses
        `fold_in(keys[l], first_update + u)` (`update_keys`), so a lifetime's result depends only
        on its own key and state, whatever the batch and the chunk sizes.
    first_update: lifetime index of this call's first update (only with `keys`; may be traced).
    active_updates: if given (may be traced), only the first `active_updates` of the
      `num_updates` updates run; the rest leave the state unchanged and report zero stats. Lets
      the last, shorter chunk of a host loop reuse the compiled full-length chunk.
    """
    if (key is None) == (keys is None):
        raise ValueError("give exactly one of key (one batch key) or keys ([L] per-lifetime keys)")
    if key is not None and not (isinstance(first_update, int) and first_update == 0):
        raise ValueError("first_update needs per-lifetime keys (keys=...), not one batch key")
    rules_base.check_hyper(rule, hyper)
    num_lifetimes = jax.tree.leaves(states.carry.episode_return)[0].shape[0]
    hyper = _broadcast_hyper(hyper, num_lifetimes)
    if keys is not None:
        if keys.shape != (num_lifetimes,):
            raise ValueError(f"keys must have shape [{num_lifetimes}] (one per lifetime), got {keys.shape}")
        per_update_keys = update_keys(keys, first_update, num_updates)  # [L, U]
    else:
        per_update_keys = jax.vmap(lambda k: jax.random.split(k, num_updates))(
            jax.random.split(key, num_lifetimes))

    def run_lifetime(args):
        state, lifetime_update_keys, lifetime_hyper = args

        def learn(state: LifetimeState, update_key):
            agent_state, carry, stats = agent_lib.learner_step(
                rule, agent, meta_params, state.agent, state.carry, task.env, state.env_params,
                lifetime_hyper, update_key, unroll_length,
            )
            return state.replace(agent=agent_state, carry=carry), stats

        if active_updates is None:
            return jax.lax.scan(learn, state, lifetime_update_keys)

        def maybe_learn(state: LifetimeState, inputs):
            index, update_key = inputs

            def skip(state, update_key):
                stats_shape = jax.eval_shape(learn, state, update_key)[1]
                return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stats_shape)

            # An unbatched predicate: a real branch even under the lifetime vmap.
            return jax.lax.cond(index < active_updates, learn, skip, state, update_key)

        return jax.lax.scan(maybe_learn, state, (jnp.arange(num_updates), lifetime_update_keys))

    inputs = (states, per_update_keys, hyper)
    if lifetimes_per_chunk is None:
        return jax.vmap(run_lifetime)(inputs)
    return jax.lax.map(run_lifetime, inputs, batch_size=lifetimes_per_chunk)


def make_train_fn(
    task: task_lib.Task,
    rule: rules_base.UpdateRule,
    *,
    num_lifetimes: int,
    num_updates: int,
    num_envs: int,
    unroll_length: int,
    grad_clip: float | None = None,
    lifetimes_per_chunk: int | None = None,
) -> Callable[[jax.Array, types.HyperParams, Any], tuple[LifetimeState, dict[str, jax.Array]]]:
    """Returns jitted `train(key, hyper, meta_params) -> (states, stats)` (see `train_agents`).

    Static configuration is bound once, so repeated calls with same-shaped inputs (e.g. other
    seeds, learning rates or meta-parameters) reuse one compilation.
    """

    def train(key: jax.Array, hyper: types.HyperParams, meta_params: Any):
        return train_agents(
            task, rule, meta_params, hyper, key=key, num_lifetimes=num_lifetimes,
            num_updates=num_updates, num_envs=num_envs, unroll_length=unroll_length,
            grad_clip=grad_clip, lifetimes_per_chunk=lifetimes_per_chunk,
        )

    return jax.jit(train)


def mean_episode_return(stats: dict[str, jax.Array], window: int = 1) -> jax.Array:
    """Per-update curve of the mean return of completed episodes, nan-safe.

    The value at update u is Σ return_sum / Σ return_count over updates (u − window, u]; when no
    episode completed in that window, the last defined value is carried forward, and it is NaN
    before the first completed episode. Long episodes (500+ steps vs. T = 20) finish in few
    updates, hence the window and the carry-forward.

    Args:
      stats: dict with "return_sum" and "return_count" of shape [..., U] (e.g. [L, U]).
      window: number of updates pooled per point (static, ≥ 1).
    Returns:
      [..., U] curve per lifetime (average lifetimes with jnp.nanmean afterwards).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    sums = jnp.asarray(stats["return_sum"], jnp.float32)
    counts = jnp.asarray(stats["return_count"], jnp.float32)

    def windowed(x):
        total = jnp.cumsum(x, axis=-1)
        shifted = jnp.pad(total, [(0, 0)] * (x.ndim - 1) + [(window, 0)])[..., : x.shape[-1]]
        return total - shifted

    sums, counts = windowed(sums), windowed(counts)
    ratio = sums / jnp.maximum(counts, 1.0)
    steps = jnp.broadcast_to(jnp.arange(counts.shape[-1]), counts.shape)
    last_defined = jax.lax.cummax(jnp.where(counts > 0, steps, -1), axis=counts.ndim - 1)
    carried = jnp.take_along_axis(ratio, jnp.maximum(last_defined, 0), axis=-1)
    return jnp.where(last_defined >= 0, carried, jnp.nan)
