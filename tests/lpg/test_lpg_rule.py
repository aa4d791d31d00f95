"""Tests of the LPG rule network (lpg/rules/lpg.py): shapes, backwardness, episode resets, loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg import types
from lpg.rules import lpg as lpg_rule

T, B, M = 6, 3, 5


def _rollout(num_actions, key, terminated=None, truncated=None):
    k1, k2 = jax.random.split(key)
    if terminated is None:
        terminated = jnp.zeros((T, B), bool)
    if truncated is None:
        truncated = jnp.zeros((T, B), bool)
    return types.Rollout(
        observations=jnp.zeros((T + 1, B), jnp.int32),
        next_observations=jnp.zeros((T, B), jnp.int32),
        actions=jax.random.randint(k1, (T, B), 0, num_actions),
        rewards=jax.random.normal(k2, (T, B)),
        terminated=terminated,
        truncated=truncated,
        action_mask=jnp.ones((B, num_actions), bool),
        episode_returns=jnp.zeros((T, B)),
    )


def _agent_out(num_actions, key):
    k1, k2, k3 = jax.random.split(key, 3)
    return types.AgentOutput(
        logits=jax.random.normal(k1, (T + 1, B, num_actions)),
        y=jax.random.normal(k2, (T + 1, B, M)),
        value=jax.random.normal(k3, (T + 1, B)),
    )


def _next_out(agent_out, key):
    """Outputs on the true successors: agent_out[1:] (no episode end) with fresh y where
    `key` is given, to tell the two apart."""
    nxt = jax.tree.map(lambda x: x[1:], agent_out)
    if key is not None:
        nxt = nxt.replace(y=jax.random.normal(key, nxt.y.shape))
    return nxt


HYPER = types.HyperParams(
    learning_rate=jnp.float32(1.0), discount=jnp.float32(0.99), entropy_cost=jnp.float32(0.01),
    value_cost=jnp.float32(0.5), td_lambda=jnp.float32(0.95), rule={"y_cost": jnp.float32(0.5)},
)


@pytest.fixture(scope="module")
def rule_and_params():
    rule = lpg_rule.LPG(hidden_size=8, y_dim=M)
    return rule, rule.init_params(jax.random.key(0))


@pytest.mark.parametrize("num_actions", [2, 18])
def test_output_shapes_and_simplex(rule_and_params, num_actions):
    """The same η runs for any action count (the rule sees only per-step scalars)."""
    rule, params = rule_and_params
    agent_out = _agent_out(num_actions, jax.random.key(2))
    out = rule.targets(params, None, _rollout(num_actions, jax.random.key(1)), agent_out,
                       _next_out(agent_out, None), HYPER)
    assert out.pi_hat.shape == (T, B)
    assert out.y_hat.shape == (T, B, M)
    np.testing.assert_allclose(out.y_hat.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(out.pi_hat))


def _pi_hat_jacobian_wrt_rewards(rule, params, terminated, truncated=None):
    rollout = _rollout(2, jax.random.key(3), terminated, truncated)
    agent_out = _agent_out(2, jax.random.key(4))
    next_out = _next_out(agent_out, None)

    def pi_hat_of(rewards):
        return rule.targets(params, None, rollout.replace(rewards=rewards), agent_out, next_out, HYPER).pi_hat[:, 0]

    return np.asarray(jax.jacobian(pi_hat_of)(rollout.rewards)[:, :, 0])  # [T_out, T_in]


def test_backward_in_time(rule_and_params):
    """π̂_t depends on r_s only for s >= t (the LSTM runs backward)."""
    rule, params = rule_and_params
    jac = _pi_hat_jacobian_wrt_rewards(rule, params, jnp.zeros((T, B), bool))
    for t in range(T):
        for s in range(T):
            if s < t:
                assert jac[t, s] == 0.0, (t, s)
            else:
                assert jac[t, s] != 0.0, (t, s)


def test_terminal_resets_block_information(rule_and_params):
    """With an episode ending at t0, nothing after t0 reaches π̂ at or before t0."""
    rule, params = rule_and_params
    t0 = 2
    terminated = jnp.zeros((T, B), bool).at[t0].set(True)
    jac = _pi_hat_jacobian_wrt_rewards(rule, params, terminated)
    assert np.all(jac[: t0 + 1, t0 + 1:] == 0.0)
    assert np.all(jac[t0 + 1:, t0 + 1:][np.triu_indices(T - t0 - 1)] != 0.0)
    assert jac[0, t0] != 0.0  # within the first episode information still flows backward


def test_truncation_resets_the_carry_too(rule_and_params):
    rule, params = rule_and_params
    t0 = 2
    truncated = jnp.zeros((T, B), bool).at[t0].set(True)
    jac = _pi_hat_jacobian_wrt_rewards(rule, params, jnp.zeros((T, B), bool), truncated)
    assert np.all(jac[: t0 + 1, t0 + 1:] == 0.0)
    assert jac[0, t0] != 0.0


def _targets_at_boundary(rule, params, kind, y_first_next_episode=0.0, y_final_obs=0.0):
    """Targets with an episode ending at t0 = 2 in env 0 ("terminated" or "truncated"); the two
    extra arguments shift one y logit of the next episode's first observation (agent_out.y[t0 + 1]) and y
    of the finished episode's last observation (next_out.y[t0])."""
    t0 = 2
    flag = jnp.zeros((T, B), bool).at[t0, 0].set(True)
    none = jnp.zeros((T, B), bool)
    rollout = _rollout(3, jax.random.key(9), *((flag, none) if kind == "terminated" else (none, flag)))
    agent_out = _agent_out(3, jax.random.key(10))
    next_out = _next_out(agent_out, jax.random.key(11))  # the true s_{t+1}: differs from agent_out[1:]
    agent_out = agent_out.replace(y=agent_out.y.at[t0 + 1, 0, 0].add(y_first_next_episode))
    next_out = next_out.replace(y=next_out.y.at[t0, 0, 0].add(y_final_obs))
    return rule.targets(params, None, rollout, agent_out, next_out, HYPER)


@pytest.mark.parametrize("kind", ["terminated", "truncated"])
def test_next_episode_cannot_change_targets_at_or_before_the_boundary(rule_and_params, kind):
    """The issue's leak: y of the next episode's first observation, fed as φ(y(s_{t+1})) at the
    boundary, changed π̂ at t = 2, 1, 0. Now it cannot reach steps <= t0, for either episode end."""
    rule, params = rule_and_params
    base = _targets_at_boundary(rule, params, kind)
    moved = _targets_at_boundary(rule, params, kind, y_first_next_episode=3.0)
    np.testing.assert_array_equal(moved.pi_hat[:3, 0], base.pi_hat[:3, 0])
    np.testing.assert_array_equal(moved.y_hat[:3, 0], base.y_hat[:3, 0])
    assert not np.allclose(moved.pi_hat[3, 0], base.pi_hat[3, 0])  # it is the input of step t0 + 1


def test_successor_embedding_is_zero_after_termination_and_bootstraps_after_truncation(rule_and_params):
    rule, params = rule_and_params
    for kind, should_change in (("terminated", False), ("truncated", True)):
        base = _targets_at_boundary(rule, params, kind)
        moved = _targets_at_boundary(rule, params, kind, y_final_obs=3.0)
        changed = not np.allclose(moved.pi_hat[:3, 0], base.pi_hat[:3, 0])
        assert changed == should_change, kind
        np.testing.assert_array_equal(moved.pi_hat[3:, 0], base.pi_hat[3:, 0])


def test_agent_loss_gradient_is_eq2(rule_and_params):
    """∂L/∂logits equals −π̂ ∇log π(a) / (T·B); ∂L/∂y equals α_y ∇KL(y‖ŷ)/(T·B)."""
    rule, params = rule_and_params
    rollout = _rollout(3, jax.random.key(5))
    agent_out = _agent_out(3, jax.random.key(6))
    targets = rule.targets(params, None, rollout, agent_out, _next_out(agent_out, None), HYPER)

    grads = jax.grad(lambda out: rule.agent_loss(params, None, out, rollout, targets, HYPER)[0])(agent_out)
    probs = jax.nn.softmax(agent_out.logits[:-1])
    onehot = jax.nn.one_hot(rollout.actions, 3)
    expected_logits = -(onehot - probs) * targets.pi_hat[..., None] / (T * B)
    np.testing.assert_allclose(grads.logits[:-1], expected_logits, atol=1e-6)
    np.testing.assert_allclose(grads.logits[-1], 0.0)

    y = jax.nn.softmax(agent_out.y[:-1])
    kl = lambda y_logits: jnp.sum(
        jax.nn.softmax(y_logits) * (jax.nn.log_softmax(y_logits) - jnp.log(targets.y_hat)))
    expected_y = HYPER.rule["y_cost"] * jax.grad(kl)(agent_out.y[:-1]) / (T * B)
    np.testing.assert_allclose(grads.y[:-1], expected_y, atol=1e-6)
    assert np.all(np.isfinite(y))

    _, logs = rule.agent_loss(params, None, agent_out, rollout, targets, HYPER)
    np.testing.assert_allclose(logs["pi_hat_abs"], np.abs(targets.pi_hat).mean(), rtol=1e-6)
    np.testing.assert_allclose(logs["pi_hat_std"], np.std(targets.pi_hat), rtol=1e-5)


def test_baseline_variant_trains_value_towards_pi_hat():
    rule = lpg_rule.LPG(hidden_size=8, y_dim=M, use_baseline=True)
    params = rule.init_params(jax.random.key(0))
    rollout = _rollout(3, jax.random.key(7))
    agent_out = _agent_out(3, jax.random.key(8))
    targets = rule.targets(params, None, rollout, agent_out, _next_out(agent_out, None), HYPER)
    grads = jax.grad(lambda out: rule.agent_loss(params, None, out, rollout, targets, HYPER)[0])(agent_out)
    expected = (agent_out.value[:-1] - targets.pi_hat) / (T * B)
    np.testing.assert_allclose(grads.value[:-1], expected, atol=1e-6)


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match="hidden_size"):
        lpg_rule.LPG(hidden_size=0)
    with pytest.raises(ValueError, match="y_dim"):
        lpg_rule.LPG(y_dim=-3)


def test_no_softmax_ablation_is_squared_loss_on_raw_y():
    """Fig. 7 'LPG w/o Softmax(y)': y ∈ R^m used raw (also as the rule's input), ŷ = Dense(m)
    unconstrained, and the y term of Eq. 2 is ‖y − ŷ‖², so ∂L/∂y = 2 α_y (y − ŷ)/(T·B)."""
    rule = lpg_rule.LPG(hidden_size=8, y_dim=M, y_softmax=False)
    params = rule.init_params(jax.random.key(0))
    rollout = _rollout(3, jax.random.key(12))
    agent_out = _agent_out(3, jax.random.key(13))
    targets = rule.targets(params, None, rollout, agent_out, _next_out(agent_out, None), HYPER)
    assert not np.allclose(targets.y_hat.sum(-1), 1.0)  # not a softmax
    grads = jax.grad(lambda out: rule.agent_loss(params, None, out, rollout, targets, HYPER)[0])(agent_out)
    expected = 2 * HYPER.rule["y_cost"] * (agent_out.y[:-1] - targets.y_hat) / (T * B)
    np.testing.assert_allclose(grads.y[:-1], expected, atol=1e-6)
    # The raw y (not its softmax) is what the rule reads: adding a constant to every logit, which
    # leaves a softmax unchanged, changes π̂.
    shifted = agent_out.replace(y=agent_out.y + 1.0)
    moved = rule.targets(params, None, rollout, shifted, _next_out(shifted, None), HYPER)
    assert not np.allclose(moved.pi_hat, targets.pi_hat)
