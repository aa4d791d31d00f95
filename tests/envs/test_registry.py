"""Registry behaviour, the builtin configs against SPEC §2, and conformance of every registered task.

Conformance runs one short rollout per task (a few lifetimes with sampled params, episodes cut
short so auto-reset happens) and checks it against the gymnax interface: spaces, dtypes,
jit == no-jit, vmap == loop, same key -> same result, auto-reset, vmapped `sample_params`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import base
from envs import registry
from envs.task import AgentSpec
from tests.envs import transitions

BUILTINS = [
    "tabular/dense",
    "tabular/sparse",
    "tabular/long_horizon",
    "tabular/longer_horizon",
    "tabular/long_dense",
    "random/dense",
    "random/long_horizon",
    "random/small",
    "random/small_sparse",
    "random/very_dense",
    "chain/short",
    "chain/short_noisy",
    "chain/long",
    "chain/long_noisy",
    "chain/distractor",
]

NUM_LIFETIMES = 3
NUM_STEPS = 60  # > the longest chain (50) + 1, so every task auto-resets at least once
NUM_EAGER_STEPS = 8  # op-by-op steps compared against the jitted rollout (grids reset after 7)
GRID_MAX_STEPS = 7  # grids are cut to 7-step episodes so truncation and auto-reset show up
# The adapter families have their own conformance tests (tests/envs/test_gymnax.py, test_brax.py).
CONFORMANCE_NAMES = list(registry.PAPER_TASKS)


# ----------------------------------------------------------------------------- registry API


def test_builtin_names_in_order():
    assert envs.names()[: len(BUILTINS)] == BUILTINS
    assert list(registry.PAPER_TASKS) == BUILTINS


def test_make_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="tabular/nope") as error:
        envs.make("tabular/nope")
    for name in BUILTINS:
        assert name in str(error.value)


def test_make_returns_the_same_task():
    assert envs.make("chain/short") is envs.make("chain/short")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are undone afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_register_user_task_and_duplicates(scratch_registry):
    task = envs.gridworld_task(
        name="my/grid",
        height=6,
        width=6,
        objects=[(1.0, 0.0, 0.05)] * 2 + [(-1.0, 0.5, 0.1)],
        max_steps=200,
        mode="tabular",
        walls=[(2, 2), (2, 3)],
    )
    envs.register(task)
    assert envs.make("my/grid") is task
    assert envs.names()[-1] == "my/grid"
    assert task.env.num_states == 36 * 2**3
    assert task.agent == AgentSpec("tabular", optimiser="sgd")
    assert task.lifetime_steps == 3_000_000
    with pytest.raises(ValueError, match="my/grid"):
        envs.register(task)
    other = envs.chain_task(name="my/grid", min_length=3, max_length=4)
    envs.register(other, overwrite=True)
    assert envs.make("my/grid") is other


def test_register_rejects_non_tasks():
    with pytest.raises(ValueError, match="Task"):
        envs.register("tabular/dense")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="pixels"), "pixels"),
        (dict(collect_action_prob=1.5), "1.5"),
        (dict(height=0), "height"),
        (dict(max_steps=-3), "-3"),
        (dict(objects=[(1.0, 2.0, 0.0)]), "2.0"),
        (dict(objects=[(1.0, 0.0, 0.0)] * 16), "16 objects"),
        (dict(walls=np.zeros((3, 3), bool)), r"\(3, 3\)"),
        (dict(mode="random", agent=AgentSpec("tabular", optimiser="sgd")), "random"),
        (dict(name=""), "name"),
    ],
)
def test_gridworld_task_bad_input(kwargs, match):
    config = dict(name="bad/grid", height=4, width=4, objects=[(1.0, 0.0, 0.1)], max_steps=10)
    config.update(kwargs)
    with pytest.raises(ValueError, match=match):
        envs.gridworld_task(**config)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(min_length=1), "min_length=1"),
        (dict(min_length=9, max_length=8), "min_length=9"),
        (dict(distractor=True, agent=AgentSpec("tabular", optimiser="sgd")), "distractor"),
        (dict(lifetime_steps=0), "lifetime_steps"),
    ],
)
def test_chain_task_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.chain_task(name="bad/chain", **kwargs)


# ------------------------------------------------------------------------ builtins vs SPEC §2

_DENSE = [(1, 0, 0.05)] * 2 + [(-1, 0.5, 0.1), (-1, 0, 0.5)]
_LONG = [(1, 0, 0.01)] * 2 + [(-1, 0.5, 1)] * 2
# name: (H, W, objects, max steps, agent)
_GRID_SPEC = {
    "tabular/dense": (11, 11, _DENSE, 500, AgentSpec("tabular", optimiser="sgd")),
    "tabular/sparse": (13, 13, [(1, 1, 0), (-1, 1, 0)], 50, AgentSpec("tabular", optimiser="sgd")),
    "tabular/long_horizon": (11, 11, _LONG, 1000, AgentSpec("tabular", optimiser="sgd")),
    "tabular/longer_horizon": (
        7, 9, [(1, 0.1, 0.01)] * 2 + [(-1, 0.8, 1)] * 5, 2000, AgentSpec("tabular", optimiser="sgd")
    ),
    "tabular/long_dense": (11, 11, [(1, 0, 0.005)] * 4, 2000, AgentSpec("tabular", optimiser="sgd")),
    "random/dense": (11, 11, _DENSE, 500, AgentSpec("conv", conv_features=(16,), hidden=(32,))),
    "random/long_horizon": (11, 11, _LONG, 1000, AgentSpec("conv", conv_features=(16,), hidden=(32,))),
    "random/small": (5, 7, [(1, 0, 0.05)] * 2 + [(-1, 0.5, 0.1)] * 2, 500, AgentSpec("mlp", hidden=(32,))),
    "random/small_sparse": (5, 7, [(1, 1, 1)] + [(-1, 1, 1)] * 2, 50, AgentSpec("mlp", hidden=(32,))),
    "random/very_dense": (
        11, 11, [(1, 0, 1)], 2000, AgentSpec("conv", conv_features=(32, 16, 16), hidden=(256,))
    ),
}


@pytest.mark.parametrize("name", list(_GRID_SPEC))
def test_builtin_grids_match_spec(name):
    height, width, objects, max_steps, agent = _GRID_SPEC[name]
    task = envs.make(name)
    env, params = task.env, task.env.default_params
    assert (env.height, env.width, env.max_steps, env.mode) == (height, width, max_steps, name.split("/")[0])
    np.testing.assert_allclose(np.stack([params.rewards, params.term_probs, params.respawn_probs], 1), objects)
    assert int(params.max_steps_in_episode) == max_steps
    assert not np.asarray(params.walls).any()
    assert task.agent == agent
    if env.mode == "tabular":
        assert task.lifetime_steps == 3_000_000
        assert task.learning_rates == (20, 40, 80)
        assert env.num_states == height * width * 2 ** len(objects)
    else:
        assert task.lifetime_steps == 30_000_000
        assert task.learning_rates == (5e-4, 1e-3, 2e-3, 5e-3)
        assert env.num_channels == len(set(objects)) + 1
    assert task.discounts == (0.997, 0.995, 0.99)


@pytest.mark.parametrize(
    "name, lengths, noisy, distractor",
    [
        ("chain/short", (5, 30), False, False),
        ("chain/short_noisy", (5, 30), True, False),
        ("chain/long", (5, 50), False, False),
        ("chain/long_noisy", (5, 50), True, False),
        ("chain/distractor", (5, 30), False, True),
    ],
)
def test_builtin_chains_match_spec(name, lengths, noisy, distractor):
    task = envs.make(name)
    env = task.env
    assert (env.min_length, env.max_length) == lengths
    assert bool(env.default_params.noisy) == noisy and env.distractor == distractor
    if distractor:
        assert task.agent == AgentSpec("mlp", hidden=(16,))
        assert task.learning_rates == (2e-3, 5e-3, 1e-2)
        assert task.lifetime_steps == 2_000_000
    else:
        assert task.agent == AgentSpec("tabular", optimiser="sgd")
        assert task.learning_rates == (20, 40, 80)
        assert task.lifetime_steps == 1_000_000


# ------------------------------------------------------------------------------- conformance


def _transition(env, params, carry, key):
    """One step with a uniformly random valid action; the unit shared by jitted and eager runs."""
    obs, state = carry
    key_action, key_step = jax.random.split(key)
    logits = jnp.where(base.action_mask(env, params), 0.0, -jnp.inf)
    action = jax.random.categorical(key_action, logits).astype(jnp.int32)
    next_obs, next_state, out = transitions.step_record(env, params, obs, state, action, key_step)
    return (next_obs, next_state), out


def _short_episodes(params):
    """Grids are cut to GRID_MAX_STEPS-step episodes so truncation and auto-reset show up."""
    if hasattr(params, "object_cells"):
        params = params.replace(max_steps_in_episode=jnp.full_like(params.max_steps_in_episode, GRID_MAX_STEPS))
    return params


def _rollout(env, key, params, num_steps):
    key_reset, key_steps = jax.random.split(key)
    carry = env.reset(key_reset, params)
    _, outs = jax.lax.scan(functools.partial(_transition, env, params), carry, jax.random.split(key_steps, num_steps))
    return outs


def _eager_rollout(env, key, params, num_steps):
    """The same computation as `_rollout`, unbatched, op by op, as a Python loop over steps."""
    with jax.disable_jit():
        key_reset, key_steps = jax.random.split(key)
        carry = env.reset(key_reset, params)
        outs = []
        for step_key in jax.random.split(key_steps, NUM_STEPS)[:num_steps]:
            carry, out = _transition(env, params, carry, step_key)
            outs.append(out)
    return jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *outs))


@functools.cache
def _conformance_data(name):
    """Rollouts of NUM_LIFETIMES lifetimes under jit(vmap(.)), computed once per task and shared."""
    task = envs.make(name)

    def lifetime(key):
        key_params, key_rollout = jax.random.split(key)
        sampled = task.sample_params(key_params)
        params = _short_episodes(sampled)
        return sampled, params, _rollout(task.env, key_rollout, params, NUM_STEPS)

    # One compiled function per task: sampling params and the rollout share a compilation.
    batched = jax.jit(jax.vmap(lifetime))
    keys = jax.random.split(jax.random.key(123), NUM_LIFETIMES)
    sampled, params, outs = jax.device_get(batched(keys))
    _, _, again = jax.device_get(batched(keys))
    rollout_keys = jax.vmap(lambda key: jax.random.split(key)[1])(keys)
    return task, keys, rollout_keys, sampled, params, outs, again


def _tree_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _slice(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.mark.parametrize("name", CONFORMANCE_NAMES)
def test_spaces_dtypes_and_shapes(name):
    task, _, _, _, params, outs, _ = _conformance_data(name)
    env = task.env
    space = env.observation_space(_slice(params, 0))
    assert env.action_space(_slice(params, 0)).n == env.num_actions
    for key in ("obs", "next_obs", "final_obs"):
        obs = outs[key]
        assert obs.shape == (NUM_LIFETIMES, NUM_STEPS, *space.shape), key
        assert obs.dtype == space.dtype, key
        assert bool(jnp.all(space.contains(obs))), key  # Discrete: elementwise; Box: all()
        if isinstance(space, base.Box):  # {0,1} planes / bits
            assert set(np.unique(obs)) <= {0.0, 1.0}
    assert outs["reward"].shape == (NUM_LIFETIMES, NUM_STEPS) and outs["reward"].dtype == np.float32
    for key in ("terminated", "truncated"):
        assert outs[key].shape == (NUM_LIFETIMES, NUM_STEPS) and outs[key].dtype == bool
    if hasattr(env, "num_states"):
        assert isinstance(env.num_states, int)
        assert space.n == env.num_states


@pytest.mark.parametrize("name", CONFORMANCE_NAMES)
def test_same_key_same_result_and_keys_matter(name):
    _, _, _, _, _, outs, again = _conformance_data(name)
    _tree_equal(outs, again)
    # Different lifetimes (different keys) must not produce identical trajectories.
    assert not np.array_equal(outs["obs"][0], outs["obs"][1])


@pytest.mark.parametrize("name", CONFORMANCE_NAMES)
def test_jit_vmap_equals_eager_loop(name):
    """jit(vmap(rollout)) == a Python loop over lifetimes of unbatched rollouts without jit."""
    task, _, rollout_keys, _, params, outs, _ = _conformance_data(name)
    for i in range(NUM_LIFETIMES):
        eager = _eager_rollout(task.env, rollout_keys[i], _slice(params, i), NUM_EAGER_STEPS)
        batched = jax.tree.map(lambda x: x[i, :NUM_EAGER_STEPS], outs)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=f"lifetime {i}"), eager, batched)


@pytest.mark.parametrize("name", CONFORMANCE_NAMES)
def test_auto_reset(name):
    task, _, _, _, params, outs, _ = _conformance_data(name)
    env = task.env
    done = outs["terminated"] | outs["truncated"]
    assert done.any(axis=1).all(), "every lifetime should finish an episode within the rollout"
    # Time counts steps within an episode and restarts at 0 exactly after an episode ends.
    np.testing.assert_array_equal(outs["next_time"], np.where(done, 0, outs["time"] + 1))
    np.testing.assert_array_equal(outs["obs"][:, 1:], outs["next_obs"][:, :-1])
    # Without an episode end the final observation is the next observation.
    not_done = ~done
    np.testing.assert_array_equal(outs["final_obs"][not_done], outs["next_obs"][not_done])
    # Truncation fires exactly at the time limit.
    limit = np.asarray(params.max_steps_in_episode)[:, None]
    np.testing.assert_array_equal(outs["truncated"], outs["time"] + 1 >= limit)
    start_obs = outs["next_obs"][done]
    assert len(start_obs) > 0
    _check_start_observations(env, start_obs)
    # The first observation of the rollout (after reset) is a start state too.
    _check_start_observations(env, outs["obs"][:, 0])


def _check_start_observations(env, obs):
    """Episodes start with every object present, the agent on a free cell, no chain choice made."""
    if isinstance(env, envs.GridWorld) and env.mode == "tabular":
        n = env.num_objects
        np.testing.assert_array_equal(obs % 2**n, 2**n - 1)
    elif isinstance(env, envs.GridWorld):
        np.testing.assert_array_equal(obs[..., :-1].sum(axis=(-3, -2, -1)), env.num_objects)
        np.testing.assert_array_equal(obs[..., -1].sum(axis=(-2, -1)), 1)
        assert not (obs[..., :-1].max(-1) * obs[..., -1]).any(), "agent starts on an object"
    elif env.distractor:
        np.testing.assert_array_equal(obs[..., 1], 0.0)
    else:
        assert set(np.unique(obs)) <= {0, 2 * env.max_length + 1}


@pytest.mark.parametrize("name", CONFORMANCE_NAMES)
def test_sample_params_vmap_equals_loop(name):
    task, keys, _, batched, _, _, _ = _conformance_data(name)
    single = jax.jit(task.sample_params)
    for i, key in enumerate(keys):
        _tree_equal(_slice(batched, i), single(jax.random.split(key)[0]))
    leaves = jax.tree.leaves(batched)
    assert all(leaf.shape[0] == NUM_LIFETIMES for leaf in leaves)
    assert jax.tree.structure(batched) == jax.tree.structure(task.env.default_params)
