"""Tests for lpg/networks.py: shapes per architecture, tabular gather, action masking, im2col conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import task as task_lib
from lpg import distributions
from lpg import networks
from lpg import types

NUM_ACTIONS = 4
Y_DIM = 5
OUTPUTS = types.OutputSpec(y_dim=Y_DIM, value=True)


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
    network = networks.make_network(spec, NUM_ACTIONS, None, OUTPUTS, obs_shape=obs_shape)
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
    network = networks.make_network(spec, NUM_ACTIONS, None, OUTPUTS, obs_shape=(3, 3, 2))
    params = _init(network, jnp.zeros((3, 3, 2)))
    obs = jax.random.uniform(jax.random.key(1), (2, 3, 3, 3, 2))
    batched = network.apply(params, obs)
    single = network.apply(params, obs[1, 2])
    np.testing.assert_allclose(batched.logits[1, 2], single.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.value[1, 2], single.value, rtol=1e-5, atol=1e-6)


def test_wrong_observation_shape_raises():
    spec = task_lib.AgentSpec(kind="mlp", hidden=(8,))
    network = networks.make_network(spec, NUM_ACTIONS, None, OUTPUTS, obs_shape=(6,))
    params = _init(network, jnp.zeros((6,)))
    with pytest.raises(ValueError):
        network.apply(params, jnp.zeros((3, 7)))


def test_tabular_is_a_zero_initialised_gather():
    num_states = 7
    network = networks.make_network(task_lib.AgentSpec(kind="tabular", optimiser="sgd"), NUM_ACTIONS, num_states, OUTPUTS)
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


@pytest.mark.parametrize("kind", ["tabular", "mlp", "conv"])
@pytest.mark.parametrize("outputs", [types.OutputSpec(), types.OutputSpec(y_dim=3), types.OutputSpec(value=True)])
def test_networks_build_exactly_the_requested_heads(kind, outputs):
    """No y / value parameters or outputs unless the rule's OutputSpec asks for them."""
    spec = task_lib.AgentSpec(kind=kind, hidden=(4,), conv_features=(2,) if kind == "conv" else (),
                              optimiser="sgd" if kind == "tabular" else "adam")
    obs = jnp.int32(0) if kind == "tabular" else jnp.zeros((3, 3, 2))
    network = networks.make_network(spec, NUM_ACTIONS, 5, outputs, obs_shape=obs.shape)
    params = _init(network, obs)
    out = network.apply(params, obs)
    assert out.logits.shape == (NUM_ACTIONS,)
    assert (out.y is None) == (outputs.y_dim == 0) and (out.value is None) == (not outputs.value)
    if outputs.y_dim:
        assert out.y.shape == (outputs.y_dim,)
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    names = {getattr(k, "key", None) for path, _ in paths for k in path}
    assert ({"y"} <= names) == bool(outputs.y_dim) and ({"value"} <= names) == outputs.value, names
    with pytest.raises(ValueError, match="y_dim"):
        types.OutputSpec(y_dim=-1)


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
    entropy = distributions.MaskedCategorical(masked).entropy()
    assert np.all(np.isfinite(entropy))
    # Uniform over the 2 valid actions: entropy log 2, not log 4.
    np.testing.assert_allclose(entropy[1], np.log(2.0), rtol=1e-6)
    # The gradient of the entropy through masked logits is finite too.
    grad = jax.grad(
        lambda l: distributions.MaskedCategorical(networks.mask_logits(l, mask)).entropy().sum())(logits)
    assert np.all(np.isfinite(grad))
    # Sampling never picks an invalid action.
    samples = distributions.MaskedCategorical(jnp.tile(masked[1], (2000, 1))).sample(jax.random.key(0))
    assert set(np.unique(samples).tolist()) == {0, 2}


# ------------------------------------------------------------------ im2col convolution vs nn.Conv
# ConvNetwork computes its 3x3 SAME convolutions as im2col matmuls (fast on CPU under a vmap over
# per-lifetime weights); these tests pin it to flax's nn.Conv: values, gradients, vmap, init.

CONV_TOL = dict(rtol=1e-5, atol=1e-5)


def _flax_conv(features):
    return nn.Conv(features, kernel_size=(3, 3), padding="SAME")


def _random_conv_params(key, channels, features):
    """Random kernel [3, 3, C, F] and a non-zero bias [F] (init gives a zero bias).

    The kernel has LeCun scale 1/sqrt(9·C), so outputs are O(1) and the absolute tolerance means
    the same thing for every C (float32 summation order alone moves O(sqrt(9·C)) sums by ~1e-5).
    """
    kernel_key, bias_key = jax.random.split(key)
    return {
        "params": {
            "kernel": jax.random.normal(kernel_key, (3, 3, channels, features)) / np.sqrt(9 * channels),
            "bias": jax.random.normal(bias_key, (features,)),
        }
    }


@pytest.mark.parametrize(
    "shape, features",
    [
        ((11, 11, 4), 16),  # random/dense, random/long_horizon
        ((11, 11, 2), 32),  # random/very_dense, first layer
        ((3, 2, 32, 11, 11, 16), 16),  # several batch dims; an inner very_dense layer
        ((2, 5, 4, 3), 7),  # H != W, odd sizes: catches a transposed patch order
        ((1, 1, 3), 2),  # 1x1 grid: everything but the centre tap reads padding
    ],
)
def test_conv3x3_equals_flax_conv(shape, features):
    x = jax.random.normal(jax.random.key(0), shape)
    params = _random_conv_params(jax.random.key(1), shape[-1], features)
    expected = _flax_conv(features).apply(params, x)
    actual = networks.Conv3x3(features).apply(params, x)
    assert actual.shape == expected.shape == shape[:-1] + (features,)
    np.testing.assert_allclose(actual, expected, **CONV_TOL)
    # The pure function without bias, too.
    np.testing.assert_allclose(
        networks.conv3x3_same(x, params["params"]["kernel"]),
        expected - params["params"]["bias"],
        **CONV_TOL,
    )


def test_conv3x3_init_equals_flax_conv():
    x = jnp.zeros((11, 11, 4))
    expected = _flax_conv(16).init(jax.random.key(3), x)
    actual = networks.Conv3x3(16).init(jax.random.key(3), x)
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


def test_conv3x3_rejects_mismatched_kernel():
    with pytest.raises(ValueError):
        networks.conv3x3_same(jnp.zeros((5, 5, 3)), jnp.zeros((3, 3, 4, 8)))


@pytest.mark.parametrize("shared_inputs", [False, True])
def test_conv3x3_vmapped_over_weights_and_gradients(shared_inputs):
    """Per-lifetime weights under vmap (the population case): values and gradients w.r.t. the
    weights and the inputs match nn.Conv, lifetime by lifetime."""
    num_lifetimes, channels, features = 3, 4, 8
    keys = jax.random.split(jax.random.key(0), num_lifetimes)
    params = jax.vmap(lambda k: _random_conv_params(k, channels, features))(keys)
    x_shape = (4, 7, 6, channels) if shared_inputs else (num_lifetimes, 4, 7, 6, channels)
    x = jax.random.normal(jax.random.key(1), x_shape)
    # A loss with a non-trivial output cotangent, through a ReLU as in the network. Scaled so the
    # kernel gradient, a sum over 4·7·6 positions, is O(1) like the outputs (see CONV_TOL).
    weights = jax.random.normal(jax.random.key(2), (4, 7, 6, features)) / np.sqrt(4 * 7 * 6)

    def loss(module, p, inputs):
        return jnp.sum(weights * nn.relu(module.apply(p, inputs)))

    in_axes = (0, None) if shared_inputs else (0, 0)
    outputs, grads = {}, {}
    for name, module in (("flax", _flax_conv(features)), ("im2col", networks.Conv3x3(features))):
        outputs[name] = jax.jit(jax.vmap(module.apply, in_axes=in_axes))(params, x)
        grad_fn = jax.grad(lambda p, inputs, m=module: loss(m, p, inputs), argnums=(0, 1))
        grads[name] = jax.jit(jax.vmap(grad_fn, in_axes=in_axes))(params, x)
    assert outputs["im2col"].shape == (num_lifetimes, 4, 7, 6, features)
    np.testing.assert_allclose(outputs["im2col"], outputs["flax"], **CONV_TOL)
    # Each lifetime used its own weights: lifetime 1 differs from lifetime 0.
    assert not np.allclose(outputs["im2col"][0], outputs["im2col"][1])
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, **CONV_TOL), grads["im2col"], grads["flax"])


class _FlaxConvNetwork(networks.ConvNetwork):
    """ConvNetwork as written with nn.Conv: the reference the im2col version must reproduce."""

    @nn.compact
    def __call__(self, obs):
        batch_shape = obs.shape[: obs.ndim - 3]
        x = obs.reshape((-1, *self.obs_shape))
        for features in self.conv_features:
            x = nn.relu(_flax_conv(features)(x))
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return networks._restore_batch(networks._Heads(self.num_actions, self.outputs)(x), batch_shape)


def test_conv_network_equals_flax_conv_network():
    """A small multi-layer ConvNetwork: same parameter tree and init as the nn.Conv version,
    same outputs and parameter gradients under a vmap over per-lifetime parameters."""
    obs_shape = (6, 5, 2)
    kwargs = dict(num_actions=NUM_ACTIONS, obs_shape=obs_shape, conv_features=(4, 3), hidden=(16,), outputs=OUTPUTS)
    network, reference = networks.ConvNetwork(**kwargs), _FlaxConvNetwork(**kwargs)
    # Two lifetimes' parameters, stacked on a leading [L] axis. Eager inits: jitting them costs
    # seconds of compilation for nothing.
    keys = jax.random.split(jax.random.key(0), 2)
    params = [network.init(k, jnp.zeros(obs_shape)) for k in keys]
    jax.tree.map(np.testing.assert_array_equal, params, [reference.init(k, jnp.zeros(obs_shape)) for k in keys])
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
    obs = jax.random.uniform(jax.random.key(1), (2, 3, 5) + obs_shape)  # [L, T, B, H, W, C]

    def loss(module, p, o):
        out = module.apply(p, o)
        return jnp.sum(jax.nn.log_softmax(out.logits)[..., 0]) + jnp.sum(out.y ** 2) + jnp.sum(out.value)

    for fn in (lambda m, p, o: m.apply(p, o), lambda m, p, o: jax.grad(lambda q: loss(m, q, o))(p)):
        actual = jax.jit(jax.vmap(lambda p, o: fn(network, p, o)))(params, obs)
        expected = jax.jit(jax.vmap(lambda p, o: fn(reference, p, o)))(params, obs)
        jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, **CONV_TOL), actual, expected)
