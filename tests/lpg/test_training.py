"""Tests for lpg/training.py: agents built per task, population shapes, curves, A2C learning.

The learning tests run learning and random (α_lr = 0, so θ stays at the uniform θ0) lifetimes
side by side in one call with per-lifetime hyperparameters: one compilation, same budget.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from lpg import networks
from lpg import training
from lpg import types
from lpg.rules import a2c

UNROLL = 20


def make_hyper(learning_rate, discount=0.99):
    """A2C hyperparameters; `learning_rate` may be a scalar or a [L] array."""
    learning_rate = jnp.asarray(learning_rate, jnp.float32)
    return types.HyperParams(
        learning_rate=learning_rate, discount=jnp.float32(discount),
        entropy_cost=jnp.float32(0.01), value_cost=jnp.float32(0.5), td_lambda=jnp.float32(0.95),
    )


@pytest.mark.parametrize(
    "name, network_type, param_shapes",
    [
        # 11 · 11 cells × 2⁴ object-presence patterns = 1936 states; 2 chains × (2 · 30 + 1) = 122.
        ("tabular/dense", networks.TabularNetwork, {"logits": (1936, 18), "y": (1936, 7), "value": (1936,)}),
        ("chain/short", networks.TabularNetwork, {"logits": (2 * 61, 2), "y": (2 * 61, 7), "value": (2 * 61,)}),
        ("chain/distractor", networks.MLPNetwork, {"Dense_0": {"kernel": (22, 16), "bias": (16,)}}),
        ("random/small", networks.MLPNetwork, {"Dense_0": {"bias": (32,)}}),
        ("random/dense", networks.ConvNetwork, {"Conv_0": {"kernel": (3, 3, None, 16)}, "Dense_0": {"bias": (32,)}}),
    ],
)
def test_build_agent(name, network_type, param_shapes):
    task = envs.make(name)
    agent = training.build_agent(task, types.OutputSpec(y_dim=7, value=True), grad_clip=2.0)
    assert isinstance(agent.network, network_type)
    assert agent.optimiser == task.agent.optimiser and agent.grad_clip == 2.0
    hash(agent)  # static argument of jit
    params = task.sample_params(jax.random.key(0))
    obs, _ = task.env.reset(jax.random.key(1), params)
    shapes = jax.tree.map(jnp.shape, jax.eval_shape(agent.network.init, jax.random.key(2), obs))["params"]

    def check(expected, actual):
        for key, value in expected.items():
            if isinstance(value, dict):
                check(value, actual[key])
            else:
                assert len(actual[key]) == len(value)
                assert all(e is None or e == a for e, a in zip(value, actual[key])), (key, actual[key])

    check(param_shapes, shapes)
    if network_type is not networks.TabularNetwork:
        head = shapes["_Heads_0"]
        assert head["policy"]["kernel"][-1] == task.env.action_space(params).n
        assert head["y"]["kernel"][-1] == 7 and head["value"]["kernel"][-1] == 1


def test_mean_episode_return_carries_forward():
    stats = {
        "return_sum": jnp.array([[0.0, 3.0, 0.0, 0.0, 5.0, 1.0]]),
        "return_count": jnp.array([[0.0, 2.0, 0.0, 0.0, 1.0, 1.0]]),
    }
    np.testing.assert_allclose(training.mean_episode_return(stats), [[np.nan, 1.5, 1.5, 1.5, 5.0, 1.0]])
    # Window 2 pools (u−2, u]: [–, 3/2, 3/2, –→carry, 5/1, 6/2].
    np.testing.assert_allclose(training.mean_episode_return(stats, window=2), [[np.nan, 1.5, 1.5, 1.5, 5.0, 3.0]])
    with pytest.raises(ValueError):
        training.mean_episode_return(stats, window=0)


@pytest.fixture(scope="module")
def chain_train_fn():
    # 8 lifetimes: the learning and the random (α_lr = 0) halves share one compilation.
    return training.make_train_fn(
        envs.make("chain/short"), a2c.A2C(), num_lifetimes=8, num_updates=100, num_envs=16, unroll_length=UNROLL
    )


def test_population_shapes_and_no_recompile():
    task = envs.make("chain/short")
    train = training.make_train_fn(task, a2c.A2C(), num_lifetimes=2, num_updates=3, num_envs=4, unroll_length=5)
    states, stats = train(jax.random.key(0), make_hyper(40.0), {})  # scalar hyper: broadcast
    for name in ("return_sum", "return_count", "entropy", "loss", "policy_loss", "value_loss", "grad_norm"):
        assert stats[name].shape == (2, 3), name
    assert states.agent.params["params"]["logits"].shape[0] == 2
    assert states.carry.obs.shape == (2, 4)
    assert states.env_params.length.shape == (2,)
    # Lifetimes are independent: different chain lengths / trajectories.
    assert not np.array_equal(states.agent.params["params"]["logits"][0], states.agent.params["params"]["logits"][1])
    # Another seed, learning rate and hyper batching: no new compilation.
    train(jax.random.key(1), make_hyper(20.0), {})
    assert train._cache_size() == 1
    # Same key, same result.
    _, again = train(jax.random.key(0), make_hyper(40.0), {})
    np.testing.assert_array_equal(again["loss"], stats["loss"])


def test_chunked_lifetimes_match_vmap():
    task = envs.make("chain/short")
    kwargs = dict(num_lifetimes=4, num_updates=3, num_envs=4, unroll_length=5)
    _, vmapped = training.make_train_fn(task, a2c.A2C(), **kwargs)(jax.random.key(0), make_hyper(40.0), {})
    chunked_fn = training.make_train_fn(task, a2c.A2C(), lifetimes_per_chunk=2, **kwargs)
    _, chunked = chunked_fn(jax.random.key(0), make_hyper(40.0), {})
    np.testing.assert_allclose(chunked["return_sum"], vmapped["return_sum"])
    np.testing.assert_allclose(chunked["loss"], vmapped["loss"], rtol=1e-4, atol=1e-6)


def _final_returns(stats, window):
    """[L] mean return of the episodes completed in the last `window` updates of each lifetime."""
    return np.asarray(training.mean_episode_return(stats, window=window))[:, -1]


def test_a2c_learns_chain_short(chain_train_fn):
    learning_rates = jnp.array([40.0] * 4 + [0.0] * 4)
    states, stats = chain_train_fn(jax.random.key(0), make_hyper(learning_rates), {})
    final = _final_returns(stats, window=20)
    learned, random = final[:4].mean(), final[4:].mean()
    print(f"chain/short A2C final return {learned:.3f} (per lifetime {np.round(final[:4], 3)}), random {random:.3f}")
    assert learned >= 0.9
    assert abs(random) < 0.25
    # α_lr = 0 leaves the zero-initialised table untouched: hyper[l] reached lifetime l.
    np.testing.assert_array_equal(states.agent.params["params"]["logits"][4:], 0.0)
    assert np.all(np.abs(states.agent.params["params"]["logits"][:4]).max(axis=(1, 2)) > 0.1)


def test_a2c_beats_random_on_tabular_dense():
    train = training.make_train_fn(
        envs.make("tabular/dense"), a2c.A2C(), num_lifetimes=8, num_updates=200, num_envs=32, unroll_length=UNROLL
    )
    learning_rates = jnp.array([40.0] * 4 + [0.0] * 4)
    _, stats = train(jax.random.key(0), make_hyper(learning_rates), {})
    final = _final_returns(stats, window=40)  # 40 × 20 steps > 500-step episodes: every env finishes one
    learned, random = final[:4].mean(), final[4:].mean()
    print(f"tabular/dense A2C final return {learned:.2f} (per lifetime {np.round(final[:4], 2)}), random {random:.2f}")
    assert np.all(np.isfinite(final))
    assert learned >= 5.0
    assert learned >= random + 5.0


def test_per_lifetime_keys_ignore_batch_and_chunking():
    """With per-lifetime keys, lifetime 2 of a batch of 3 trained 4 updates in one call equals
    the same key trained alone in two chunks of 2 updates: bit for bit."""
    task = envs.make("chain/short")
    agent = training.build_agent(task, a2c.A2C().output_spec)
    keys = jax.random.split(jax.random.key(3), 3)
    hyper = make_hyper(jnp.array([20.0, 80.0, 40.0]))

    @jax.jit
    def start(keys):
        return training.init_lifetimes_from_keys(task, agent, keys, 4, rule=a2c.A2C())

    def train(states, keys, hyper, first_update, num_updates):
        return training.continue_training(
            task, a2c.A2C(), agent, {}, hyper, states, keys=keys, first_update=first_update,
            num_updates=num_updates, unroll_length=5)

    train = jax.jit(train, static_argnums=4)
    batch_state, batch_stats = train(start(keys), keys, hyper, 0, 4)
    alone_keys, alone_hyper = keys[2:], make_hyper(jnp.array([40.0]))
    state, first = train(start(alone_keys), alone_keys, alone_hyper, 0, 2)
    state, second = train(state, alone_keys, alone_hyper, 2, 2)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[2], b[0]), batch_state, state)
    for name in ("loss", "return_sum"):
        np.testing.assert_array_equal(batch_stats[name][2], np.concatenate([first[name][0], second[name][0]]))
    # Not vacuous: the lifetimes of the batch differ (and a second chunk reusing the first
    # chunk's update keys would break the equality above).
    assert not np.array_equal(batch_stats["loss"][0], batch_stats["loss"][2])
    with pytest.raises(ValueError, match="exactly one of key"):
        training.continue_training(task, a2c.A2C(), agent, {}, hyper, batch_state, num_updates=1, unroll_length=5)


def test_active_updates_skip_the_rest_of_a_chunk():
    """num_updates=4 with active_updates=2 == num_updates=2; the skipped updates report zeros."""
    task = envs.make("chain/short")
    agent = training.build_agent(task, a2c.A2C().output_spec)
    keys = jax.random.split(jax.random.key(0), 2)
    states = training.init_lifetimes_from_keys(task, agent, keys, 4, rule=a2c.A2C())

    @jax.jit
    def run(states, active):
        return training.continue_training(task, a2c.A2C(), agent, {}, make_hyper(40.0), states, keys=keys,
                                          num_updates=4, unroll_length=5, active_updates=active)

    two_state, two = run(states, jnp.int32(2))
    four_state, four = run(states, jnp.int32(4))
    exact_state, exact = jax.jit(lambda s: training.continue_training(
        task, a2c.A2C(), agent, {}, make_hyper(40.0), s, keys=keys, num_updates=2, unroll_length=5))(states)
    jax.tree.map(np.testing.assert_array_equal, two_state, exact_state)
    np.testing.assert_array_equal(two["loss"][:, :2], exact["loss"])
    np.testing.assert_array_equal(two["loss"][:, 2:], 0.0)
    np.testing.assert_array_equal(four["loss"][:, :2], exact["loss"])
    assert np.all(four["loss"][:, 2:] != 0.0)
    assert not np.array_equal(four_state.agent.params["params"]["logits"], exact_state.agent.params["params"]["logits"])
