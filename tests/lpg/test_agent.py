"""Tests for lpg/agent.py: unroll time convention, learner step, clipping, meta-gradient path."""

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import base as env_base
from envs import task as task_lib
from lpg import agent as agent_lib
from lpg import networks
from lpg import training
from lpg import types
from lpg.rules import a2c

NUM_STATES = 6


@flax.struct.dataclass
class CountParams(env_base.EnvParams):
    length: int = 3
    max_steps_in_episode: int = 100


@flax.struct.dataclass
class CountState(env_base.EnvState):
    pos: jax.Array


class CountEnv(env_base.Environment):
    """Hand-checkable: the position counts 0, 1, ..., length−1 and the episode terminates.

    Reward 1 for action 1, 0.25 for action 0; action 2 exists but is masked out.
    Observation: the position (int32), or its one-hot vector when `one_hot`.
    """

    num_states = NUM_STATES

    def __init__(self, one_hot: bool = False):
        super().__init__()
        self.one_hot = one_hot

    @property
    def default_params(self):
        return CountParams()

    def _obs(self, pos):
        if self.one_hot:
            return jax.nn.one_hot(pos, NUM_STATES, dtype=jnp.float32)
        return jnp.asarray(pos, jnp.int32)

    def reset_env(self, key, params):
        state = CountState(time=0, pos=jnp.int32(0))
        return self._obs(state.pos), state

    def step_env(self, key, state, action, params):
        pos = state.pos + 1
        reward = jnp.where(action == 1, 1.0, 0.25)
        state = CountState(time=state.time + 1, pos=pos)
        return self._obs(pos), state, reward, pos >= params.length, {}

    def action_space(self, params):
        return env_base.Discrete(3)

    def action_mask(self, params):
        return jnp.array([True, True, False])


def make_hyper(learning_rate=1.0, discount=0.9):
    return types.HyperParams(
        learning_rate=jnp.float32(learning_rate), discount=jnp.float32(discount),
        entropy_cost=jnp.float32(0.01), value_cost=jnp.float32(0.5), td_lambda=jnp.float32(0.9),
    )


A2C_OUTPUTS = types.OutputSpec(value=True)
TABULAR = agent_lib.Agent(
    network=networks.make_network(task_lib.AgentSpec(kind="tabular", optimiser="sgd"), 3, NUM_STATES, A2C_OUTPUTS),
    optimiser="sgd",
)
MLP = agent_lib.Agent(
    network=networks.make_network(task_lib.AgentSpec(kind="mlp", hidden=(8,)), 3, None, A2C_OUTPUTS, obs_shape=(NUM_STATES,)),
    optimiser="adam",
)


class ScaledA2C(a2c.A2C):
    """A2C with π̂ = scale · A + shift: a minimal rule with meta-parameters.

    Adam's first steps are nearly invariant to a common scale of the gradient, so Adam agents
    get their meta-gradient signal from `shift` (SGD agents from both).
    """

    def init_params(self, key):
        return {"scale": jnp.float32(1.0), "shift": jnp.float32(0.1)}

    def targets(self, meta_params, state, rollout, agent_out, next_out, hyper):
        out = super().targets(meta_params, state, rollout, agent_out, next_out, hyper)
        return out.replace(pi_hat=meta_params["scale"] * out.pi_hat + meta_params["shift"])


def _setup(agent, one_hot, params=CountParams(), num_envs=2, seed=0):
    env = CountEnv(one_hot=one_hot)
    key_carry, key_init = jax.random.split(jax.random.key(seed))
    carry = agent_lib.init_env_carry(env, params, key_carry, num_envs)
    state = agent_lib.init_agent_state(agent, key_init, jax.tree.map(lambda x: x[0], carry.obs), None)
    return env, carry, state


@functools.partial(jax.jit, static_argnames=("agent", "env", "num_steps"))
def _unroll(agent, params, env, env_params, carry, key, num_steps):
    return agent_lib.unroll(agent, params, env, env_params, carry, key, num_steps)


@functools.partial(jax.jit, static_argnames=("rule", "agent", "env", "num_steps"))
def _learner_step(rule, agent, meta_params, state, carry, env, env_params, hyper, key, num_steps):
    return agent_lib.learner_step(rule, agent, meta_params, state, carry, env, env_params, hyper, key, num_steps)


def test_unroll_time_convention_terminal():
    env, carry, state = _setup(TABULAR, one_hot=False)
    num_steps = 7
    rollout, new_carry = _unroll(TABULAR, state.params, env, CountParams(), carry, jax.random.key(1), num_steps)
    assert rollout.observations.shape == (num_steps + 1, 2)
    for field in ("actions", "rewards", "terminated", "truncated", "episode_returns"):
        assert getattr(rollout, field).shape == (num_steps, 2), field
    assert rollout.actions.dtype == jnp.int32 and rollout.rewards.dtype == jnp.float32
    assert rollout.action_mask.shape == (2, 3)
    # Positions 0,1,2 then auto-reset: observations[t+1] is the observation after action a_t,
    # already the next episode's first one when step t ended an episode.
    expected_obs = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(rollout.observations, np.stack([expected_obs] * 2, axis=1))
    np.testing.assert_array_equal(new_carry.obs, rollout.observations[-1])
    # next_observations: the true s_{t+1}: the terminal position 3 where the episode ended.
    expected_next = np.array([1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(rollout.next_observations, np.stack([expected_next] * 2, axis=1))
    terminal = np.array([0, 0, 1, 0, 0, 1, 0], bool)
    np.testing.assert_array_equal(rollout.terminated, np.stack([terminal] * 2, axis=1))
    assert not np.any(rollout.truncated)
    # The masked action never occurs; rewards match actions.
    actions = np.asarray(rollout.actions)
    assert set(np.unique(actions)) <= {0, 1} and len(np.unique(actions)) == 2
    np.testing.assert_allclose(rollout.rewards, np.where(actions == 1, 1.0, 0.25))
    # Episode returns: the undiscounted sum of the episode's rewards, only where it ended.
    rewards = np.asarray(rollout.rewards)
    expected_returns = np.zeros_like(rewards)
    expected_returns[2] = rewards[0:3].sum(0)
    expected_returns[5] = rewards[3:6].sum(0)
    np.testing.assert_allclose(rollout.episode_returns, expected_returns, rtol=1e-6)
    np.testing.assert_allclose(new_carry.episode_return, rewards[6], rtol=1e-6)  # one step into episode 3


def test_unroll_time_convention_truncation():
    env_params = CountParams(length=3, max_steps_in_episode=2)
    env, carry, state = _setup(TABULAR, one_hot=False, params=env_params)
    rollout, _ = _unroll(TABULAR, state.params, env, env_params, carry, jax.random.key(2), 5)
    np.testing.assert_array_equal(rollout.observations[:, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(rollout.truncated[:, 0], [False, True, False, True, False])
    # After the time limit the true successor is position 2 (what bootstrapping must use), while
    # observations[t+1] is already the next episode's 0.
    np.testing.assert_array_equal(rollout.next_observations[:, 0], [1, 2, 1, 2, 1])
    assert not np.any(rollout.terminated)
    rewards = np.asarray(rollout.rewards)
    np.testing.assert_allclose(rollout.episode_returns[1], rewards[0] + rewards[1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(rollout.episode_returns)[[0, 2, 4]], 0.0)


def test_unroll_same_key_same_rollout():
    env, carry, state = _setup(TABULAR, one_hot=False)
    first, _ = _unroll(TABULAR, state.params, env, CountParams(), carry, jax.random.key(3), 7)
    second, _ = _unroll(TABULAR, state.params, env, CountParams(), carry, jax.random.key(3), 7)
    np.testing.assert_array_equal(first.actions, second.actions)


@pytest.mark.parametrize("agent, one_hot", [(TABULAR, False), (MLP, True)], ids=["tabular_sgd", "mlp_adam"])
def test_learner_step_changes_params(agent, one_hot):
    env, carry, state = _setup(agent, one_hot)
    rule = a2c.A2C()
    new_state, new_carry, stats = _learner_step(
        rule, agent, {}, state, carry, env, CountParams(), make_hyper(1e-2 if one_hot else 1.0), jax.random.key(4), 6
    )
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), state.params, new_state.params)
    flat = {jax.tree_util.keystr(path): value for path, value in jax.tree_util.tree_leaves_with_path(changed)}
    for path, value in flat.items():
        # A2C has no y loss: the y head must stay put and everything else must move.
        assert value == ("'y'" not in path), path
    # 2 envs × 6 steps with episodes of 3 steps: 4 completed episodes.
    assert float(stats["return_count"]) == 4.0
    assert 0.75 <= float(stats["return_sum"]) / 4 <= 3.0
    assert 0 < float(stats["entropy"]) <= np.log(2) + 1e-5  # 2 valid actions
    for name in ("loss", "policy_loss", "value_loss", "grad_norm"):
        assert np.isfinite(float(stats[name])), name
    assert new_carry.obs.shape == carry.obs.shape


def test_learner_step_learns_count_env():
    env, carry, state = _setup(TABULAR, one_hot=False, num_envs=8)
    rule, hyper = a2c.A2C(), make_hyper(20.0)
    key = jax.random.key(5)
    for _ in range(30):
        key, step_key = jax.random.split(key)
        state, carry, stats = _learner_step(rule, TABULAR, {}, state, carry, env, CountParams(), hyper, step_key, 6)
    probs = jax.nn.softmax(TABULAR.apply(state.params, jnp.arange(3), jnp.array([True, True, False])).logits)
    assert np.all(probs[:, 1] > 0.9), probs  # action 1 (reward 1) over action 0 (reward 0.25)
    assert float(stats["return_sum"]) / float(stats["return_count"]) > 2.7


def _random_grads(params, scale):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def test_gradient_clipping_sgd():
    agent = dataclass_replace(TABULAR, grad_clip=0.5)
    state = agent_lib.init_agent_state(agent, jax.random.key(0), jnp.int32(0), None)
    grads = _random_grads(state.params, 10.0)
    new = agent_lib.apply_gradients(agent, state, grads, jnp.float32(2.0))
    delta = jax.tree.map(lambda a, b: a - b, new.params, state.params)
    np.testing.assert_allclose(agent_lib.global_norm(delta), 2.0 * 0.5, rtol=1e-5)
    # Direction preserved: delta ∝ −grads.
    cosine = sum(jnp.vdot(d, -g) for d, g in zip(jax.tree.leaves(delta), jax.tree.leaves(grads)))
    np.testing.assert_allclose(cosine / (agent_lib.global_norm(delta) * agent_lib.global_norm(grads)), 1.0, rtol=1e-5)
    # A small gradient is untouched.
    small = _random_grads(state.params, 1e-3)
    new_small = agent_lib.apply_gradients(agent, state, small, jnp.float32(2.0))
    np.testing.assert_allclose(new_small.params["params"]["value"], -2.0 * small["params"]["value"], rtol=1e-5)


def test_gradient_clipping_adam():
    # Adam is invariant to the gradient scale on its first step, so use two steps: clipping the
    # big first gradient changes the moments and hence the second step.
    clipped = dataclass_replace(MLP, grad_clip=1.0)
    state = agent_lib.init_agent_state(MLP, jax.random.key(0), jnp.zeros((NUM_STATES,)), None)
    big, small = _random_grads(state.params, 10.0), _random_grads(state.params, 1e-2)
    lr = jnp.float32(1e-2)

    @functools.partial(jax.jit, static_argnums=0)
    def two_steps(agent, first, second):
        s = agent_lib.apply_gradients(agent, state, first, lr)
        return agent_lib.apply_gradients(agent, s, second, lr).params

    with_clip = two_steps(clipped, big, small)
    manual_clip = two_steps(MLP, agent_lib.clip_by_global_norm(big, 1.0), small)
    no_clip = two_steps(MLP, big, small)
    for a, b in zip(jax.tree.leaves(with_clip), jax.tree.leaves(manual_clip)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    leaves = zip(jax.tree.leaves(with_clip), jax.tree.leaves(no_clip))
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in leaves)
    assert difference > 1e-4


def dataclass_replace(agent, **changes):
    return dataclasses.replace(agent, **changes)


def _meta_grad(agent, one_hot, learning_rate, num_steps=6, num_updates=2):
    """d(projection of θ after `num_updates` learner steps)/d(meta_params) for ScaledA2C."""
    env, carry, state = _setup(agent, one_hot)
    rule = ScaledA2C()
    hyper = make_hyper(learning_rate)
    projection = _random_grads(state.params, 1.0)

    def objective(meta_params):
        s, c = state, carry
        for i in range(num_updates):
            s, c, _ = agent_lib.learner_step(
                rule, agent, meta_params, s, c, env, CountParams(), hyper, jax.random.key(10 + i), num_steps
            )
        return sum(jnp.vdot(p, w) for p, w in zip(jax.tree.leaves(s.params), jax.tree.leaves(projection)))

    return jax.jit(jax.grad(objective))(rule.init_params(None))


def test_meta_gradient_through_learner_step_sgd():
    grads = _meta_grad(TABULAR, False, 1.0)
    assert all(np.isfinite(float(g)) for g in grads.values()), grads
    assert abs(float(grads["scale"])) > 1e-5 and abs(float(grads["shift"])) > 1e-5, grads


def test_meta_gradient_through_adam_with_unvisited_states():
    # One-hot inputs of states 3..5 are never active, so those first-layer weights have exactly
    # zero gradient and Adam's second moment stays 0 there.
    grads = _meta_grad(MLP, True, 1e-2)
    assert all(np.isfinite(float(g)) for g in grads.values()), grads
    assert abs(float(grads["shift"])) > 1e-5, grads
    # Control (the SPEC §5 pitfall): without eps_root the same meta-gradient is NaN (0 · ∞).
    no_eps_root = dataclass_replace(MLP, adam_eps_root=0.0)
    assert np.isnan(float(_meta_grad(no_eps_root, True, 1e-2)["shift"]))


def test_learner_step_is_unroll_then_agent_update():
    env, carry, state = _setup(TABULAR, one_hot=False)
    rule, hyper, key = a2c.A2C(), make_hyper(1.0), jax.random.key(8)
    stepped, _, stats = _learner_step(rule, TABULAR, {}, state, carry, env, CountParams(), hyper, key, 6)
    rollout, _ = _unroll(TABULAR, state.params, env, CountParams(), carry, key, 6)
    updated, targets, update_stats = jax.jit(agent_lib.agent_update, static_argnums=(0, 1))(
        rule, TABULAR, {}, state, rollout, hyper
    )
    assert targets.pi_hat.shape == (6, 2) and targets.value_target.shape == (6, 2)
    for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(updated)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(stats["loss"], update_stats["loss"], rtol=1e-6)


def test_policy_returns_on_other_env_params():
    """A fixed θ evaluated (no learning) under two CartPole params: with a 5-step time limit every
    episode is cut at exactly 5 (no pole falls that fast), under the default params they differ."""
    import envs  # pylint: disable=g-import-not-at-top

    task = envs.make("gymnax/CartPole-v1")
    agent = training.build_agent(task, a2c.A2C().output_spec)
    default = task.sample_params(jax.random.key(0))
    params = agent_lib.init_agent_state(agent, jax.random.key(1), jnp.zeros(4), None).params
    evaluate = jax.jit(functools.partial(agent_lib.policy_returns, agent, env=task.env,
                                         num_envs=4, num_steps=60))
    mean, count = evaluate(params, env_params=default.replace(max_steps_in_episode=5), key=jax.random.key(2))
    assert float(mean) == 5.0 and float(count) == 4 * 60 / 5
    mean_default, count_default = evaluate(params, env_params=default, key=jax.random.key(2))
    assert 0 < float(count_default) < 48 and float(mean_default) > 5.0


def test_a_policy_is_evaluated_on_other_bodies_of_a_brax_family():
    """One θ, the same keys, three hoppers of brax/random_hopper (positional; 100-step episodes):
    evaluating on another body needs nothing but its params, and the bodies behave differently."""
    import envs  # pylint: disable=g-import-not-at-top

    task = envs.make("brax/random_hopper-positional")
    agent = training.build_agent(task, a2c.A2C().output_spec)
    obs, _ = task.env.reset(jax.random.key(0), task.env.default_params)
    params = agent_lib.init_agent_state(agent, jax.random.key(1), obs, None).params
    evaluate = jax.jit(functools.partial(agent_lib.policy_returns, agent, env=task.env,
                                         num_envs=2, num_steps=120),
                       compiler_options={"xla_backend_optimization_level": 0})  # compiles ~3× faster
    bodies = [task.sample_params(jax.random.key(k)).replace(max_steps_in_episode=jnp.int32(100))
              for k in (2, 3, 4)]
    results = [evaluate(params, env_params=body, key=jax.random.key(5)) for body in bodies]
    means = [float(mean) for mean, _ in results]
    assert all(float(count) >= 2 for _, count in results) and np.all(np.isfinite(means))
    assert len(set(means)) == 3, means
