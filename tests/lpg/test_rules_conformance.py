"""One conformance test over every registered update rule (`lpg.rules.RULES`).

For each rule, on a tiny tabular task: an agent built from the rule's output spec; one agent
update jitted equals the eager one; a vmap over lifetimes equals a loop; the loss is finite; a
learned rule (non-empty meta-parameters) gets a finite, non-zero meta-gradient on every η leaf;
the rule's `curve_stats` are among the update's stats; save_rule/load_rule rebuilds the same class
and configuration. A newly registered rule fails here until it is given a small configuration
below.
"""

import json
import os

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from launch import checkpoints
from lpg import agent as agent_lib
from lpg import rules
from lpg import training
from lpg import types

# Small configurations per registered kind (kept tiny: this runs in the default test suite).
SMALL_CONFIGS = {
    "lpg": {"hidden_size": 8, "y_dim": 4},
    "lpg_v": {"hidden_size": 8},
    "a2c": {},
    "ppo": {"epochs": 2, "minibatches": 3},
    # Sized for chain/short (a scalar state index, 2 actions) and B = 3; silu because with the
    # paper's leaky ReLU the biases' backpropagated meta-gradients are exactly 0 (lpg/rules/epg.py).
    "epg": {"obs_size": 1, "action_size": 2, "discrete": True, "num_envs": 3, "buffer_length": 6,
            "conv1_kernel": 3, "conv1_stride": 2, "conv1_channels": 2, "conv2_kernel": 2,
            "conv2_stride": 1, "conv2_channels": 2, "context_size": 4, "hidden_size": 4,
            "memory_size": 3, "activation": "silu"},
    # Empty meta-parameters: its η = {γ, λ} is per-lifetime rule state, learned within the
    # lifetime (tests/lpg/test_metagrad.py checks that meta-gradient); here it is a fixed rule.
    "metagrad": {"meta_learning_rates": (0.01,)},
}
T, B = 4, 3


def test_every_registered_rule_has_a_small_config():
    assert set(SMALL_CONFIGS) == set(rules.RULES), "add the new rule to SMALL_CONFIGS"


def _hyper(rule):
    return types.HyperParams(
        learning_rate=jnp.float32(20.0), discount=jnp.float32(0.9), entropy_cost=jnp.float32(0.01),
        value_cost=jnp.float32(0.05), td_lambda=jnp.float32(0.9),
        rule={name: jnp.float32(grid[0]) for name, grid in rule.hyper_grid.items()})


def _setup(kind):
    rule = rules.make_rule(kind, SMALL_CONFIGS[kind])
    task = envs.make("chain/short")
    agent = training.build_agent(task, rule.output_spec)
    meta_params = rule.init_params(jax.random.key(0))
    lifetimes = training.init_lifetimes(task, agent, jax.random.key(1), 2, B, rule=rule)
    return rule, task, agent, meta_params, lifetimes


def _update(rule, task, agent, meta_params, lifetime, key):
    """One learner step of one (unbatched) lifetime: (new agent state, stats)."""
    agent_state, _, stats = agent_lib.learner_step(
        rule, agent, meta_params, lifetime.agent, lifetime.carry, task.env, lifetime.env_params,
        _hyper(rule), key, T)
    return agent_state, stats


@pytest.mark.parametrize("kind", sorted(SMALL_CONFIGS))
def test_rule_conformance(kind):
    rule, task, agent, meta_params, lifetimes = _setup(kind)
    first = jax.tree.map(lambda x: x[0], lifetimes)
    key = jax.random.key(2)
    # The agent has exactly the heads the rule asked for.
    out = agent.apply(first.agent.params, first.carry.obs)
    assert (out.y is None) == (rule.output_spec.y_dim == 0)
    assert (out.value is None) == (not rule.output_spec.value)

    update = lambda lt, k: _update(rule, task, agent, meta_params, lt, k)
    eager_state, eager_stats = update(first, key)
    jit_state, jit_stats = jax.jit(update)(first, key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager_state, jit_state)
    assert np.isfinite(float(eager_stats["loss"])) and np.isfinite(float(jit_stats["loss"]))
    for name in rule.curve_stats:  # what launch/train_agent.py writes as per-update curves
        assert np.isfinite(float(jit_stats[name])), name

    keys = jax.random.split(key, 2)
    batched_state, batched_stats = jax.jit(jax.vmap(update))(lifetimes, keys)
    for i in range(2):
        lifetime = jax.tree.map(lambda x: x[i], lifetimes)
        loop_state, loop_stats = jax.jit(update)(lifetime, keys[i])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6),
                     batched_state, loop_state)
        np.testing.assert_allclose(batched_stats["loss"][i], loop_stats["loss"], rtol=1e-5)

    if not jax.tree.leaves(meta_params):
        return  # nothing shared across lifetimes to meta-learn (metagrad learns within one)

    # A learned rule: every η leaf reaches θ' (a random projection of all agent parameters).
    flat_theta, _ = jax.flatten_util.ravel_pytree(first.agent.params)
    weights = jax.random.normal(jax.random.key(3), flat_theta.shape)

    def outcome(eta):
        state, _ = _update(rule, task, agent, eta, first, key)
        return jnp.dot(jax.flatten_util.ravel_pytree(state.params)[0], weights)

    grads = jax.jit(jax.grad(outcome))(meta_params)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        name = jax.tree_util.keystr(path)
        assert np.all(np.isfinite(g)), name
        assert np.any(g != 0), f"zero meta-gradient on {name}"


@pytest.mark.parametrize("kind", sorted(SMALL_CONFIGS))
def test_saved_rule_rebuilds_its_own_class(kind, tmp_path):
    rule = rules.make_rule(kind, SMALL_CONFIGS[kind])
    meta_params = rule.init_params(jax.random.key(0))
    checkpoints.save_rule(str(tmp_path), rule, meta_params, {"note": "test"})
    loaded, loaded_params, provenance = checkpoints.load_rule(str(tmp_path))
    assert type(loaded) is type(rule) and loaded == rule and provenance == {"note": "test"}
    jax.tree.map(np.testing.assert_array_equal, loaded_params, meta_params)


def test_saved_metagenrl_objective_rebuilds(tmp_path):
    """MetaGenRL's L_α is not an UpdateRule but is saved and loaded like one."""
    objective = checkpoints.make_saved("metagenrl", {"lstm_size": 8, "action_layers": 1, "action_filters": 4})
    alpha = objective.init_params(jax.random.key(0))
    checkpoints.save_rule(str(tmp_path), objective, alpha, {"step": 3})
    loaded, loaded_alpha, provenance = checkpoints.load_rule(str(tmp_path))
    assert loaded == objective and provenance == {"step": 3}
    jax.tree.map(np.testing.assert_array_equal, loaded_alpha, alpha)
    with pytest.raises(ValueError, match="bad configuration for objective 'metagenrl'"):
        checkpoints.make_saved("metagenrl", {"lstm": 8})


def test_rule_json_without_kind_loads_as_lpg(tmp_path):
    """Rules saved before kinds were recorded were all LPG."""
    rule = rules.make_rule("lpg", SMALL_CONFIGS["lpg"])
    checkpoints.save_rule(str(tmp_path), rule, rule.init_params(jax.random.key(0)))
    path = os.path.join(str(tmp_path), checkpoints.RULE_CONFIG_FILE)
    with open(path) as f:
        saved = json.load(f)
    del saved["kind"], saved["rule"]["y_costs"]
    with open(path, "w") as f:
        json.dump(saved, f)
    loaded, _, _ = checkpoints.load_rule(str(tmp_path))
    assert loaded == rule


def test_unknown_kind_and_bad_config_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown rule kind 'ppo2'.*registered"):
        rules.make_rule("ppo2")
    with pytest.raises(ValueError, match="bad configuration for rule 'a2c'"):
        rules.make_rule("a2c", {"hidden_size": 3})
    rule = rules.make_rule("a2c")
    checkpoints.save_rule(str(tmp_path), rule, {})
    path = os.path.join(str(tmp_path), checkpoints.RULE_CONFIG_FILE)
    with open(path) as f:
        saved = json.load(f)
    saved["kind"] = "nonexistent"
    with open(path, "w") as f:
        json.dump(saved, f)
    with pytest.raises(checkpoints.CheckpointError, match="unknown rule kind 'nonexistent'"):
        checkpoints.load_rule(str(tmp_path))


def test_hyperparameters_must_match_the_rule():
    rule, task, agent, meta_params, lifetimes = _setup("lpg")
    hyper = _hyper(rule).replace(rule={})
    with pytest.raises(ValueError, match=r"needs HyperParams.rule with keys \['y_cost'\], got \[\]"):
        training.continue_training(task, rule, agent, meta_params, hyper, lifetimes,
                                   key=jax.random.key(0), num_updates=1, unroll_length=T)
