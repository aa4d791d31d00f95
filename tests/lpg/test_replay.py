"""Tests of lpg/replay.py: ring semantics, uniform sampling, contiguous sequences, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lpg import replay


def _transition(step, env):
    """A transition that names itself: id = 100·step + env, plus a vector leaf and a bool leaf."""
    env = jnp.asarray(env, jnp.int32)
    step = jnp.broadcast_to(jnp.asarray(step, jnp.int32), env.shape)
    ident = 100 * step + env
    return dict(id=ident, obs=jnp.stack([step, env], -1).astype(jnp.float32), done=ident % 7 == 0)


def _fill(state, num_steps, num_envs, first_step=0):
    """Adds steps first_step..first_step+num_steps-1 for envs 0..B-1 (a lax.scan, as in training)."""

    def body(state, step):
        return replay.add(state, _transition(step, jnp.arange(num_envs))), None

    state, _ = jax.lax.scan(body, state, jnp.arange(first_step, first_step + num_steps))
    return state


def _empty(capacity, num_envs):
    return replay.init(_transition(0, 0), capacity=capacity, num_envs=num_envs)


def _stored_ids(state):
    return sorted(np.asarray(state.experience["id"]).ravel().tolist())


def test_init_validates_capacity():
    with pytest.raises(ValueError, match="multiple of num_envs"):
        _empty(capacity=10, num_envs=3)
    with pytest.raises(ValueError, match="multiple of num_envs"):
        _empty(capacity=2, num_envs=4)


def test_keeps_exactly_the_last_capacity_transitions_after_wrapping():
    num_envs, capacity = 3, 12  # 4 time slots per environment
    state = _fill(_empty(capacity, num_envs), num_steps=7, num_envs=num_envs)
    expected = sorted(100 * s + e for s in range(3, 7) for e in range(num_envs))
    assert _stored_ids(state) == expected
    assert int(replay.size(state)) == capacity
    # Before wrapping, size counts only what was added.
    partial = _fill(_empty(capacity, num_envs), num_steps=2, num_envs=num_envs)
    assert int(replay.size(partial)) == 6
    assert not bool(replay.can_sample(partial, 3)) and bool(replay.can_sample(partial, 2))


def _chi_square_pvalue(values, support):
    """p-value of 'values are uniform over support' (every value must be in the support)."""
    support = np.asarray(sorted(support))
    values = np.asarray(values).ravel()
    assert np.isin(values, support).all(), sorted(set(values) - set(support))
    counts = np.array([(values == v).sum() for v in support])
    return stats.chisquare(counts).pvalue


@pytest.mark.parametrize("num_steps", [13, 33])  # part filled; wrapped (20 slots per env)
def test_sample_is_uniform_over_the_filled_part(num_steps):
    num_envs, capacity = 2, 40
    state = _fill(_empty(capacity, num_envs), num_steps, num_envs)
    stored = [100 * s + e for s in range(max(0, num_steps - 20), num_steps) for e in range(num_envs)]
    draws = jax.jit(replay.sample, static_argnums=2)(state, jax.random.key(0), 20_000)
    # Only stored transitions come out (nothing from empty or overwritten slots) ...
    assert _chi_square_pvalue(draws["id"], stored) > 1e-3
    # ... and every leaf of a drawn transition belongs to the same transition.
    np.testing.assert_array_equal(draws["obs"][:, 0] * 100 + draws["obs"][:, 1], draws["id"])
    np.testing.assert_array_equal(draws["done"], draws["id"] % 7 == 0)


def test_uniformity_check_rejects_a_biased_sampler():
    """The check above can fail: half the stored transitions drawn twice as often."""
    support = np.arange(26)
    rng = np.random.default_rng(0)
    weights = np.where(support < 13, 2.0, 1.0)
    biased = rng.choice(support, size=20_000, p=weights / weights.sum())
    assert _chi_square_pvalue(biased, support) < 1e-3
    assert _chi_square_pvalue(rng.choice(support, size=20_000), support) > 1e-3


def test_sequences_are_contiguous_and_never_cross_the_write_pointer():
    num_envs, capacity, length = 2, 20, 4  # 10 slots per env
    state = _fill(_empty(capacity, num_envs), num_steps=23, num_envs=num_envs)  # wrapped twice
    seqs = replay.sample_sequences(state, jax.random.key(1), 5_000, length)
    ids = np.asarray(seqs["id"])  # [N, L]
    assert ids.shape == (5_000, length)
    env, step = ids % 100, ids // 100
    assert (env == env[:, :1]).all()  # one environment per sequence
    np.testing.assert_array_equal(np.diff(step, axis=1), 1)  # consecutive steps, oldest first
    # Starts: the stored steps 13..22 whose sequence ends by step 22, in both envs, uniformly.
    starts = ids[:, 0]
    assert _chi_square_pvalue(starts, [100 * s + e for s in range(13, 20) for e in range(2)]) > 1e-3
    assert seqs["obs"].shape == (5_000, length, 2)


def test_sequence_length_is_checked():
    state = _empty(capacity=8, num_envs=2)
    with pytest.raises(ValueError, match="sequence length"):
        replay.sample_sequences(state, jax.random.key(0), 3, length=5)


def test_jit_and_vmap_over_a_population_match_a_loop():
    num_envs, capacity, num_agents = 2, 16, 3

    def lifetime(key, offset):
        """An agent's buffer filled with its own data (ids shifted by 10000·offset), then sampled."""
        state = _empty(capacity, num_envs)

        def body(state, step):
            t = _transition(step, jnp.arange(num_envs))
            t = dict(t, id=t["id"] + 10_000 * offset)
            return replay.add(state, t), None

        state, _ = jax.lax.scan(body, state, jnp.arange(11))
        sample_key, seq_key = jax.random.split(key)
        return (state, replay.sample(state, sample_key, 32),
                replay.sample_sequences(state, seq_key, 8, 3))

    keys = jax.random.split(jax.random.key(2), num_agents)
    offsets = jnp.arange(num_agents)
    batched = jax.jit(jax.vmap(lifetime))(keys, offsets)
    assert batched[0].experience["id"].shape == (num_agents, num_envs, capacity // num_envs)
    for i in range(num_agents):
        single = lifetime(keys[i], offsets[i])
        jax.tree.map(lambda b, s: np.testing.assert_array_equal(b[i], s), batched, single)
        # Agent i only ever sees its own transitions.
        assert (np.asarray(batched[1]["id"][i]) // 10_000 == i).all()
