"""Tests of LPG meta-training (lpg/meta/): meta-gradients, critic, bandit, resets, robustness."""

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from lpg import agent as agent_lib
from lpg import training
from lpg import types
from lpg.meta import gradient
from lpg.meta import objective as objective_lib
from lpg.meta import population
from lpg.meta import trainer as trainer_lib
from lpg.rules import lpg as lpg_rule

Y_DIM = 4
RULE = lpg_rule.LPG(hidden_size=8, y_dim=Y_DIM)
CRITIC_OUTPUTS = types.OutputSpec(value=True)


def _group(name, num_lifetimes=2, num_envs=4, lifetime_steps=10_000):
    task = envs.make(name)
    agent = training.build_agent(task, RULE.output_spec)
    critic = agent_lib.Agent(network=training.build_agent(task, CRITIC_OUTPUTS).network, optimiser="adam")
    return population.GroupSpec(
        task=task, agent=agent, critic=critic, rule=RULE, num_lifetimes=num_lifetimes,
        num_envs=num_envs, lifetime_steps=lifetime_steps, critic_learning_rate=0.1)


def _trainer(groups, **kwargs):
    defaults = dict(rule=RULE, groups=tuple(groups),
                    num_updates=2, unroll_length=5, meta_learning_rate=1e-2)
    defaults.update(kwargs)
    return trainer_lib.MetaTrainer(**defaults)


@pytest.fixture(scope="module")
def chain_trainer():
    return _trainer([_group("chain/short")])


@pytest.fixture(scope="module")
def chain_step(chain_trainer):
    return jax.jit(chain_trainer.step)


def _lifetime_loss_fn(trainer, spec):
    def loss(meta_params, lifetime, key):
        return gradient.lifetime_meta_loss(
            meta_params, lifetime, key, rule=trainer.rule, spec=spec, objective=trainer.objective,
            num_updates=trainer.num_updates, unroll_length=trainer.unroll_length)[0]
    return loss


def test_meta_gradient_nonzero_on_every_leaf(chain_trainer):
    state = chain_trainer.init(jax.random.key(0))
    spec = chain_trainer.groups[0]
    lifetime = jax.tree.map(lambda x: x[0], state.groups[0].lifetimes)
    grads = jax.jit(jax.grad(_lifetime_loss_fn(chain_trainer, spec)))(
        state.meta_params, lifetime, jax.random.key(1))
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(leaf)), path
        assert np.any(leaf != 0.0), f"zero meta-gradient on {jax.tree_util.keystr(path)}"


def test_meta_gradient_matches_finite_differences(chain_trainer):
    """Directional derivative along the gradient vs central differences (float32, fixed samples)."""
    state = chain_trainer.init(jax.random.key(2))
    spec = chain_trainer.groups[0]
    lifetime = jax.tree.map(lambda x: x[0], state.groups[0].lifetimes)
    loss = jax.jit(_lifetime_loss_fn(chain_trainer, spec))
    key = jax.random.key(3)
    grads = jax.jit(jax.grad(_lifetime_loss_fn(chain_trainer, spec)))(state.meta_params, lifetime, key)
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))
    direction = jax.tree.map(lambda g: g / norm, grads)
    eps = 1e-2
    plus = loss(jax.tree.map(lambda p, d: p + eps * d, state.meta_params, direction), lifetime, key)
    minus = loss(jax.tree.map(lambda p, d: p - eps * d, state.meta_params, direction), lifetime, key)
    finite_diff = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(finite_diff, norm, rtol=0.05)


def test_critic_and_bandit_change_and_lifetimes_reset_at_budget():
    # (K+1)·T·B = 3·5·4 = 60 steps per meta-step; budget 120 → every lifetime ends by step 2-3.
    trainer = _trainer([_group("chain/short", lifetime_steps=120)])
    state = trainer.init(jax.random.key(4))
    critic0 = state.groups[0].lifetimes.critic.params
    step = jax.jit(trainer.step)
    saw_budget_reset = False
    for _ in range(4):
        state, metrics = step(state)
        saw_budget_reset |= int(metrics["chain/short/resets_budget"]) > 0
    assert saw_budget_reset
    lifetimes = state.groups[0].lifetimes
    assert np.all(np.asarray(lifetimes.steps) <= 120)
    # Second generation lifetimes feed the bandit when they finish.
    for _ in range(3):
        state, metrics = step(state)
    assert int(jnp.sum(state.groups[0].bandit.counts)) > 0
    # The critic is trained on its value head only (its policy/y heads are unused).
    value0 = critic0["params"]["value"]
    value1 = state.groups[0].lifetimes.critic.params["params"]["value"]
    assert bool(jnp.any(value0 != value1))


def test_zero_entropy_resets_lifetime():
    trainer = _trainer([_group("chain/short")], entropy_floor=10.0)  # any entropy counts as zero
    state = trainer.init(jax.random.key(5))
    state, metrics = jax.jit(trainer.step)(state)
    assert int(metrics["chain/short/resets_entropy"]) == 2
    assert np.all(np.asarray(state.groups[0].lifetimes.steps) == 0)


def test_non_finite_lifetime_is_reset_and_meta_update_skipped(chain_trainer, chain_step):
    state = chain_trainer.init(jax.random.key(6))
    lifetimes = state.groups[0].lifetimes
    bad_hyper = lifetimes.hyper.replace(learning_rate=lifetimes.hyper.learning_rate.at[0].set(jnp.inf))
    state = state.replace(groups=(state.groups[0].replace(lifetimes=lifetimes.replace(hyper=bad_hyper)),))
    before = state.meta_params
    new_state, metrics = chain_step(state)
    assert int(new_state.skipped_updates) == 1 and int(metrics["skipped"]) == 1
    jax.tree.map(np.testing.assert_array_equal, new_state.meta_params, before)
    assert int(metrics["chain/short/resets_nonfinite"]) >= 1
    params = new_state.groups[0].lifetimes.agent.params
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
    assert np.isfinite(float(new_state.groups[0].lifetimes.hyper.learning_rate[0]))
    # Training goes on: the next step is a normal one.
    newer_state, metrics = chain_step(new_state)
    assert int(newer_state.skipped_updates) == 1 and int(newer_state.step) == 2


def test_one_rule_runs_on_grids_and_chains_together():
    """Heterogeneous population: 18-action tabular grid + 2-action chain share η."""
    trainer = _trainer([_group("tabular/sparse"), _group("chain/short")])
    state = trainer.init(jax.random.key(7))
    new_state, metrics = jax.jit(trainer.step)(state)
    assert np.isfinite(float(metrics["meta_loss"]))
    assert int(new_state.skipped_updates) == 0
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.meta_params, new_state.meta_params)
    assert all(jax.tree.leaves(changed))


def test_network_agent_meta_gradients_stay_finite():
    """SPEC §5: Adam without eps_root gives NaN meta-gradients for never-updated parameters."""
    trainer = _trainer([_group("chain/distractor")])
    state = trainer.init(jax.random.key(8))
    spec = trainer.groups[0]
    lifetime = jax.tree.map(lambda x: x[0], state.groups[0].lifetimes)
    grads = jax.jit(jax.grad(_lifetime_loss_fn(trainer, spec)))(state.meta_params, lifetime, jax.random.key(9))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_meta_learning_rate_cosine_decay():
    """Constant until `begin`, cosine to final_fraction × lr over decay_steps, constant after."""
    group = _group("chain/short")
    constant = _trainer([group])
    assert constant.meta_learning_rate_schedule() == 1e-2
    decayed = _trainer([group], meta_lr_decay_begin=100, meta_lr_decay_steps=200,
                       meta_lr_final_fraction=0.1)
    schedule = decayed.meta_learning_rate_schedule()
    np.testing.assert_allclose(
        [float(schedule(s)) for s in (0, 100, 200, 300, 1000)], [1e-2, 1e-2, 5.5e-3, 1e-3, 1e-3],
        rtol=1e-5)
    with pytest.raises(ValueError, match="final_fraction"):
        _trainer([group], meta_lr_final_fraction=2.0)


def test_k_larger_than_lifetime_is_refused():
    with pytest.raises(ValueError, match="more than the lifetime"):
        _trainer([_group("chain/short", lifetime_steps=50)])


def test_objective_regularisers_have_documented_signs():
    """Eq. 4 negated: +β2 E[π̂²] + β3 E‖ŷ‖² − β0 H(π) − β1 H(y) − E[log π Â]."""
    t, b, a, m, k = 3, 2, 2, Y_DIM, 2
    out = types.AgentOutput(logits=jnp.zeros((t + 1, b, a)), y=jnp.zeros((t + 1, b, m)),
                            value=jnp.zeros((t + 1, b)))
    rollout = types.Rollout(
        observations=jnp.zeros((t + 1, b), jnp.int32), next_observations=jnp.zeros((t, b), jnp.int32),
        actions=jnp.zeros((t, b), jnp.int32),
        rewards=jnp.zeros((t, b)), terminated=jnp.zeros((t, b), bool), truncated=jnp.zeros((t, b), bool),
        action_mask=jnp.ones((b, a), bool), episode_returns=jnp.zeros((t, b)))
    targets = types.RuleOutput(pi_hat=jnp.full((k, t, b), 2.0), y_hat=jnp.full((k, t, b, m), 0.5))
    hyper = types.HyperParams(*(jnp.float32(v) for v in (1.0, 0.9, 0.1, 0.5, 0.9)), rule={"y_cost": 0.5})
    obj = objective_lib.MetaObjective(y_entropy_cost=0.2, pi_hat_l2_cost=0.3, y_hat_l2_cost=0.4)
    advantages = jnp.full((t, b), 1.5)
    loss, logs = obj.loss(out, rollout, advantages, targets, hyper)
    expected = (-np.log(0.5) * 1.5 - 0.1 * np.log(2) - 0.2 * np.log(m) + 0.3 * 4.0 + 0.4 * m * 0.25)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(logs["pi_hat_l2"], 4.0)
    with pytest.raises(ValueError, match="pi_hat_l2_cost"):
        objective_lib.MetaObjective(pi_hat_l2_cost=-1.0)


def test_critic_converges_where_every_sample_shares_a_state():
    """All T·B samples in one state, r = 1, γ = 0: V → 1 without overshooting (the tabular
    SGD step sizes of the agents, 20–80, would diverge here)."""
    task = envs.make("chain/short")
    critic = agent_lib.Agent(network=training.build_agent(task, CRITIC_OUTPUTS).network, optimiser="adam")
    state = agent_lib.init_agent_state(critic, jax.random.key(0), jnp.int32(0), None)
    t, b = 5, 8
    rollout = types.Rollout(
        observations=jnp.zeros((t + 1, b), jnp.int32), next_observations=jnp.zeros((t, b), jnp.int32),
        actions=jnp.zeros((t, b), jnp.int32),
        rewards=jnp.ones((t, b)), terminated=jnp.zeros((t, b), bool), truncated=jnp.zeros((t, b), bool),
        action_mask=jnp.ones((b, 2), bool), episode_returns=jnp.zeros((t, b)))
    hyper = types.HyperParams(*(jnp.float32(v) for v in (80.0, 0.0, 0.01, 0.5, 0.0)))
    update = jax.jit(lambda s: objective_lib.critic_update(critic, s, rollout, hyper, 0.1))
    values = []
    for _ in range(60):
        state, _ = update(state)
        values.append(float(critic.apply(state.params, jnp.int32(0)).value))
    assert max(values) < 1.5
    assert abs(values[-1] - 1.0) < 0.1


def test_bfloat16_lstm_matmul_gives_nearly_the_same_meta_gradient(chain_trainer):
    """rule.matmul_dtype='bfloat16' really runs a bf16 matmul, and its meta-gradient points the
    same way as float32's (same η, lifetime and samples)."""
    state = chain_trainer.init(jax.random.key(4))
    spec = chain_trainer.groups[0]
    lifetime = jax.tree.map(lambda x: x[0], state.groups[0].lifetimes)
    bf16_rule = dataclasses.replace(RULE, matmul_dtype="bfloat16")
    bf16_spec = dataclasses.replace(spec, rule=bf16_rule)
    bf16_trainer = _trainer([bf16_spec], rule=bf16_rule)
    bf16_loss = _lifetime_loss_fn(bf16_trainer, bf16_spec)
    assert "bf16" in str(jax.make_jaxpr(bf16_loss)(state.meta_params, lifetime, jax.random.key(5)))
    grads = [jax.flatten_util.ravel_pytree(jax.jit(jax.grad(_lifetime_loss_fn(t, s)))(
        state.meta_params, lifetime, jax.random.key(5)))[0]
        for t, s in ((chain_trainer, spec), (bf16_trainer, bf16_spec))]
    cosine = float(grads[0] @ grads[1] / (jnp.linalg.norm(grads[0]) * jnp.linalg.norm(grads[1])))
    assert cosine > 0.99, cosine
    assert not np.array_equal(np.asarray(grads[0]), np.asarray(grads[1]))  # it did change something
    with pytest.raises(ValueError, match="matmul_dtype"):
        lpg_rule.LPG(matmul_dtype="float16")


def _fresh_lifetime(spec, budget=10_000):
    cfg = population.BanditConfig()
    bandit = population.bandit_lib.init_bandit(len(spec.arms), cfg.window)
    return population.new_lifetime(spec, jax.random.key(0), bandit, cfg, budget, True)


def test_final_return_is_the_last_episodes_when_none_ends_in_the_final_window():
    """The issue's example: returns 10 → 20 → 30 → 40, none in the last 10% of the lifetime:
    R = 40 (the EMA fallback it replaces gave 12.9)."""
    spec = _group("chain/short")
    lifetime = _fresh_lifetime(spec, budget=10_000)
    # Before any episode completes: the mean partial return of the running episodes.
    lifetime = lifetime.replace(env_carry=lifetime.env_carry.replace(
        episode_return=jnp.array([1.0, 2.0, 3.0, 6.0])))
    np.testing.assert_allclose(population.final_return(lifetime), 3.0)
    for ret in (10.0, 20.0, 30.0, 40.0):
        lifetime = population.record_progress(spec, lifetime, 100, jnp.float32(ret), jnp.float32(1.0))
        lifetime = population.record_progress(spec, lifetime, 100, jnp.float32(0.0), jnp.float32(0.0))
    assert int(lifetime.steps) == 800 and float(lifetime.final_return_count) == 0.0
    np.testing.assert_allclose(population.final_return(lifetime), 40.0)
    # Episodes that do end in the final window define R (mean over them).
    lifetime = lifetime.replace(steps=jnp.int32(9_000))
    lifetime = population.record_progress(spec, lifetime, 100, jnp.float32(10.0), jnp.float32(2.0))
    lifetime = population.record_progress(spec, lifetime, 100, jnp.float32(2.0), jnp.float32(2.0))
    np.testing.assert_allclose(population.final_return(lifetime), 3.0)


def _collapse_round(spec, group, arm, last_return, key, entropy=0.0, nonfinite=False):
    """One reset_finished call where every lifetime sits on `arm`, reached `last_return`, and
    collapsed (entropy 0) or diverged (non-finite θ) long before its budget."""
    lifetimes = group.lifetimes
    n = lifetimes.arm.shape[0]
    lifetimes = lifetimes.replace(
        arm=jnp.full((n,), arm, jnp.int32), feeds_bandit=jnp.ones((n,), bool),
        steps=jnp.full((n,), 100, jnp.int32), last_return=jnp.full((n,), last_return),
        episodes_completed=jnp.ones((n,)))
    if nonfinite:
        lifetimes = lifetimes.replace(agent=jax.tree.map(lambda x: x * jnp.nan, lifetimes.agent))
    group = group.replace(lifetimes=lifetimes)
    return population.reset_finished(
        spec, group, jnp.full((n,), entropy), jax.random.split(key, n), population.BanditConfig(),
        entropy_floor=1e-3)


@pytest.mark.parametrize("nonfinite", [False, True])
def test_arm_whose_lifetimes_always_collapse_gets_low_probability(nonfinite):
    """Collapsed (zero entropy) or diverged lifetimes count in N with the return they reached.
    They used to be dropped, so such an arm kept N = 0, looked untried, and took p = 1."""
    spec = _group("chain/short", num_lifetimes=2)
    cfg = population.BanditConfig()
    group = population.init_group(spec, jax.random.key(1), cfg)
    num_arms = len(spec.arms)
    bandit = group.bandit
    for arm in range(1, num_arms):  # every other arm: lifetimes that finished with return 1
        bandit = population.bandit_lib.record(bandit, jnp.int32(arm), jnp.float32(1.0))
    group = group.replace(bandit=bandit)
    for i in range(3):
        group, stats = _collapse_round(spec, group, 0, 0.0, jax.random.key(10 + i),
                                       entropy=(0.5 if nonfinite else 0.0), nonfinite=nonfinite)
        assert int(stats["bandit_records"]) == 2
    assert int(group.bandit.counts[0]) == 6
    probs = population.bandit_lib.probabilities(group.bandit, cfg.temperature, cfg.bonus)
    assert float(probs[0]) < 0.01, probs


def test_disabled_bandit_fixes_each_tasks_arm_to_the_middle_of_its_grids():
    """Fig. 7 'LPG fixed hyper': every lifetime, first generation and resets alike, gets the one
    fixed α of its task (tabular: α_lr = 40 of {20, 40, 80}, α_y = 0.5 of {0.1, 0.5, 1})."""
    spec = _group("chain/short", num_lifetimes=4)
    assert spec.arms[spec.fixed_arm] == (40.0, 0.5)
    cfg = population.BanditConfig(enabled=False)
    group = population.init_group(spec, jax.random.key(7), cfg)
    np.testing.assert_array_equal(group.lifetimes.arm, spec.fixed_arm)
    np.testing.assert_allclose(group.lifetimes.hyper.learning_rate, 40.0)
    np.testing.assert_allclose(group.lifetimes.hyper.rule["y_cost"], 0.5)
    fresh = jax.vmap(lambda k: population.new_lifetime(spec, k, group.bandit, cfg, 100, True))(
        jax.random.split(jax.random.key(8), 8))
    np.testing.assert_array_equal(fresh.arm, spec.fixed_arm)
    # With the bandit on, the first generation's arms are drawn (uniformly): not all the same.
    drawn = population.init_group(dataclasses.replace(spec, num_lifetimes=16), jax.random.key(7),
                                  population.BanditConfig())
    assert len(set(np.asarray(drawn.lifetimes.arm).tolist())) > 1
