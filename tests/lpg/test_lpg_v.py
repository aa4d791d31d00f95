"""Tests of the LPG-V rule (lpg/rules/lpg_v.py): no y anywhere, value inputs, backwardness, loss,
and its meta-gradient through LPG's meta-objective (lpg/meta/objective.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from lpg import agent as agent_lib
from lpg import returns as returns_lib
from lpg import training
from lpg import types
from lpg.meta import gradient
from lpg.meta import objective as objective_lib
from lpg.meta import population
from lpg.meta import trainer as trainer_lib
from lpg.rules import lpg_v

T, B, A = 6, 3, 3

HYPER = types.HyperParams(
    learning_rate=jnp.float32(1.0), discount=jnp.float32(0.9), entropy_cost=jnp.float32(0.01),
    value_cost=jnp.float32(0.5), td_lambda=jnp.float32(0.8), rule={"v_cost": jnp.float32(0.05)},
)


@pytest.fixture(scope="module")
def rule_and_params():
    rule = lpg_v.LPGV(hidden_size=8)
    return rule, rule.init_params(jax.random.key(0))


def _rollout(key, terminated=None, truncated=None):
    k1, k2 = jax.random.split(key)
    none = jnp.zeros((T, B), bool)
    return types.Rollout(
        observations=jnp.zeros((T + 1, B), jnp.int32),
        next_observations=jnp.zeros((T, B), jnp.int32),
        actions=jax.random.randint(k1, (T, B), 0, A),
        rewards=jax.random.normal(k2, (T, B)),
        terminated=none if terminated is None else terminated,
        truncated=none if truncated is None else truncated,
        action_mask=jnp.ones((B, A), bool),
        episode_returns=jnp.zeros((T, B)),
    )


def _outputs(key, with_y=False):
    """(agent_out [T+1, B], next_out [T, B]); next_out's values differ from agent_out[1:] so the
    two can be told apart. with_y: also give both a y field (that LPG-V must never read)."""
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    agent_out = types.AgentOutput(
        logits=jax.random.normal(k1, (T + 1, B, A)), value=jax.random.normal(k2, (T + 1, B)),
        y=jax.random.normal(k4, (T + 1, B, 4)) if with_y else None)
    next_out = jax.tree.map(lambda x: x[1:], agent_out).replace(value=jax.random.normal(k3, (T, B)))
    if with_y:
        next_out = next_out.replace(y=jax.random.normal(k5, (T, B, 4)))
    return agent_out, next_out


def _pi_hat(rule, params, rollout, agent_out, next_out):
    return rule.targets(params, None, rollout, agent_out, next_out, HYPER).pi_hat


def _targets_fn(rule):
    return jax.jit(lambda params, rollout, agent_out, next_out: rule.targets(
        params, None, rollout, agent_out, next_out, HYPER))


def test_agent_has_a_value_head_and_no_y_head():
    rule = lpg_v.LPGV(hidden_size=8)
    assert rule.output_spec == types.OutputSpec(y_dim=0, value=True)
    task = envs.make("tabular/dense")
    agent = training.build_agent(task, rule.output_spec)
    params = agent.network.init(jax.random.key(0), jnp.int32(0))
    assert set(params["params"]) == {"logits", "value"}  # no y table
    out = agent.apply(params, jnp.zeros((T + 1, B), jnp.int32))
    assert out.y is None and out.value.shape == (T + 1, B)
    assert rule.hyper_grid == {"v_cost": (0.01, 0.05, 0.2)}
    # η has no embedding φ and no ŷ head.
    assert set(rule.init_params(jax.random.key(0))["params"]) == {"lstm", "pi_hat"}


def test_targets_ignore_anything_y_like_but_follow_the_values(rule_and_params):
    rule, params = rule_and_params
    targets = _targets_fn(rule)
    rollout = _rollout(jax.random.key(1))
    agent_out, next_out = _outputs(jax.random.key(2), with_y=True)
    base = targets(params, rollout, agent_out, next_out)
    assert base.y_hat is None and base.pi_hat.shape == (T, B) and base.value_target.shape == (T, B)

    # y on s_t and on s_{t+1} moved (by a lot), or removed: bit-identical targets.
    moved_y = targets(params, rollout, agent_out.replace(y=agent_out.y + 10.0),
                      next_out.replace(y=-next_out.y * 7.0))
    no_y = rule.targets(params, None, rollout, agent_out.replace(y=None), next_out.replace(y=None), HYPER)
    for other in (moved_y, no_y):
        np.testing.assert_allclose(other.pi_hat, base.pi_hat, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(other.value_target, base.value_target, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(moved_y.pi_hat, base.pi_hat)  # same program: bit-identical

    # The value inputs do reach π̂ (so the test above is not vacuous): V(s_t) and V(s_{t+1}).
    moved_v = targets(params, rollout, agent_out.replace(value=agent_out.value.at[2, 0].add(1.0)), next_out)
    assert not np.allclose(moved_v.pi_hat[:, 0], base.pi_hat[:, 0])
    moved_next_v = targets(params, rollout, agent_out, next_out.replace(value=next_out.value + 1.0))
    assert not np.allclose(moved_next_v.pi_hat, base.pi_hat)


def _jacobian(rule, params, wrt, terminated=None, truncated=None):
    """∂π̂_t/∂input_s for env 0, [T_out, T_in], wrt "rewards" or "values" (V(s_t))."""
    rollout = _rollout(jax.random.key(3), terminated, truncated)
    agent_out, next_out = _outputs(jax.random.key(4))

    def pi_hat_of(x):
        if wrt == "rewards":
            return _pi_hat(rule, params, rollout.replace(rewards=x), agent_out, next_out)[:, 0]
        return _pi_hat(rule, params, rollout, agent_out.replace(value=agent_out.value.at[:-1].set(x)),
                       next_out)[:, 0]

    x = rollout.rewards if wrt == "rewards" else agent_out.value[:-1]
    return np.asarray(jax.jacobian(pi_hat_of)(x)[:, :, 0])


@pytest.mark.parametrize("wrt", ["rewards", "values"])
def test_backward_in_time(rule_and_params, wrt):
    """π̂_t depends on step s's inputs only for s >= t (LPG's backward LSTM)."""
    rule, params = rule_and_params
    jac = _jacobian(rule, params, wrt)
    for t in range(T):
        for s in range(T):
            assert (jac[t, s] != 0.0) == (s >= t), (wrt, t, s, jac[t, s])


@pytest.mark.parametrize("kind", ["terminated", "truncated"])
def test_episode_end_blocks_information(rule_and_params, kind):
    rule, params = rule_and_params
    t0 = 2
    flag = jnp.zeros((T, B), bool).at[t0].set(True)
    jac = _jacobian(rule, params, "rewards", **{kind: flag})
    assert np.all(jac[: t0 + 1, t0 + 1:] == 0.0)
    assert jac[0, t0] != 0.0


def test_successor_value_is_ignored_after_termination_and_read_after_truncation(rule_and_params):
    rule, params = rule_and_params
    t0 = 2
    flag = jnp.zeros((T, B), bool).at[t0, 0].set(True)
    agent_out, next_out = _outputs(jax.random.key(5))
    moved_next = next_out.replace(value=next_out.value.at[t0, 0].add(3.0))
    for kind, should_change in (("terminated", False), ("truncated", True)):
        rollout = _rollout(jax.random.key(6), **{kind: flag})
        base = _pi_hat(rule, params, rollout, agent_out, next_out)
        moved = _pi_hat(rule, params, rollout, agent_out, moved_next)
        assert (not np.allclose(moved[: t0 + 1, 0], base[: t0 + 1, 0])) == should_change, kind


def test_agent_loss_is_lpg_policy_term_plus_td_lambda_value_loss(rule_and_params):
    """∂L/∂logits = −π̂ ∇log π(a)/(T·B) (Eq. 2's policy term); ∂L/∂V = α_V (V − G^λ)/(T·B) with
    G^λ A2C's λ-return of the agent's own values (true successors, episode ends)."""
    rule, params = rule_and_params
    terminated = jnp.zeros((T, B), bool).at[1, 0].set(True)
    truncated = jnp.zeros((T, B), bool).at[3, 1].set(True)
    rollout = _rollout(jax.random.key(7), terminated, truncated)
    agent_out, next_out = _outputs(jax.random.key(8))
    targets = rule.targets(params, None, rollout, agent_out, next_out, HYPER)
    expected_returns = returns_lib.lambda_returns(
        rollout.rewards, rollout.terminated, rollout.truncated, next_out.value, HYPER.discount,
        HYPER.td_lambda)
    np.testing.assert_allclose(targets.value_target, expected_returns, rtol=1e-6)
    # By hand at the termination: G = r (nothing bootstrapped).
    np.testing.assert_allclose(targets.value_target[1, 0], rollout.rewards[1, 0], rtol=1e-6)

    grads = jax.grad(lambda out: rule.agent_loss(params, None, out, rollout, targets, HYPER)[0])(agent_out)
    probs = jax.nn.softmax(agent_out.logits[:-1])
    onehot = jax.nn.one_hot(rollout.actions, A)
    np.testing.assert_allclose(grads.logits[:-1], -(onehot - probs) * targets.pi_hat[..., None] / (T * B),
                               atol=1e-6)
    expected_value_grad = HYPER.rule["v_cost"] * (agent_out.value[:-1] - expected_returns) / (T * B)
    np.testing.assert_allclose(grads.value[:-1], expected_value_grad, atol=1e-6)
    np.testing.assert_allclose(grads.logits[-1], 0.0)
    np.testing.assert_allclose(grads.value[-1], 0.0)


def test_meta_objective_drops_y_terms_and_keeps_pi_hat_l2():
    """Eq. 4 for a rule without y: β1 H(y) and β3 ‖ŷ‖² vanish, β2 E[π̂²] stays (hand-derived)."""
    t, b, k = 3, 2, 2
    out = types.AgentOutput(logits=jnp.zeros((t + 1, b, 2)), value=jnp.zeros((t + 1, b)))
    rollout = types.Rollout(
        observations=jnp.zeros((t + 1, b), jnp.int32), next_observations=jnp.zeros((t, b), jnp.int32),
        actions=jnp.zeros((t, b), jnp.int32), rewards=jnp.zeros((t, b)),
        terminated=jnp.zeros((t, b), bool), truncated=jnp.zeros((t, b), bool),
        action_mask=jnp.ones((b, 2), bool), episode_returns=jnp.zeros((t, b)))
    targets = types.RuleOutput(pi_hat=jnp.full((k, t, b), 2.0), value_target=jnp.zeros((k, t, b)))
    obj = objective_lib.MetaObjective(y_entropy_cost=0.2, pi_hat_l2_cost=0.3, y_hat_l2_cost=0.4)
    loss, logs = obj.loss(out, rollout, jnp.full((t, b), 1.5), targets, HYPER)
    np.testing.assert_allclose(loss, -np.log(0.5) * 1.5 - 0.01 * np.log(2) + 0.3 * 4.0, rtol=1e-5)
    assert float(logs["meta_y_entropy"]) == 0.0 and float(logs["y_hat_l2"]) == 0.0


def test_meta_gradient_through_k_updates_is_finite_and_nonzero_on_every_leaf():
    """The whole meta-training path (K = 2 updates of a tabular agent, Eq. 4 on a fresh rollout)."""
    rule = lpg_v.LPGV(hidden_size=8)
    task = envs.make("chain/short")
    critic = agent_lib.Agent(
        network=training.build_agent(task, types.OutputSpec(value=True)).network, optimiser="adam")
    spec = population.GroupSpec(
        task=task, agent=training.build_agent(task, rule.output_spec), critic=critic, rule=rule,
        num_lifetimes=2, num_envs=4, lifetime_steps=10_000, critic_learning_rate=0.1)
    trainer = trainer_lib.MetaTrainer(rule=rule, groups=(spec,), num_updates=2, unroll_length=5)
    state = trainer.init(jax.random.key(0))
    lifetime = jax.tree.map(lambda x: x[0], state.groups[0].lifetimes)
    assert set(lifetime.hyper.rule) == {"v_cost"}

    def loss(meta_params):
        return gradient.lifetime_meta_loss(
            meta_params, lifetime, jax.random.key(1), rule=rule, spec=spec, objective=trainer.objective,
            num_updates=trainer.num_updates, unroll_length=trainer.unroll_length)[0]

    grads = jax.jit(jax.grad(loss))(state.meta_params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(leaf)), path
        assert np.any(leaf != 0.0), f"zero meta-gradient on {jax.tree_util.keystr(path)}"


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="hidden_size"):
        lpg_v.LPGV(hidden_size=0)
    with pytest.raises(ValueError, match="value_costs"):
        lpg_v.LPGV(value_costs=())
    with pytest.raises(ValueError, match="matmul_dtype"):
        lpg_v.LPGV(matmul_dtype="float16")
    assert lpg_v.LPGV(value_costs=[0.1, 1]).value_costs == (0.1, 1.0)  # JSON round trip
