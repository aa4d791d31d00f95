"""Tests of the hyperparameter bandit (Eq. 6) on worked examples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg.meta import bandit


def test_untried_arms_first():
    state = bandit.init_bandit(3, window=2)
    state = bandit.record(state, jnp.int32(1), jnp.float32(5.0))
    probs = bandit.probabilities(state, 0.1, 0.2)
    np.testing.assert_allclose(probs, [0.5, 0.0, 0.5])


def test_eq6_worked_example():
    """Arms 0/1 with returns (1, 3) over window 2 and 4 lifetimes each; arm 1 has ring wrap-around."""
    state = bandit.init_bandit(2, window=2)
    for ret in (9.0, 9.0, 1.0, 1.0):  # arm 0: last two = 1, 1 -> R = 1, N = 4
        state = bandit.record(state, jnp.int32(0), jnp.float32(ret))
    for ret in (2.0,):  # arm 1: R = 2, N = 1
        state = bandit.record(state, jnp.int32(1), jnp.float32(ret))
    np.testing.assert_allclose(bandit.mean_recent_return(state), [1.0, 2.0])
    tau, rho = 1.0, 0.2
    s0 = (1.0 + rho / np.sqrt(4)) / tau
    s1 = (2.0 + rho / np.sqrt(1)) / tau
    expected = np.exp([s0, s1]) / np.exp([s0, s1]).sum()
    np.testing.assert_allclose(bandit.probabilities(state, tau, rho), expected, rtol=1e-6)
    np.testing.assert_array_equal(state.counts, [4, 1])


def test_record_many_matches_sequential_and_respects_mask():
    state = bandit.init_bandit(3, window=3)
    arms = jnp.array([0, 2, 0, 1], jnp.int32)
    rets = jnp.array([1.0, 2.0, 3.0, 4.0])
    valid = jnp.array([True, True, False, True])
    batched = bandit.record_many(state, arms, rets, valid)
    seq = state
    for a, r, v in zip(arms, rets, valid):
        if v:
            seq = bandit.record(seq, a, r)
    np.testing.assert_array_equal(batched.counts, [1, 1, 1])
    np.testing.assert_allclose(batched.recent_returns, seq.recent_returns)


def test_sampling_follows_probabilities():
    state = bandit.init_bandit(2, window=1)
    state = bandit.record(state, jnp.int32(0), jnp.float32(0.0))
    state = bandit.record(state, jnp.int32(1), jnp.float32(0.1))
    keys = jax.random.split(jax.random.key(0), 4000)
    arms = jax.vmap(lambda k: bandit.sample_arm(k, state, 0.1, 0.0))(keys)
    expected = float(bandit.probabilities(state, 0.1, 0.0)[1])  # e/(1+e) ≈ 0.731
    assert abs(float(jnp.mean(arms == 1)) - expected) < 0.03


def test_bad_sizes():
    with pytest.raises(ValueError, match="num_arms"):
        bandit.init_bandit(0)
