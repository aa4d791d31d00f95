"""The gymnax adapter (envs/wrappers/gymnax.py): registry, conformance and fidelity to raw gymnax.

Conformance runs one short jitted rollout per representative task on NUM_ENVS envs with
different time limits (the default, and two short ones so truncation and auto-reset show up).
Every step also replays the raw gymnax env on the same key, state and action, one half of gymnax's
auto-reset at a time (`step_env` on the transition key, `reset_env` on the reset key), so the
wrapper's rewards, flags, final observations and resets are checked against the raw env's own
dynamics rather than against themselves. (Replaying the raw `step` as well doubled compile time;
`raw_vs_wrapped_step_fns` compares whole raw and wrapped rollouts.)
"""

import functools

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import base
from envs import registry
from envs.task import AgentSpec, Task
from envs.wrappers import gymnax as gymnax_wrapper
from tests.envs import transitions

REPRESENTATIVE = [
    "gymnax/CartPole-v1",
    "gymnax/Acrobot-v1",
    "gymnax/Pendulum-v1",
    "gymnax/Catch-bsuite",
    "gymnax/Breakout-MinAtar",
    "gymnax/Asterix-MinAtar",
    "gymnax/Freeway-MinAtar",
    "gymnax/SpaceInvaders-MinAtar",
]
NUM_ENVS = 3
NUM_STEPS = 30
SHORT_LIMITS = (3, 7)  # time limits of envs 1 and 2; env 0 keeps the env's default
EAGER_ENV = 1  # the op-by-op rollout runs this env for NUM_EAGER_STEPS steps, past one auto-reset
NUM_EAGER_STEPS = 4
# Op-by-op rollouts cost seconds per MinAtar game; one env per family and action space suffices
# for the wrapper's own code (the batched rollout already runs every representative under jit+vmap).
EAGER = ["gymnax/CartPole-v1", "gymnax/Pendulum-v1", "gymnax/Catch-bsuite", "gymnax/Breakout-MinAtar"]
CARTPOLE_THETA_LIMIT = 12 * 2 * np.pi / 360


# ----------------------------------------------------------------------------- registry


def test_every_gymnax_env_is_listed_after_the_builtins():
    names = envs.names()
    assert not any(n.startswith("gymnax/") for n in names[:15])  # the paper's builtins stay first
    gymnax_names = [n for n in names if n.startswith("gymnax/")]
    assert gymnax_names == [f"gymnax/{env_id}" for env_id in gymnax.registered_envs] + ["gymnax/random_pendulum"]
    assert len(gymnax_names) >= 27


def test_random_pendulum_draws_mass_length_and_gravity_per_lifetime():
    task = envs.make("gymnax/random_pendulum")
    default = envs.make("gymnax/Pendulum-v1").sample_params(jax.random.key(0))
    params = jax.vmap(task.sample_params)(jax.random.split(jax.random.key(0), 256))
    low, high = gymnax_wrapper.PENDULUM_SCALE_RANGE
    for field in ("m", "l", "g"):
        scale = np.asarray(getattr(params, field)) / getattr(default, field)
        assert np.all((scale >= low - 1e-6) & (scale <= high + 1e-6)), field
        assert np.ptp(np.log(scale)) > 0.5 * np.log(high / low), field  # spread over the range
    assert np.asarray(params.max_torque).std() == 0  # the rest is the default
    # Different bodies swing differently under the same torques.
    step = jax.vmap(lambda key, p: task.env.step(key, task.env.reset(key, p)[1], jnp.ones(1), p)[0])
    same_key = jnp.stack([jax.random.key(1)] * 2)
    obs = step(same_key, jax.tree.map(lambda x: x[:2], params))
    assert not np.allclose(obs[0], obs[1])


def test_registration_is_lazy_and_make_builds_once():
    # Building MNISTBandit would download MNIST: listing it must not build it.
    assert not isinstance(registry._REGISTRY["gymnax/MNISTBandit-bsuite"], Task)
    task = envs.make("gymnax/CartPole-v1")
    assert isinstance(task, Task) and task.name == "gymnax/CartPole-v1"
    assert envs.make("gymnax/CartPole-v1") is task
    assert isinstance(task.env, gymnax_wrapper.GymnaxEnv) and task.env.env_id == "CartPole-v1"


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_register_lazy_validates(scratch_registry):
    calls = []

    def build():
        calls.append(1)
        return gymnax_wrapper.gymnax_task("Catch-bsuite", name="my/catch", lifetime_steps=7)

    envs.register_lazy("my/catch", build)
    assert "my/catch" in envs.names() and not calls
    assert envs.make("my/catch").lifetime_steps == 7
    envs.make("my/catch")
    assert len(calls) == 1
    with pytest.raises(ValueError, match="my/catch"):
        envs.register_lazy("my/catch", build)
    envs.register_lazy("my/wrong", build)
    with pytest.raises(ValueError, match="my/wrong"):
        envs.make("my/wrong")  # the builder returns a task with another name
    with pytest.raises(ValueError, match="callable"):
        envs.register_lazy("my/none", None)


def test_unknown_gymnax_id():
    with pytest.raises(ValueError, match="Nope-v0"):
        gymnax_wrapper.GymnaxEnv("Nope-v0")


_EXPECTED_AGENT = {
    "MinAtar": AgentSpec("conv", conv_features=(16,), hidden=(128,)),
    "bsuite": AgentSpec("mlp", hidden=(64, 64)),
    "classic": AgentSpec("mlp", hidden=(64, 64)),
}
_EXPECTED_LIFETIME = {"MinAtar": 10_000_000, "bsuite": 100_000}


def _family(env_id):
    for family in ("MinAtar", "bsuite", "misc"):
        if env_id.endswith(family):
            return family
    return "classic"


@pytest.mark.parametrize("env_id", [e for e in gymnax.registered_envs if e != "MNISTBandit-bsuite"])
def test_task_defaults(env_id):
    task = envs.make(f"gymnax/{env_id}")
    family = _family(env_id)
    if family in _EXPECTED_AGENT:
        assert task.agent == _EXPECTED_AGENT[family]
    if env_id == "FrozenLake-misc":
        assert task.agent == AgentSpec("tabular", optimiser="sgd")
    else:
        assert task.agent.optimiser == "adam"
        assert task.learning_rates == (3e-4, 1e-3, 2.5e-3)
    expected_lifetime = {"CartPole-v1": 500_000, "Acrobot-v1": 500_000, "DiscountingChain-bsuite": 1_000_000}
    assert task.lifetime_steps == expected_lifetime.get(env_id, _EXPECTED_LIFETIME.get(family, 1_000_000))
    assert 0.99 in task.discounts
    # Box action spaces (Pendulum, MountainCarContinuous, ...) are well-formed tasks too.
    params = task.sample_params(jax.random.key(0))
    assert jax.tree.structure(params) == jax.tree.structure(task.env.default_params)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(params))
    space = task.env.action_space(params)
    assert isinstance(space, (base.Discrete, base.Box))


def test_tabular_observations_only_for_frozen_lake():
    lake = envs.make("gymnax/FrozenLake-misc").env
    assert lake.num_states == 16
    obs, _ = lake.reset(jax.random.key(0), lake.sample_params(jax.random.key(0)))
    assert obs.shape == () and obs.dtype == jnp.int32
    assert not hasattr(envs.make("gymnax/CartPole-v1").env, "num_states")


# ---------------------------------------------------------------------------- conformance


def _transition(env, params, carry, key):
    obs, state = carry
    key_action, key_step = jax.random.split(key)
    action = env.action_space(params).sample(key_action)
    next_obs, next_state, out = transitions.step_record(env, params, obs, state, action, key_step)
    # gymnax's step splits its key into a transition key and a reset key: replay both halves raw.
    key_transition, key_reset = jax.random.split(key_step)
    pre_reset_obs, pre_reset_state, raw_reward, raw_terminated, _ = env.unwrapped.step_env(
        key_transition, state, action, params
    )
    reset_obs, reset_state = env.unwrapped.reset_env(key_reset, params)
    out.update(
        next_state=next_state,
        raw_reward=raw_reward,
        raw_terminated=raw_terminated,
        pre_reset_obs=pre_reset_obs,
        pre_reset_state=pre_reset_state,
        pre_reset_time=pre_reset_state.time,
        own_terminated=env.unwrapped.is_terminated(pre_reset_state, params),
        reset_obs=reset_obs,
        reset_state=reset_state,
    )
    return (next_obs, next_state), out


def _params(task, key, limit):
    params = task.sample_params(key)
    default = params.max_steps_in_episode
    limit = jnp.where(limit > 0, limit, default).astype(default.dtype)
    return params.replace(max_steps_in_episode=limit)


def _rollout(task, key, limit, num_steps):
    key_params, key_reset, key_steps = jax.random.split(key, 3)
    params = _params(task, key_params, limit)
    carry = task.env.reset(key_reset, params)
    transition = functools.partial(_transition, task.env, params)
    _, outs = jax.lax.scan(transition, carry, jax.random.split(key_steps, num_steps))
    return params, outs


@functools.cache
def _conformance_data(name):
    task = envs.make(name)
    keys = jax.random.split(jax.random.key(7), NUM_ENVS)
    limits = jnp.array((0, *SHORT_LIMITS), jnp.int32)  # 0: the env's default limit
    batched = jax.jit(jax.vmap(lambda key, limit: _rollout(task, key, limit, NUM_STEPS)))
    params, outs = jax.device_get(batched(keys, limits))
    _, again = jax.device_get(batched(keys, limits))
    return task, keys, limits, params, outs, again


def _tree_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_shapes_and_dtypes(name):
    task, _, _, params, outs, _ = _conformance_data(name)
    space = task.env.observation_space(jax.tree.map(lambda x: x[0], params))
    assert isinstance(space, base.Box) and space.dtype == jnp.float32
    for key in ("obs", "next_obs", "final_obs"):
        assert outs[key].shape == (NUM_ENVS, NUM_STEPS, *space.shape), key
        assert outs[key].dtype == np.float32, key
        assert bool(space.contains(outs[key])), key
    for key, dtype in (("reward", np.float32), ("terminated", bool), ("truncated", bool)):
        assert outs[key].shape == (NUM_ENVS, NUM_STEPS) and outs[key].dtype == dtype, key


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_matches_raw_gymnax(name):
    """Same keys and actions: rewards, flags and states are the raw gymnax env's."""
    _, _, _, params, outs, _ = _conformance_data(name)
    # Floats to an ulp: XLA may fuse the two (identical) computations differently.
    _assert_close(outs["reward"], outs["raw_reward"].astype(np.float32))
    np.testing.assert_array_equal(outs["terminated"], outs["raw_terminated"])
    limit = np.asarray(params.max_steps_in_episode)[:, None]
    np.testing.assert_array_equal(outs["truncated"], outs["pre_reset_time"] >= limit)
    done = outs["terminated"] | outs["truncated"]
    expected_state = jax.tree.map(
        lambda reset, stepped: np.where(done.reshape(done.shape + (1,) * (reset.ndim - 2)), reset, stepped),
        outs["reset_state"],
        outs["pre_reset_state"],
    )
    jax.tree.map(_assert_close, outs["next_state"], expected_state)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_auto_reset_and_final_observation(name):
    _, _, _, _, outs, _ = _conformance_data(name)
    done = outs["terminated"] | outs["truncated"]
    assert done[1:].any(axis=1).all(), "short-limit envs must end episodes"
    np.testing.assert_array_equal(outs["next_time"], np.where(done, 0, outs["time"] + 1))
    np.testing.assert_array_equal(outs["obs"][:, 1:], outs["next_obs"][:, :-1])
    # The final observation is the last one of the episode: the transition before the reset ...
    _assert_close(outs["final_obs"], outs["pre_reset_obs"].astype(np.float32))
    _assert_close(outs["final_obs"][~done], outs["next_obs"][~done])
    # ... and after an episode end the next observation starts a new episode.
    _assert_close(outs["next_obs"][done], outs["reset_obs"][done].astype(np.float32))
    assert not np.array_equal(outs["final_obs"][done], outs["next_obs"][done])


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_terminated_is_the_env_condition_and_truncated_the_time_limit(name):
    _, _, _, params, outs, _ = _conformance_data(name)
    limit = np.asarray(params.max_steps_in_episode)[:, None]
    np.testing.assert_array_equal(outs["truncated"], outs["time"] + 1 >= limit)
    assert outs["truncated"][1:].any()
    # Terminated is the env's own terminal condition, evaluated without the time limit.
    np.testing.assert_array_equal(outs["terminated"], outs["own_terminated"])


def test_cartpole_terminated_by_its_thresholds_and_truncated_without_termination():
    _, _, _, _, outs, _ = _conformance_data("gymnax/CartPole-v1")
    x, theta = outs["final_obs"][..., 0], outs["final_obs"][..., 2]
    fell = (np.abs(x) > 2.4) | (np.abs(theta) > CARTPOLE_THETA_LIMIT)
    np.testing.assert_array_equal(outs["terminated"], fell)
    assert outs["terminated"][0].any(), "a random policy drops the pole within NUM_STEPS"
    # 3-step episodes are too short to drop the pole: every one of them is truncated, none terminated.
    assert outs["truncated"][1].sum() == NUM_STEPS // SHORT_LIMITS[0]
    assert not outs["terminated"][1].any()


def test_acrobot_terminated_by_height():
    _, _, _, _, outs, _ = _conformance_data("gymnax/Acrobot-v1")
    cos1, sin1, cos2, sin2 = np.moveaxis(outs["final_obs"][..., :4], -1, 0)
    height = -cos1 - (cos1 * cos2 - sin1 * sin2)  # -cos θ1 - cos(θ1 + θ2)
    np.testing.assert_array_equal(outs["terminated"], height > 1.0)


def test_catch_terminates_when_the_ball_lands():
    _, _, _, _, outs, _ = _conformance_data("gymnax/Catch-bsuite")
    np.testing.assert_array_equal(outs["terminated"], outs["time"] + 1 == 9)  # 10 rows: 9 drops
    assert set(np.unique(outs["reward"][outs["terminated"]])) <= {-1.0, 1.0}
    np.testing.assert_array_equal(outs["reward"][~outs["terminated"]], 0.0)


@pytest.mark.parametrize("name", ["gymnax/Pendulum-v1", "gymnax/Freeway-MinAtar"])
def test_time_limited_envs_only_truncate(name):
    _, _, _, _, outs, _ = _conformance_data(name)
    assert not outs["terminated"].any()
    # Env 0 keeps the default limit (200 / 2500 steps); envs 1 and 2 are cut every 3 / 7 steps.
    assert outs["truncated"].sum(axis=1).tolist() == [0] + [NUM_STEPS // limit for limit in SHORT_LIMITS]


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_same_key_same_result_and_keys_matter(name):
    _, _, _, _, outs, again = _conformance_data(name)
    _tree_equal(outs, again)
    assert not np.array_equal(outs["obs"][0], outs["obs"][1])


@pytest.mark.parametrize("name", EAGER)
def test_jit_vmap_equals_eager_loop(name):
    task, keys, limits, _, outs, _ = _conformance_data(name)
    with jax.disable_jit():
        _, eager = _rollout(task, keys[EAGER_ENV], limits[EAGER_ENV], NUM_EAGER_STEPS)
    batched = jax.tree.map(lambda x: x[EAGER_ENV, :NUM_EAGER_STEPS], outs)
    assert batched["truncated"].any()  # the comparison crosses an auto-reset
    jax.tree.map(_assert_close, jax.device_get(eager), batched)


def _assert_close(a, b):
    if np.issubdtype(np.asarray(a).dtype, np.floating):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------- quirks


def _fixed_action_rollout(env, params, action, num_steps):
    def body(state, key):
        _, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
        return state, (reward, terminated, truncated, state.time)

    _, state = env.reset(jax.random.key(0), params)
    return jax.device_get(jax.lax.scan(body, state, jax.random.split(jax.random.key(1), num_steps))[1])


def test_discounting_chain_horizon_is_terminal():
    env = envs.make("gymnax/DiscountingChain-bsuite").env
    params = env.sample_params(jax.random.key(0)).replace(max_steps_in_episode=jnp.int32(5))
    rollout = jax.jit(_fixed_action_rollout, static_argnums=(0, 3))
    _, terminated, truncated, _ = rollout(env, params, 1, 12)
    np.testing.assert_array_equal(terminated, (np.arange(12) + 1) % 5 == 0)
    assert not truncated.any()
    _, raw_terminated, raw_truncated, _ = rollout(env.unwrapped, params, 1, 12)
    assert not raw_terminated.any() and raw_truncated.any()  # what the override corrects


def test_simple_bandit_arms_fixed_for_the_lifetime():
    env = envs.make("gymnax/SimpleBandit-bsuite").env
    params = env.sample_params(jax.random.key(0))
    rollout = jax.jit(_fixed_action_rollout, static_argnums=(0, 3))
    rewards, terminated, _, _ = rollout(env, params, 3, 8)
    assert terminated.all()
    _, state = env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(rewards, np.full(8, state.rewards[3]))
    raw_rewards, _, _, _ = rollout(env.unwrapped, params, 3, 8)
    assert len(set(raw_rewards.tolist())) > 1  # raw gymnax redraws the arms at every reset


def test_raw_vs_wrapped_step_fns_compute_the_same_rollout():
    raw, wrapped = gymnax_wrapper.raw_vs_wrapped_step_fns("gymnax/CartPole-v1", num_envs=2, num_steps=5)
    key = jax.random.key(3)
    (raw_reward, raw_obs_sum), (reward, obs_sum) = np.asarray(raw(key)), np.asarray(wrapped(key))
    assert raw_reward == reward == 10.0  # CartPole pays 1 per step
    assert raw_obs_sum == obs_sum != 0
