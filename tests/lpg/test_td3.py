"""Tests of lpg/td3.py: one update, the DDPG switch, the critic target, vmap, and learning."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from lpg import replay
from lpg import td3

PENDULUM = "gymnax/Pendulum-v1"
TINY = td3.TD3(hidden=(16, 16), num_envs=2, buffer_capacity=200, batch_size=8, warmup_steps=10)


@pytest.fixture(scope="module")
def pendulum():
    return envs.make(PENDULUM)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _adam_count(learner):
    """Number of optimiser steps taken (optax's Adam state is (ScaleByAdamState, ...))."""
    return int(learner.opt_state[0].count)


def _after_warmup(config, task, seed=0):
    state = td3.init_state(config, task, jax.random.key(seed))
    return jax.jit(lambda s: td3.warmup(config, task, s)[0])(state)


@pytest.mark.parametrize("bad", [dict(hidden=()), dict(batch_size=0), dict(policy_delay=0),
                                 dict(tau=0.0), dict(buffer_capacity=201), dict(noise_clip=-1.0)])
def test_config_is_validated(bad):
    with pytest.raises(ValueError, match="TD3"):
        td3.TD3(**{**dict(num_envs=2, buffer_capacity=200), **bad})


def test_needs_a_box_action_space():
    with pytest.raises(ValueError, match="Box action space"):
        td3.init_state(TINY, envs.make("gymnax/CartPole-v1"), jax.random.key(0))


def test_one_iteration_is_finite_and_moves_every_trainable_leaf(pendulum):
    config = TINY
    before = _after_warmup(config, pendulum)
    assert int(replay.size(before.buffer)) == config.warmup_steps * config.num_envs
    assert _adam_count(before.actor) == _adam_count(before.critic) == 0  # warm-up does not learn
    hyper = td3.make_hyper(1e-3, 0.99)
    after, stats = jax.jit(lambda s: td3.train_iteration(config, pendulum, s, hyper))(before)

    for value in jax.tree.leaves((after.actor, after.critic, after.target_actor, after.target_critic, stats)):
        assert np.isfinite(np.asarray(value, np.float64)).all()
    # Delayed policy update: two environment and critic steps per actor step.
    assert int(replay.size(after.buffer)) == (config.warmup_steps + 2) * config.num_envs
    assert _adam_count(after.critic) == 2 and _adam_count(after.actor) == 1
    # Every leaf of the actor and of each of the two critics changed.
    for old, new in zip(_leaves(before.actor.params), _leaves(after.actor.params)):
        assert not np.allclose(old, new)
    for old, new in zip(_leaves(before.critic.params), _leaves(after.critic.params)):
        assert old.shape[0] == new.shape[0] == 2
        for c in range(2):
            assert not np.allclose(old[c], new[c]), f"critic {c} did not move"
    # Targets moved by τ towards the new online parameters, and only that.
    tau = config.tau
    for online, old_target, new_target in zip(
            _leaves((after.actor.params, after.critic.params)),
            _leaves((before.target_actor, before.target_critic)),
            _leaves((after.target_actor, after.target_critic))):
        np.testing.assert_allclose(new_target, tau * online + (1 - tau) * old_target, rtol=1e-6, atol=1e-7)
        assert not np.allclose(new_target, old_target, rtol=0, atol=0)
    assert set(stats) == {"return_sum", "return_count", "critic_loss", "q_mean", "actor_loss"}


def test_ddpg_switch_uses_one_critic_and_no_delay(pendulum):
    config = td3.TD3(**{**TINY.config(), "ddpg": True})
    assert config.num_critics == 1 and config.critic_steps_per_actor_step == 1 and not config.smoothing
    before = _after_warmup(config, pendulum)
    assert all(x.shape[0] == 1 for x in jax.tree.leaves(before.critic.params))
    hyper = td3.make_hyper(1e-3, 0.99)
    after, _ = jax.jit(lambda s: td3.train_iteration(config, pendulum, s, hyper))(before)
    # One environment step, one critic step, one actor step.
    assert int(replay.size(after.buffer)) == (config.warmup_steps + 1) * config.num_envs
    assert _adam_count(after.critic) == 1 and _adam_count(after.actor) == 1


def test_target_policy_smoothing_only_in_td3(pendulum):
    obs = jax.random.normal(jax.random.key(0), (256, 3))
    nets = td3.make_networks(TINY, action_dim=1)
    params = nets.actor.init(jax.random.key(1), obs[0])
    plain = nets.actor.apply(params, obs)
    ddpg = td3.TD3(**{**TINY.config(), "ddpg": True})
    for key in (2, 3):
        np.testing.assert_array_equal(td3.target_actions(ddpg, nets, params, obs, jax.random.key(key)), plain)
    smoothed = [td3.target_actions(TINY, nets, params, obs, jax.random.key(k)) for k in (2, 3)]
    assert not np.allclose(smoothed[0], smoothed[1])
    for actions in smoothed:
        assert np.all(np.abs(actions - plain) <= TINY.noise_clip + 1e-6)
        assert np.all(np.abs(actions) <= 1.0)
        # ε ~ N(0, 0.2²) clipped at ±0.5: about 1% of draws are clipped, most are not.
        assert 0.1 < np.std(actions - plain) < 0.3


def test_critic_target_hand_computed(pendulum):
    """y = r + γ (1 − terminated) min_c Q'_c(s', π'(s')): truncation bootstraps, termination does not."""
    config = td3.TD3(**{**TINY.config(), "policy_noise": 0.0})  # no smoothing noise: exact targets
    state = td3.init_state(config, pendulum, jax.random.key(0))
    # Distinct targets (as after training), so the min over the twin critics matters.
    state = state.replace(target_critic=jax.tree.map(lambda x: x * 1.5 + 0.1, state.critic.params))
    nets = td3.make_networks(config, action_dim=1)
    keys = jax.random.split(jax.random.key(1), 3)
    batch = td3.Transition(
        obs=jax.random.normal(keys[0], (4, 3)), action=jnp.array([[0.5], [-0.5], [0.0], [1.0]]),
        reward=jnp.array([1.0, -2.0, 0.5, 0.0]), next_obs=jax.random.normal(keys[1], (4, 3)),
        terminated=jnp.array([False, True, False, True]), truncated=jnp.array([False, False, True, True]))
    gamma = 0.9

    def q(params, c, s, a):
        return nets.critic.apply(jax.tree.map(lambda x: x[c], params), s, a)

    next_action = nets.actor.apply(state.target_actor, batch.next_obs)
    next_q = np.minimum(q(state.target_critic, 0, batch.next_obs, next_action),
                        q(state.target_critic, 1, batch.next_obs, next_action))
    y = np.asarray(batch.reward) + gamma * np.array([1.0, 0.0, 1.0, 0.0]) * next_q
    expected = sum(np.mean((q(state.critic.params, c, batch.obs, batch.action) - y) ** 2) for c in range(2))
    _, logs = td3.critic_step(config, nets, state, batch, td3.make_hyper(1e-3, gamma), jax.random.key(2))
    np.testing.assert_allclose(logs["critic_loss"], expected, rtol=1e-5)


def test_population_vmap_matches_each_agent_alone(pendulum):
    config = TINY
    hyper = td3.make_hyper(1e-3, 0.99)

    def lifetime(state):
        state, _ = td3.warmup(config, pendulum, state)
        return td3.train(config, pendulum, state, hyper, num_iterations=3)

    # Initialised outside jit: compiling the initialisation twice would double this test's time.
    singles = [td3.init_state(config, pendulum, key) for key in jax.random.split(jax.random.key(3), 2)]
    batched = jax.jit(jax.vmap(lifetime))(jax.tree.map(lambda *xs: jnp.stack(xs), *singles))
    run_one = jax.jit(lifetime)
    for i, state in enumerate(singles):
        single = run_one(state)
        jax.tree.map(lambda b, s: np.testing.assert_allclose(b[i], s, rtol=1e-4, atol=1e-5),
                     (batched[0].actor.params, batched[0].critic.params, batched[1]),
                     (single[0].actor.params, single[0].critic.params, single[1]))
    # The two agents are different agents.
    kernels = batched[0].actor.params["params"]["Dense_0"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])


def test_run_checks_the_step_budget(pendulum):
    with pytest.raises(ValueError, match="multiple of 2"):
        td3.run(TINY, pendulum, jax.random.key(0), td3.make_hyper(), env_steps=TINY.warmup_steps + 3)


# Pendulum learning: small networks (64, 64) and α_lr = 1e-3 learn within 20k steps; on this
# 2-core CPU one seed takes ~15 s (6 seeds reached −173 … −180 in evaluation).
LEARNING = td3.TD3(hidden=(64, 64), num_envs=1, buffer_capacity=100_000, batch_size=128,
                   warmup_steps=1_000)
LEARNING_STEPS = 20_000


def test_td3_learns_pendulum(pendulum):
    hyper = td3.make_hyper(1e-3, 0.99)

    def lifetime(key):
        state, warmup_stats, train_stats = td3.run(LEARNING, pendulum, key, hyper, env_steps=LEARNING_STEPS)
        evaluation, count = td3.policy_returns(LEARNING, pendulum, state.actor.params, state.env_params,
                                               jax.random.key(100), num_envs=10, num_steps=200)
        return warmup_stats, train_stats, evaluation, count

    start = time.perf_counter()
    warmup_stats, train_stats, evaluation, count = jax.jit(lifetime)(jax.random.key(0))
    elapsed = time.perf_counter() - start
    random_return = float(warmup_stats["return_sum"].sum() / warmup_stats["return_count"].sum())
    late = slice(-500, None)  # the last 1,000 training steps: 5 episodes
    late_return = float(train_stats["return_sum"][late].sum() / train_stats["return_count"][late].sum())
    print(f"TD3 Pendulum: random {random_return:.0f}, last training episodes {late_return:.0f}, "
          f"greedy evaluation {float(evaluation):.0f} over {int(count)} episodes; {elapsed:.1f} s")
    assert int(count) == 10
    assert random_return < -900  # the uniform random warm-up policy
    assert float(evaluation) > -400
    assert late_return > -400  # with exploration noise


@pytest.mark.slow
def test_td3_with_default_networks_learns_pendulum(pendulum):
    """The default (256, 256) networks, batch 256, α_lr = 3e-4 (~2 min on this CPU)."""
    config = td3.TD3(buffer_capacity=100_000, warmup_steps=1_000)

    def lifetime(key):
        state, _, _ = td3.run(config, pendulum, key, td3.make_hyper(3e-4, 0.99), env_steps=20_000)
        return td3.policy_returns(config, pendulum, state.actor.params, state.env_params,
                                  jax.random.key(100), num_envs=10, num_steps=200)[0]

    evaluation = float(jax.jit(lifetime)(jax.random.key(0)))
    print(f"TD3 (256, 256) Pendulum greedy evaluation after 20k steps: {evaluation:.0f}")
    assert evaluation > -400
