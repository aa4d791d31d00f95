"""Tests of meta-gradient RL of γ and λ (lpg/rules/metagrad.py): the meta-gradient against finite
differences of J̄(τ', θ'(η)) (tabular SGD and MLP Adam agents, float64), η standing still where γ
and λ cannot matter (one-step episodes) but moving where they do, learning on a delayed chain,
the trace decay, configuration errors, and the launcher's sweep over the rule's own settings."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import envs
from envs import base as env_base
from envs import task as task_lib
from experiments.configs import metagrad as metagrad_configs
from launch import eval_report
from lpg import agent as agent_lib
from lpg import rules
from lpg import training
from lpg import types
from lpg.rules import a2c
from lpg.rules import metagrad

T, B = 16, 8  # τ0 and τ1 together are longer than any chain: τ1 revisits τ0's table entries
# One rule for the training tests (γ̄ = the initial γ = 0.9), so they share one compilation per task.
RULE = metagrad.MetaGrad(meta_discount=0.9, meta_td_lambda=1.0, meta_learning_rates=(0.01,))


def _hyper(learning_rate, meta_lr=0.01, discount=0.9, td_lambda=0.9, dtype=jnp.float32):
    return types.HyperParams(
        learning_rate=jnp.asarray(learning_rate, dtype), discount=jnp.asarray(discount, dtype),
        entropy_cost=jnp.asarray(0.01, dtype), value_cost=jnp.asarray(0.05, dtype),
        td_lambda=jnp.asarray(td_lambda, dtype), rule={"meta_lr": jnp.asarray(meta_lr, dtype)})


def _to_f64(tree):
    """Floating leaves as float64 (integers, booleans and keys unchanged)."""
    return jax.tree.map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


# ------------------------------------------------------------------- (1) meta-gradient == FD


@pytest.mark.parametrize("task_name, learning_rate",
                         [("chain/short_noisy", 40.0), ("chain/distractor", 1e-2)])
def test_meta_gradient_matches_finite_differences_of_the_meta_objective(task_name, learning_rate):
    """∂J̄(τ1, θ1(η))/∂(logit γ, logit λ), J̄'s targets held fixed (a semi-gradient, like the agent's
    loss), equals central differences through the whole agent update θ0 → θ1 on τ0.

    chain/short_noisy (±1 rewards on every step, so every return depends on γ and λ): a tabular
    agent with SGD; chain/distractor: an MLP with Adam, differentiated through Adam (finite thanks
    to eps_root > 0, SPEC §5)."""
    with jax.enable_x64(True):
        rule = metagrad.MetaGrad(meta_discount=0.95, meta_td_lambda=0.7, meta_entropy_cost=0.01,
                                 meta_learning_rates=(0.05,))
        task = envs.make(task_name)
        agent = training.build_agent(task, rule.output_spec)
        hyper = _hyper(learning_rate, meta_lr=0.05, discount=0.8, td_lambda=0.6, dtype=jnp.float64)
        lifetime = training.init_lifetime(task, agent, jax.random.key(0), B, rule=rule)
        keys = iter(jax.random.split(jax.random.key(1), 16))
        unroll_fn = jax.jit(lambda params, carry, key: agent_lib.unroll(
            agent, params, task.env, lifetime.env_params, carry, key, T))

        def unroll(params, carry):
            rollout, carry = unroll_fn(params, carry, next(keys))
            return _to_f64(rollout), carry

        # A2C updates first, so that episodes have ended (rewards seen), V is far from 0 and (for
        # Adam) the moments from their start.
        params = _to_f64(lifetime.agent.params)
        state = agent_lib.AgentState(params=params, opt_state=agent.transform().init(params))
        carry = lifetime.carry
        warm_up = jax.jit(lambda s, r: agent_lib.agent_update(a2c.A2C(), agent, {}, s, r, hyper)[0])
        for _ in range(8):
            rollout, carry = unroll(state.params, carry)
            state = warm_up(state, rollout)
        rule_state = _to_f64(rule.init_state(jax.random.key(2), state.params))
        shift = jnp.asarray([0.3, -0.4], jnp.float64)  # away from the initial γ, λ
        state0 = state.replace(rule_state=rule_state.replace(logit_shift=shift))

        update = jax.jit(lambda s, r: agent_lib.agent_update(rule, agent, {}, s, r, hyper))
        tau0, carry = unroll(state0.params, carry)
        state1, _, _ = update(state0, tau0)
        # Update 0 has nothing to judge: η is the one given, and it made θ1.
        np.testing.assert_array_equal(state1.rule_state.logit_shift, shift)
        tau1, carry = unroll(state1.params, carry)
        state2, _, stats = update(state1, tau1)
        got = np.asarray(state2.rule_state.meta_grad)
        np.testing.assert_array_equal(
            got, [stats["meta_grad_discount"], stats["meta_grad_td_lambda"]])

        out1 = agent.apply(state1.params, tau1.observations, tau1.action_mask)
        next1 = agent.apply(state1.params, tau1.next_observations, tau1.action_mask)
        fixed_targets = rule.meta_targets(tau1, out1, next1, hyper)

        @jax.jit
        def meta_objective(logit_shift):
            start = state0.replace(rule_state=state0.rule_state.replace(logit_shift=logit_shift))
            theta1 = agent_lib.agent_update(rule, agent, {}, start, tau0, hyper)[0].params
            out = agent.apply(theta1, tau1.observations, tau1.action_mask)
            return rule.meta_loss(out, tau1, fixed_targets, hyper)

        eps = 1e-4
        fd = np.array([(meta_objective(shift + eps * e) - meta_objective(shift - eps * e)) / (2 * eps)
                       for e in jnp.eye(2, dtype=jnp.float64)])
    assert np.all(np.isfinite(got)) and np.all(np.abs(got) > 1e-9), got
    np.testing.assert_allclose(got, fd, rtol=1e-4, atol=1e-12)


# ------------------------------------------------ (2) η stands still when γ, λ cannot matter


class OneStepBandit(env_base.Environment):
    """Every episode is one step from one state: action 1 pays 1 with probability 0.8, action 0
    with probability 0.2, then the episode terminates. No return depends on γ or λ."""

    num_states = 2  # 0: the only state acted in; 1: the terminal state (final observation only)

    @property
    def default_params(self):
        return env_base.EnvParams(max_steps_in_episode=10)

    def reset_env(self, key, params):
        return jnp.int32(0), env_base.EnvState(time=0)

    def step_env(self, key, state, action, params):
        reward = jax.random.bernoulli(key, jnp.where(action == 1, 0.8, 0.2)).astype(jnp.float32)
        return jnp.int32(1), env_base.EnvState(time=state.time + 1), reward, jnp.bool_(True), {}

    def action_space(self, params):
        return env_base.Discrete(2)


BANDIT = task_lib.Task(
    name="test/one_step_bandit", env=OneStepBandit(),
    sample_params=lambda key: OneStepBandit().default_params,
    lifetime_steps=10_000, agent=task_lib.AgentSpec("tabular", optimiser="sgd"), learning_rates=(1.0,))


CHAIN_UPDATES = 120  # one compilation for the two chain/short tests


@functools.lru_cache(maxsize=None)
def _train_fn(task_name, num_updates, num_envs=16, unroll_length=20):
    task = BANDIT if task_name == BANDIT.name else envs.make(task_name)
    return training.make_train_fn(task, RULE, num_lifetimes=2, num_updates=num_updates,
                                  num_envs=num_envs, unroll_length=unroll_length)


def test_eta_stays_put_when_gamma_and_lambda_cannot_matter_and_moves_when_they_do():
    """γ̄ = γ0 and one-step episodes: G^η = r for every η, so ∂θ'/∂η = 0, the meta-gradient is 0
    and even a large β leaves γ, λ exactly where they started, while the agent learns. The same
    rule on a delayed chain (where they matter) moves them."""
    hyper = _hyper(learning_rate=1.0, meta_lr=0.1)
    _, stats = _train_fn(BANDIT.name, 100)(jax.random.key(0), hyper, {})
    for name in ("discount", "td_lambda"):
        np.testing.assert_allclose(stats[name], 0.9, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(stats[f"meta_grad_{name}"], 0.0)
    reward = np.asarray(stats["return_sum"] / stats["return_count"])  # [L, U] mean reward
    assert reward[:, -20:].mean() > reward[:, :5].mean() + 0.2  # the policy itself did learn

    _, chain_stats = _train_fn("chain/short", CHAIN_UPDATES)(jax.random.key(0), hyper, {})
    moved = np.abs(np.asarray(chain_stats["discount"][:, -1]) - 0.9)
    assert np.all(moved > 1e-3), moved
    # Update 0 has no previous update to judge; afterwards the meta-gradient is mostly non-zero.
    np.testing.assert_array_equal(chain_stats["meta_grad_discount"][:, 0], 0.0)
    assert np.mean(np.asarray(chain_stats["meta_grad_discount"][:, 1:]) != 0.0) > 0.5


# ------------------------------------------------------------------------------ (3) learning


def test_agent_learns_a_delayed_chain_while_learning_gamma_and_lambda():
    """chain/short pays ±1 after 5–30 steps for the first action: the uniform policy (α_lr = 0,
    the same lifetimes) averages about 0, the trained agents close to 1."""
    train = _train_fn("chain/short", CHAIN_UPDATES)
    states, stats = train(jax.random.key(3), _hyper(learning_rate=40.0), {})
    _, random_stats = train(jax.random.key(3), _hyper(learning_rate=0.0), {})
    final = lambda s: np.asarray(training.mean_episode_return(s, window=10))[:, -30:].mean(axis=1)
    assert np.all(np.abs(final(random_stats)) < 0.4), final(random_stats)
    assert np.all(final(stats) > 0.7), final(stats)
    for name in ("discount", "td_lambda"):
        values = np.asarray(stats[name])
        assert np.all(np.isfinite(values)) and np.all((values > 0) & (values < 1)), name
    # η lives in the per-lifetime rule state: the last update's logged γ, λ are the state's.
    shift = states.agent.rule_state.logit_shift  # [L, 2]
    gamma, lam = jax.vmap(lambda s: metagrad.eta_from_shift(_hyper(40.0), s))(shift)
    assert np.all(np.asarray(states.agent.rule_state.num_updates) == CHAIN_UPDATES)
    np.testing.assert_allclose(gamma, stats["discount"][:, -1], rtol=1e-6)
    np.testing.assert_allclose(lam, stats["td_lambda"][:, -1], rtol=1e-6)
    assert np.all(np.abs(np.asarray(gamma) - 0.9) > 1e-3)  # and it was learned


def test_trace_decay_accumulates_the_update_jacobians():
    """z' = μ z + ∂θ'/∂η: with μ = 1 the trace after two updates is the sum of the μ = 0 traces."""
    task = envs.make("chain/short")
    hyper = _hyper(learning_rate=40.0, meta_lr=0.0)  # β = 0: η fixed, so the traces are comparable

    def traces(trace_decay):
        rule = metagrad.MetaGrad(meta_learning_rates=(0.01,), trace_decay=trace_decay)
        agent = training.build_agent(task, rule.output_spec)
        lifetime = training.init_lifetime(task, agent, jax.random.key(0), B, rule=rule)
        step = jax.jit(lambda s, c, k: agent_lib.learner_step(
            rule, agent, {}, s, c, task.env, lifetime.env_params, hyper, k, T))
        state, carry, out = lifetime.agent, lifetime.carry, []
        for i in range(2):
            state, carry, _ = step(state, carry, jax.random.key(10 + i))
            out.append(state.rule_state.trace)
        return out

    (first, second), (_, summed) = traces(0.0), traces(1.0)
    jax.tree.map(lambda a, b, s: np.testing.assert_allclose(a + b, s, rtol=1e-5, atol=1e-6),
                 first, second, summed)
    assert any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(second))


# ------------------------------------------------------------------------ (4) configuration


@pytest.mark.parametrize("field, value, message", [
    ("meta_discount", 0.0, r"MetaGrad.meta_discount must be a number in \(0, 1\], got 0.0"),
    ("meta_discount", 1.5, r"MetaGrad.meta_discount must be a number in \(0, 1\], got 1.5"),
    ("meta_td_lambda", -0.1, r"MetaGrad.meta_td_lambda must be a number in \[0, 1\], got -0.1"),
    ("trace_decay", float("nan"), r"MetaGrad.trace_decay must be a number in \[0, 1\], got nan"),
    ("trace_decay", "0.5", r"MetaGrad.trace_decay must be a number in \[0, 1\], got '0.5'"),
    ("meta_entropy_cost", -1.0, r"MetaGrad.meta_entropy_cost must be a finite number >= 0, got -1.0"),
    ("meta_learning_rates", (),
     r"MetaGrad.meta_learning_rates .* non-empty list of finite numbers > 0, got \(\)"),
    ("meta_learning_rates", (0.01, 0.0), r"meta_learning_rates .* got \(0.01, 0.0\)"),
    ("meta_learning_rates", "fast", r"meta_learning_rates .* got 'fast'"),
    ("meta_learning_rates", ("fast",), r"meta_learning_rates .* got \('fast',\)"),
    ("learn_discount", "yes", r"MetaGrad.learn_discount must be True or False, got 'yes'"),
])
def test_bad_configuration_is_refused_with_the_value_and_what_is_allowed(field, value, message):
    with pytest.raises(ValueError, match=message):
        metagrad.MetaGrad(**{field: value})
    with pytest.raises(ValueError, match=message):  # the same through the registry
        rules.make_rule("metagrad", {field: value})


def test_experiment_config_builds_the_rule_and_sweeps_its_own_settings():
    config = metagrad_configs.get_config("cpu")
    rule = eval_report.baseline_rule(config)
    assert isinstance(rule, metagrad.MetaGrad) and eval_report.BASELINE_LABELS[rule.KIND] == "MetaGrad"
    assert rule.meta_learning_rates == tuple(config.metagrad.meta_learning_rates)
    task = envs.make(config.tasks.split(",")[0])
    candidates = eval_report.a2c_sweep(
        task, learning_rates=config.sweep.learning_rates, value_costs=config.sweep.value_costs,
        entropy_costs=config.sweep.entropy_costs, discount=config.hyper.discount,
        td_lambda=config.hyper.td_lambda, discounts=config.sweep.discounts, rule_grid=rule.hyper_grid)
    sweep = config.sweep
    expected = (len(sweep.learning_rates or task.learning_rates) * len(sweep.value_costs)
                * len(sweep.entropy_costs) * len(sweep.discounts) * len(rule.meta_learning_rates))
    assert len(candidates) == expected > 1
    assert {float(h.discount) for h in candidates.values()} == set(sweep.discounts)
    assert {float(h.rule["meta_lr"]) for h in candidates.values()} == set(rule.meta_learning_rates)
    assert all("β=" in name for name in candidates)

    with pytest.raises(ValueError, match="unknown metagrad config preset 'atari'; allowed"):
        metagrad_configs.get_config("atari")
    bad = ml_collections.ConfigDict(config.to_dict())
    bad.metagrad.meta_discount = 2.0
    with pytest.raises(ValueError, match=r"MetaGrad.meta_discount must be a number in \(0, 1\], got 2.0"):
        eval_report.baseline_rule(bad)
