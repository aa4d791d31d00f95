"""Hand-checked dynamics of the delayed chain MDPs (envs/chain.py; SPEC §2, LPG appendix A.3)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.chain import ChainState, DelayedChain

CHAIN = DelayedChain(min_length=3, max_length=6)
NOISY = DelayedChain(min_length=3, max_length=6, noisy=True)
DISTRACTOR = DelayedChain(min_length=3, max_length=6, distractor=True)


def state(c, first_action=-1, time=0):
    return ChainState(rewarded_action=jnp.int32(c), first_action=jnp.int32(first_action), time=jnp.int32(time))


@functools.partial(jax.jit, static_argnums=0)
def play(env, key, start, actions, params):
    """Steps from `start` through `actions` [T]; returns per-step outputs (obs before each step)."""

    def body(carry, inputs):
        obs, s = carry
        key, action = inputs
        next_obs, next_s, reward, terminated, truncated, info = env.step(key, s, action, params)
        out = dict(obs=obs, reward=reward, terminated=terminated, truncated=truncated,
                   final_obs=info["final_observation"], time=next_s.time)
        return (next_obs, next_s), out

    obs = env.get_obs(start, params, key) if env.distractor else env.get_obs(start, params)
    keys = jax.random.split(key, actions.shape[0])
    return jax.lax.scan(body, (obs, start), (keys, actions))[1]


@pytest.mark.parametrize("c", [0, 1])
@pytest.mark.parametrize("first", [0, 1])
def test_final_reward_decided_by_first_action_only(c, first):
    length = 4
    params = CHAIN.make_params(length=length)
    expected = [0.0, 0.0, 0.0, 1.0 if first == c else -1.0]
    for later in ([1 - first] * 3, [first] * 3, [0, 1, 0]):  # later actions change nothing
        out = play(CHAIN, jax.random.key(0), state(c), jnp.array([first, *later], jnp.int32), params)
        np.testing.assert_array_equal(out["reward"], expected)
        np.testing.assert_array_equal(out["terminated"], [False, False, False, True])
        assert not out["truncated"].any()


def test_episode_length_equals_sampled_length():
    keys = jax.random.split(jax.random.key(1), 200)

    def lifetime(key):
        key_params, key_reset, key_actions, key_play = jax.random.split(key, 4)
        params = CHAIN.sample_params(key_params)
        _, start = CHAIN.reset(key_reset, params)
        actions = jax.random.randint(key_actions, (13,), 0, 2)
        return params.length, play(CHAIN, key_play, start, actions, params)["terminated"]

    lengths, terminated = jax.jit(jax.vmap(lifetime))(keys)
    assert set(np.unique(lengths)) == {3, 4, 5, 6}  # U[min, max], both ends included
    for length, ends in zip(np.asarray(lengths), np.asarray(terminated)):
        # Episodes of exactly L steps, back to back (auto-reset).
        np.testing.assert_array_equal(np.flatnonzero(ends) + 1, np.arange(length, 14, length))


def test_states_are_distinct_within_and_across_chains():
    length = CHAIN.max_length
    params = CHAIN.make_params(length=length)
    states_per_chain = 2 * length + 1
    seen = {}
    for c in (0, 1):
        for first in (0, 1):
            out = play(CHAIN, jax.random.key(2), state(c), jnp.full((length,), first, jnp.int32), params)
            # Observations before each step, then the terminal one (t = L).
            trajectory = [*np.asarray(out["obs"]).tolist(), int(out["final_obs"][-1])]
            for t, obs in enumerate(trajectory):
                assert 0 <= obs < CHAIN.num_states
                expected = c * states_per_chain + (0 if t == 0 else 1 + 2 * (t - 1) + first)
                assert obs == expected, (c, first, t)
                key = (c, None if t == 0 else first, t)  # the start state does not know a_0 yet
                assert seen.setdefault(key, obs) == obs
    assert len(set(seen.values())) == len(seen) == 2 * (1 + 2 * length)  # no aliasing at all
    assert CHAIN.num_states == 2 * states_per_chain


def test_noise_rewards_are_plus_minus_one_with_zero_mean():
    params = NOISY.make_params(length=6)
    keys = jax.random.split(jax.random.key(3), 4000)
    step = jax.vmap(NOISY.step, in_axes=(0, None, None, None))
    middle = {a: np.asarray(step(keys, state(0, 1, 2), jnp.int32(a), params)[2]) for a in (0, 1)}
    assert set(np.unique(middle[0])) == {-1.0, 1.0}
    assert abs(middle[0].mean()) < 4 / np.sqrt(4000)
    np.testing.assert_array_equal(middle[0], middle[1])  # independent of the action
    # The first transition (into a middle state) is noisy too; the last one pays only ±1.
    first = np.asarray(step(keys, state(0), jnp.int32(0), params)[2])
    assert set(np.unique(first)) == {-1.0, 1.0}
    last = step(keys, state(0, 1, 5), jnp.int32(0), params)
    np.testing.assert_array_equal(last[2], -1.0)
    assert bool(last[3].all())
    # Without noise (the `noisy` param is off), middle transitions pay exactly 0.
    quiet = step(keys, state(0, 1, 2), jnp.int32(0), params.replace(noisy=jnp.bool_(False)))
    np.testing.assert_array_equal(quiet[2], 0.0)


def test_distractor_observation_bits():
    params = DISTRACTOR.make_params(length=5)
    obs, s = jax.vmap(DISTRACTOR.reset, in_axes=(0, None))(jax.random.split(jax.random.key(4), 3000), params)
    obs, c = np.asarray(obs), np.asarray(s.rewarded_action)
    assert obs.shape == (3000, 22) and obs.dtype == np.float32
    assert set(np.unique(c)) == {0, 1}
    np.testing.assert_array_equal(obs[:, 0], c == 0)
    np.testing.assert_array_equal(obs[:, 1], 0.0)  # nothing chosen yet
    noise_means = obs[:, 2:].mean(axis=0)
    assert (np.abs(noise_means - 0.5) < 0.05).all(), noise_means
    for c in (0, 1):
        for first in (0, 1):
            actions = jnp.array([first, 1 - first, first, 0], jnp.int32)
            out = play(DISTRACTOR, jax.random.key(5), state(c), actions, params)
            bits = np.asarray(out["obs"])  # obs before steps 0..3
            np.testing.assert_array_equal(bits[:, 0], c == 0)
            np.testing.assert_array_equal(bits[:, 1], [0.0] + [float(first == c)] * 3)
            assert len({tuple(row) for row in bits[:, 2:]}) == 4  # noise drawn afresh at each state


def test_sample_params_and_defaults():
    lengths = jax.jit(jax.vmap(lambda k: DelayedChain(5, 50).sample_params(k).length))(
        jax.random.split(jax.random.key(6), 2000)
    )
    assert int(lengths.min()) == 5 and int(lengths.max()) == 50
    params = CHAIN.default_params
    assert int(params.max_steps_in_episode) > CHAIN.max_length  # the time limit never fires
    assert not bool(params.noisy) and bool(NOISY.default_params.noisy)


def test_user_time_limit_truncates():
    params = CHAIN.make_params(length=6, max_steps=2)
    out = play(CHAIN, jax.random.key(7), state(0), jnp.zeros((4,), jnp.int32), params)
    np.testing.assert_array_equal(out["truncated"], [False, True, False, True])
    assert not out["terminated"].any()


def test_out_of_range_actions_are_clipped():
    params = CHAIN.make_params(length=3)
    for action, same_as in ((5, 1), (-3, 0)):
        a = play(CHAIN, jax.random.key(8), state(1), jnp.array([action, 0, 0], jnp.int32), params)
        b = play(CHAIN, jax.random.key(8), state(1), jnp.array([same_as, 0, 0], jnp.int32), params)
        jax.tree.map(np.testing.assert_array_equal, a, b)


def test_spaces():
    assert CHAIN.action_space(None).n == 2 and CHAIN.num_actions == 2
    assert CHAIN.observation_space(None).n == CHAIN.num_states == 26
    assert DISTRACTOR.observation_space(None).shape == (22,)
    np.testing.assert_array_equal(CHAIN.action_mask(CHAIN.default_params), [True, True])
    with pytest.raises(AttributeError, match="tabular"):
        DISTRACTOR.num_states


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(min_length=1), "min_length=1"),
        (dict(min_length=0, max_length=0), "min_length=0"),
        (dict(min_length=8, max_length=7), "min_length=8 > max_length=7"),
        (dict(min_length=2.5), "2.5"),
        (dict(max_length=True), "True"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DelayedChain(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match", [(dict(length=7), "length=7"), (dict(length=1), "length=1"), (dict(max_steps=0), "max_steps=0")]
)
def test_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CHAIN.make_params(**kwargs)
