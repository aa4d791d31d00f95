"""Tests for lpg/networks.py: shapes per architecture, tabular gather, action masking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import task as task_lib
from lpg import networks

NUM_ACTIONS = 4
Y_DIM = 5


def _init(network, obs_example):
    return network.init(jax.random.key(0), obs_example)


@pytest.mark.parametrize(
    "spec, obs_shape, dtype",
    [
        (task_lib.AgentSpec(kind="mlp", hidden=(8,)), (6,), jnp.float32),
        (task_lib.AgentSpec(kind="mlp", hidden=(8, 8)), (3, 4, 2), jnp.float32),  # grid into an MLP
        (task_lib.AgentSpec(kind="conv", conv_features=(4, 3), hidden=(8,)), (5, 4, 2), jnp.float32),
    ],
)
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_network_output_shapes(spec, obs_shape, dtype, lead):
    network = networks.make_network(spec, NUM_ACTIONS, None, Y_DIM, obs_shape=obs_shape)
    params = _init(network, jnp.zeros(obs_shape, dtype))
    obs = jax.random.uniform(jax.random.key(1), lead + obs_shape)
    out = network.apply(params, obs)
    assert out.logits.shape == lead + (NUM_ACTIONS,)
    assert out.y.shape == lead + (Y_DIM,)
    assert out.value.shape == lead
    for x in (out.logits, out.y, out.value):
        assert x.dtype == jnp.float32
        assert np.all(np.isfinite(x))


def test_batched_equals_unbatched():
    spec = task_lib.AgentSpec(kind="conv", conv_features=(4,), hidden=(8,))
    network = networks.make_network(spec, NUM_ACTIONS, None, Y_DIM, obs_shape=(3, 3, 2))
    params = _init(network, jnp.zeros((3, 3, 2)))
    obs = jax.random.uniform(jax.random.key(1), (2, 3, 3, 3, 2))
    batched = network.apply(params, obs)
    single = network.apply(params, obs[1, 2])
    np.testing.assert_allclose(batched.logits[1, 2], single.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.value[1, 2], single.value, rtol=1e-5, atol=1e-6)


def test_wrong_observation_shape_raises():
    spec = task_lib.AgentSpec(kind="mlp", hidden=(8,))
    network = networks.make_network(spec, NUM_ACTIONS, None, Y_DIM, obs_shape=(6,))
    params = _init(network, jnp.zeros((6,)))
    with pytest.raises(ValueError):
        network.apply(params, jnp.zeros((3, 7)))


def test_tabular_is_a_zero_initialised_gather():
    num_states = 7
    network = networks.make_network(task_lib.AgentSpec(kind="tabular", optimiser="sgd"), NUM_ACTIONS, num_states, Y_DIM)
    params = _init(network, jnp.int32(0))
    shapes = jax.tree.map(jnp.shape, params)["params"]
    assert shapes == {"logits": (num_states, NUM_ACTIONS), "y": (num_states, Y_DIM), "value": (num_states,)}
    assert all(np.all(x == 0) for x in jax.tree.leaves(params))  # uniform π and y at the start
    # Fill the tables with distinct numbers: the output must be exactly the indexed rows.
    tables = jax.tree.map(lambda x: jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape), params)
    obs = jnp.array([[3, 0], [6, 3]], jnp.int32)
    out = network.apply(tables, obs)
    p = tables["params"]
    np.testing.assert_array_equal(out.logits, p["logits"][obs])
    np.testing.assert_array_equal(out.y, p["y"][obs])
    np.testing.assert_array_equal(out.value, p["value"][obs])
    assert out.logits.shape == (2, 2, NUM_ACTIONS) and out.value.shape == (2, 2)
    # Unbatched scalar observation.
    np.testing.assert_array_equal(network.apply(tables, jnp.int32(5)).value, p["value"][5])


def test_tabular_needs_num_states():
    with pytest.raises(ValueError):
        networks.make_network(task_lib.AgentSpec(kind="tabular"), NUM_ACTIONS, None)


def test_masked_logits_zero_probability_finite_entropy():
    logits = jnp.array([[0.3, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = jnp.array([True, False, True, False])
    masked = networks.mask_logits(logits, mask)
    probs = jax.nn.softmax(masked)
    np.testing.assert_array_equal(probs[:, ~np.asarray(mask)], 0.0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    entropy = networks.policy_entropy(masked)
    assert np.all(np.isfinite(entropy))
    # Uniform over the 2 valid actions: entropy log 2, not log 4.
    np.testing.assert_allclose(entropy[1], np.log(2.0), rtol=1e-6)
    # The gradient of the entropy through masked logits is finite too.
    grad = jax.grad(lambda l: networks.policy_entropy(networks.mask_logits(l, mask)).sum())(logits)
    assert np.all(np.isfinite(grad))
    # Sampling never picks an invalid action.
    samples = jax.random.categorical(jax.random.key(0), masked[1], shape=(2000,))
    assert set(np.unique(samples).tolist()) == {0, 2}
